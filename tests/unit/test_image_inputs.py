"""Images from their bytes: the sniffer reads each format's declared size, refuses what is not
an image and a decompression bomb; the loader decodes data: URLs and base64, fills the parts
the protocol layer left, and answers each failure as a 400 naming the part."""

from __future__ import annotations

import asyncio
import base64

import pytest
from pydantic import ValidationError

from pocketserve.catalog import sees
from pocketserve.config import ModelSpec, Settings
from pocketserve.errors import InvalidRequest
from pocketserve.images.decode import ImageError, checked, inspect
from pocketserve.images.fetch import Fetcher, FetchPolicy
from pocketserve.images.inputs import ImageInputs, ImageLimits, ImageLoader
from tests.image_helpers import (
    bmp,
    data_url,
    gif,
    jpeg_header,
    png,
    png_bomb,
    webp_lossless,
)


@pytest.mark.parametrize(("data", "media_type", "size"), [
    (png(5, 3), "image/png", (5, 3)),
    (jpeg_header(7, 6), "image/jpeg", (7, 6)),
    (gif(3, 5), "image/gif", (3, 5)),
    (webp_lossless(9, 4), "image/webp", (9, 4)),
    (bmp(4, -3), "image/bmp", (4, 3)),
])
def test_formats_and_sizes_from_the_header(data: bytes, media_type: str,
                                           size: tuple[int, int]) -> None:
    info = inspect(data)
    assert (info.media_type, (info.width, info.height)) == (media_type, size)


@pytest.mark.parametrize(("data", "reason"), [
    (b"<html>not an image</html>", "not an image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "no IHDR"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "no frame header"),
    (b"GIF89a\x01", "cut short"),
    (png(0, 4), "empty image"),
])
def test_what_is_not_a_readable_image(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        inspect(data)


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ImageError, match="100000x100000 pixels, more than the limit"):
        checked(bomb, 40_000_000)
    assert checked(png(100, 100), 10_000).pixels == 10_000


class FakeFetcher(Fetcher):
    """Answers every URL with fixed bytes, recording what was asked."""

    def __init__(self, answer: bytes):
        super().__init__(FetchPolicy(enabled=True, allowed_hosts=("x",)))
        self.answer = answer
        self.asked: list[str] = []

    async def fetch(self, url: str) -> bytes:
        self.asked.append(url)
        return self.answer


def loader(answer: bytes = b"", **limits: int) -> ImageLoader:
    return ImageLoader(ImageLimits(**limits), FakeFetcher(answer))


def load(images: ImageInputs, with_loader: ImageLoader | None = None) -> None:
    asyncio.run((with_loader or loader()).load(images))


def refusal(images: ImageInputs, with_loader: ImageLoader | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        load(images, with_loader)
    return caught.value


def test_parts_are_filled_in_order_with_the_sniffed_type() -> None:
    images = ImageInputs()
    first = images.from_url(data_url(png(2, 2), "image/jpeg"), "low", "a")  # label is wrong
    second = images.from_base64(base64.b64encode(gif()).decode(), "auto", "b")
    remote = images.from_url("https://images.example/x.bmp", "high", "c")
    fetched = loader(bmp())
    load(images, fetched)
    assert (first.data, first.media_type, first.detail) == (png(2, 2), "image/png", "low")
    assert (second.data, second.media_type) == (gif(), "image/gif")
    assert (remote.data, remote.media_type, remote.detail) == (bmp(), "image/bmp", "high")
    assert isinstance(fetched.fetcher, FakeFetcher)
    assert fetched.fetcher.asked == ["https://images.example/x.bmp"]


@pytest.mark.parametrize(("url", "code", "reason"), [
    ("data:image/png,rawbytes", "invalid_image_url", "must be base64"),
    ("data:image/png;base64,@@@@", "invalid_image_format", "not valid base64"),
    ("data:image/png;base64," + base64.b64encode(b"GIF8").decode(), "invalid_image_format",
     "not an image"),
    (data_url(png_bomb()), "invalid_image_format", "more than the limit"),
    ("ftp://example.com/a.png", "invalid_image_url", "must be a base64 data: URL or an http"),
    ("cat.png", "invalid_image_url", "must be a base64 data: URL or an http"),
])
def test_each_failure_names_its_part(url: str, code: str, reason: str) -> None:
    images = ImageInputs()
    images.from_url(data_url(png()), "auto", "messages[0].content[0]")
    images.from_url(url, "auto", "messages[0].content[1]")
    error = refusal(images)
    assert error.param == "messages[0].content[1]" and error.code == code
    assert reason in error.message, error.message


def test_a_refused_fetch_is_a_400_naming_the_part() -> None:
    images = ImageInputs()
    images.from_url("http://localhost/cat.png", "auto", "input[0].content[2]")
    real = ImageLoader(ImageLimits(), Fetcher(FetchPolicy()))  # fetching off
    error = refusal(images, real)
    assert error.param == "input[0].content[2]" and error.code == "invalid_image_url"
    assert "turned off" in error.message


def test_size_and_count_limits() -> None:
    big = png(2, 2) + b"\x00" * 5000
    images = ImageInputs()
    images.from_url(data_url(big), "auto", "p")
    error = refusal(images, loader(max_bytes=4096))
    assert error.code == "image_too_large" and error.param == "p"
    images = ImageInputs()
    images.from_bytes(big, "auto", "file")
    assert refusal(images, loader(max_bytes=4096)).code == "image_too_large"
    images = ImageInputs()
    for i in range(3):
        images.from_url(data_url(png()), "auto", f"img{i}")
    error = refusal(images, loader(max_count=2))
    assert error.code == "too_many_images" and error.param == "img2"


def test_fetching_needs_an_allowlist() -> None:
    with pytest.raises(ValidationError, match="image_fetch_allowed_hosts"):
        Settings(models=[], image_fetch_enabled=True)
    assert Settings(models=[], image_fetch_enabled=True,
                    image_fetch_allowed_hosts=["cdn.example"]).image_fetch_enabled


def test_which_models_see() -> None:
    def spec(**fields: object) -> ModelSpec:
        return ModelSpec.model_validate({"id": "m", "capability": "chat", "backend": "llamacpp",
                                         "source": "none:", **fields})

    assert sees(spec(options={"mmproj": "/models/mmproj.gguf"}))
    assert sees(spec(backend="transformers_vlm"))
    assert sees(spec(backend="fake", options={"vision": True}))
    assert not sees(spec()) and not sees(spec(options={"mmproj": ""}))
    assert not sees(spec(capability="embeddings", options={"vision": True}))
