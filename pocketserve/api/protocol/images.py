"""POST /v1/images/describe and /v1/images/describe/batch: the requests (JSON, or a multipart
form with the image files), each image's chat request, and the answers.

A description is a chat turn of a model that sees: one user message holding the image and the
prompt. Each image of a batch is its own chat request, so the engine batches them together and
one bad image costs only its own result.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from pocketserve.api.protocol.answers import Answer, ErrorDetail
from pocketserve.api.protocol.common import Body, Request, Temperature, examples
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import (
    ChatMessage,
    ChatRequest,
    ImagePart,
    Part,
    SamplingParams,
    TextPart,
)

DEFAULT_PROMPT = "Describe this image."
Detail = Literal["auto", "low", "high"]
# A red 2x2 PNG: the documented example stays small.
EXAMPLE_PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4"
               "nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg==")
_IMAGE = Field(description="The image: a base64 data: URL (data:image/png;base64,...), or an "
               "http(s) URL where the server fetches images (image_fetch_enabled).")


class DescribeOptions(Body):
    model: str | None = Field(default=None, description="A model that sees; default: the "
                              "vision_model setting, else the first served model that sees.")
    prompt: str | None = Field(default=None, description="What to ask about the image; "
                               f"default: {DEFAULT_PROMPT!r}")
    detail: Detail = "auto"
    max_tokens: int | None = Field(default=None, ge=1, description="The longest description.")
    temperature: Temperature = None

    def chat(self, image: ImagePart, prompt: str | None) -> ChatRequest:
        """One image's chat request: the image, then the prompt, in one user message."""
        content: list[Part] = [image, TextPart(prompt or self.prompt or DEFAULT_PROMPT)]
        return ChatRequest(messages=[ChatMessage(role="user", content=content)],
                           sampling=SamplingParams(max_tokens=self.max_tokens,
                                                   temperature=self.temperature))


class DescribeImageRequest(DescribeOptions):
    model_config = examples({"image": EXAMPLE_PNG, "prompt": "What colour is this?",
                             "max_tokens": 32})

    image: str = _IMAGE


class BatchImage(Request):
    image: str = _IMAGE
    prompt: str | None = Field(default=None, description="This image's prompt; default: the "
                               "request's `prompt`.")
    detail: Detail | None = None


class DescribeBatchRequest(DescribeOptions):
    model_config = examples({"images": [{"image": EXAMPLE_PNG},
                                        {"image": EXAMPLE_PNG, "prompt": "Any text in it?"},
                                        {"image": "data:image/png;base64,aGVsbG8="}],
                             "max_tokens": 32})

    images: list[BatchImage] = Field(min_length=1, description="The images, each described "
                                     "on its own (at most image_describe_max_batch).")


# -- multipart ------------------------------------------------------------------------------

FORM_FIELDS = ("model", "prompt", "detail", "max_tokens", "temperature")


def form_fields(form: FormData) -> dict[str, Any]:
    """The plain fields of a describe form (each given once), without the files."""
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key in FORM_FIELDS:
            fields[key] = value
    return fields


def form_options(form: FormData) -> DescribeOptions:
    try:
        return DescribeOptions.model_validate(form_fields(form))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def form_files(form: FormData, max_bytes: int) -> list[bytes]:
    """The uploaded `file` fields' bytes, each read to one byte past the cap at most."""
    files = []
    for i, value in enumerate(form.getlist("file")):
        if not isinstance(value, UploadFile):
            raise InvalidRequest("'file' must be an uploaded image (multipart/form-data), not "
                                 "a text field.", param=f"file[{i}]")
        files.append(await value.read(max_bytes + 1))
    if not files:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file",
                             code="missing")
    return files


def form_schema(batch: bool) -> dict[str, Any]:
    """The multipart form as /openapi.json shows it."""
    props = DescribeOptions.model_json_schema()["properties"]
    fields = {name: {k: v for k, v in props[name].items() if k not in ("anyOf", "default")}
              | _branch(props[name]) for name in FORM_FIELDS}
    many = "one or more `file` fields (at most image_describe_max_batch)" if batch else \
        "one `file` field"
    return {"type": "object", "required": ["file"],
            "description": f"The image(s) as {many}; `prompt` applies to every file.",
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "A PNG, JPEG, GIF, WebP or BMP image."},
                           **fields}}


def _branch(prop: dict[str, Any]) -> dict[str, Any]:
    """A form field is text or absent, never null."""
    branches = [b for b in prop.get("anyOf", []) if b != {"type": "null"}]
    return branches[0] if len(branches) == 1 else {}


# -- answers --------------------------------------------------------------------------------


class DescribeUsage(Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ImageDescription(Answer):
    object: Literal["image.description"]
    created: int
    model: str
    description: str
    finish_reason: str
    usage: DescribeUsage


class BatchDescription(Answer):
    """One image's result: its description, or `error` (OpenAI's error object) alone."""

    index: int
    object: Literal["image.description"]
    description: str | None = None
    finish_reason: str | None = None
    usage: DescribeUsage | None = None
    error: ErrorDetail | None = None


class ImageDescriptionBatch(Answer):
    object: Literal["list"]
    created: int
    model: str
    data: list[BatchDescription]
    usage: DescribeUsage = Field(description="All images' tokens together.")
