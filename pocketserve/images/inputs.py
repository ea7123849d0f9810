"""A request's images: collected while its messages are converted, loaded once it is known that
the model can see them.

Converting a request is synchronous and knows nothing of the model; loading may fetch. So the
protocol layer puts an empty `ImagePart` in the message for each image and records here where
its bytes come from and which request field it was (`messages[0].content[1]`). The route checks
the model, then `ImageLoader.load` fills every part (base64 decoded, URLs fetched concurrently
through the guard) and checks the bytes, or raises a 400 naming the field.
"""

from __future__ import annotations

import asyncio
import binascii
from dataclasses import dataclass, field

from pocketserve.config import Settings
from pocketserve.errors import InvalidRequest
from pocketserve.images.decode import ImageError, checked
from pocketserve.images.fetch import Fetcher, FetchPolicy, FetchRefused
from pocketserve.ops.chat import ImagePart


@dataclass
class _Pending:
    part: ImagePart
    param: str
    url: str | None = None  # a data: or http(s) URL
    base64: str | None = None  # bare base64 (Anthropic's source)
    raw: bytes | None = None  # an uploaded file


@dataclass
class ImageInputs:
    """The images one request holds, in order."""

    pending: list[_Pending] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pending)

    @property
    def params(self) -> list[str]:
        return [p.param for p in self.pending]

    def from_url(self, url: str, detail: str, param: str) -> ImagePart:
        part = ImagePart(data=b"", media_type="", detail=detail)
        self.pending.append(_Pending(part, param, url=url))
        return part

    def from_base64(self, data: str, detail: str, param: str) -> ImagePart:
        part = ImagePart(data=b"", media_type="", detail=detail)
        self.pending.append(_Pending(part, param, base64=data))
        return part

    def from_bytes(self, data: bytes, detail: str, param: str) -> ImagePart:
        part = ImagePart(data=b"", media_type="", detail=detail)
        self.pending.append(_Pending(part, param, raw=data))
        return part


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_count: int = 16


class ImageLoader:
    """Fills a request's image parts with checked bytes."""

    def __init__(self, limits: ImageLimits, fetcher: Fetcher):
        self.limits = limits
        self.fetcher = fetcher

    @classmethod
    def from_settings(cls, s: Settings) -> ImageLoader:
        policy = FetchPolicy(enabled=s.image_fetch_enabled,
                             allowed_hosts=tuple(s.image_fetch_allowed_hosts),
                             max_bytes=s.image_max_bytes, timeout_s=s.image_fetch_timeout_s,
                             max_redirects=s.image_fetch_max_redirects)
        limits = ImageLimits(s.image_max_bytes, s.image_max_pixels, s.image_max_per_request)
        return cls(limits, Fetcher(policy))

    async def load(self, images: ImageInputs) -> None:
        """Every part filled, or the first failure (in request order) as a 400."""
        if len(images.pending) > self.limits.max_count:
            raise InvalidRequest(f"The request holds {len(images.pending)} images; this server "
                                 f"takes at most {self.limits.max_count} per request.",
                                 param=images.pending[self.limits.max_count].param,
                                 code="too_many_images")
        results = await asyncio.gather(*(self._one(p) for p in images.pending),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _one(self, pending: _Pending) -> None:
        data = await self._bytes(pending)
        try:
            info = checked(data, self.limits.max_pixels)
        except ImageError as exc:
            raise InvalidRequest(f"The image at {pending.param} cannot be read: {exc}.",
                                 param=pending.param, code="invalid_image_format") from None
        pending.part.data = data
        pending.part.media_type = info.media_type

    async def _bytes(self, pending: _Pending) -> bytes:
        if pending.raw is not None:
            if len(pending.raw) > self.limits.max_bytes:
                raise _too_large(pending.param, self.limits.max_bytes)
            return pending.raw
        if pending.base64 is not None:
            return self._decoded(pending.base64, pending.param)
        url = pending.url or ""
        if url[:5].lower() == "data:":
            return self._data_url(url, pending.param)
        if url.split(":", 1)[0].lower() not in ("http", "https"):
            raise InvalidRequest(f"The image URL at {pending.param} must be a base64 data: URL "
                                 "or an http(s) URL.", param=pending.param,
                                 code="invalid_image_url")
        try:
            return await self.fetcher.fetch(url)
        except FetchRefused as exc:
            raise InvalidRequest(f"The image URL at {pending.param} was not fetched: {exc}.",
                                 param=pending.param, code="invalid_image_url") from None

    def _data_url(self, url: str, param: str) -> bytes:
        header, comma, payload = url[5:].partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise InvalidRequest(f"The data: URL at {param} must be base64 "
                                 "(data:image/png;base64,...).", param=param,
                                 code="invalid_image_url")
        return self._decoded(payload, param)

    def _decoded(self, text: str, param: str) -> bytes:
        cap = self.limits.max_bytes
        if len(text) // 4 * 3 > cap + 3:
            raise _too_large(param, cap)
        try:
            data = binascii.a2b_base64("".join(text.split()), strict_mode=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"The image at {param} is not valid base64.", param=param,
                                 code="invalid_image_format") from None
        if len(data) > cap:
            raise _too_large(param, cap)
        return data


def _too_large(param: str, cap: int) -> InvalidRequest:
    return InvalidRequest(f"The image at {param} is larger than the limit of {cap} bytes.",
                          param=param, code="image_too_large")
