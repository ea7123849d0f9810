"""Images of chat messages as the vision backends hand them on (llama.cpp, transformers).

The API process has already fetched and sniffed every image (`ImagePart`); what is left to a
backend is the `detail` hint. OpenAI's `low` means the model sees a version of at most 512 x
512 pixels: we shrink the image to that (keeping its shape), so it costs fewer image tokens;
`auto` and `high` send it as it is.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import ChatMessage, ImagePart

if TYPE_CHECKING:
    from PIL.Image import Image

LOW_DETAIL_SIDE = 512
DETAILS = ("auto", "low", "high")


def images_of(messages: list[ChatMessage]) -> list[ImagePart]:
    """Every image of a conversation, in order."""
    return [p for m in messages if not isinstance(m.content, str)
            for p in m.content if isinstance(p, ImagePart)]


def with_detail(part: ImagePart) -> ImagePart:
    """The image the model should see for the part's `detail`."""
    if part.detail not in DETAILS:
        raise InvalidRequest(f"Image detail {part.detail!r} is not one of "
                             f"{', '.join(DETAILS)}.", param="messages")
    if part.detail != "low":
        return part
    image = open_image(part)
    if max(image.size) <= LOW_DETAIL_SIDE:
        return part
    image.thumbnail((LOW_DETAIL_SIDE, LOW_DETAIL_SIDE))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return ImagePart(data=out.getvalue(), media_type="image/png", detail="low")


def open_image(part: ImagePart) -> Image:
    """The image decoded by Pillow (RGB); a 400 naming `messages` when it cannot be read."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - the vision extra installs Pillow
        raise InvalidRequest("Image detail 'low' needs Pillow on the server "
                             "(pip install 'pocketserve[vision]').", param="messages") from None
    try:
        image = Image.open(io.BytesIO(part.data))
        image.load()
    except Exception as exc:  # Pillow raises many kinds for bad bytes
        raise InvalidRequest(f"An image could not be decoded ({part.media_type}): {exc}",
                             param="messages") from None
    rgb: Image = image.convert("RGB")
    return rgb


def data_url(part: ImagePart) -> str:
    """The image as a `data:` URL, which llama.cpp's server decodes itself."""
    return f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"
