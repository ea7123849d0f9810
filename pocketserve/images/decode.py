"""What an image is, from its first bytes: the format (sniffed, never taken from a header or a
data: URL's label) and the pixel size its header declares.

No image library: the headers of PNG, JPEG, GIF, WebP and BMP are read by hand, which is enough
to refuse what is not an image and a decompression bomb (a small file that declares a huge
canvas) before any decoder inflates it. The pixels themselves are decoded by the model's own
backend (llama.cpp's mtmd, a transformers processor), which answers 400 when they are corrupt.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class ImageError(ValueError):
    """Bytes that are not an image this server takes, or one too large; the text says why."""


@dataclass(frozen=True)
class ImageInfo:
    media_type: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


FORMATS = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


def inspect(data: bytes) -> ImageInfo:
    """The format and declared size of `data`, or ImageError."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        info = _png(data)
    elif data.startswith(b"\xff\xd8\xff"):
        info = _jpeg(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        info = _sized("image/gif", data, 6, "<HH")
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        info = _webp(data)
    elif data.startswith(b"BM"):
        info = _bmp(data)
    else:
        raise ImageError("the bytes are not an image in a known format (PNG, JPEG, GIF, WebP "
                         "or BMP)")
    if info.width <= 0 or info.height <= 0:
        raise ImageError(f"the {_name(info.media_type)} header declares an empty image "
                         f"({info.width}x{info.height})")
    return info


def checked(data: bytes, max_pixels: int) -> ImageInfo:
    """`inspect`, and refused when the declared canvas is over `max_pixels` (a bomb)."""
    info = inspect(data)
    if info.pixels > max_pixels:
        raise ImageError(f"the {_name(info.media_type)} declares {info.width}x{info.height} "
                         f"pixels, more than the limit of {max_pixels}")
    return info


def _name(media_type: str) -> str:
    return media_type.removeprefix("image/").upper()


def _sized(media_type: str, data: bytes, offset: int, fmt: str) -> ImageInfo:
    size = struct.calcsize(fmt)
    if len(data) < offset + size:
        raise ImageError(f"the {_name(media_type)} header is cut short")
    width, height = struct.unpack_from(fmt, data, offset)
    return ImageInfo(media_type, width, height)


def _png(data: bytes) -> ImageInfo:
    if data[12:16] != b"IHDR":
        raise ImageError("the PNG has no IHDR header")
    return _sized("image/png", data, 16, ">II")


# Start-of-frame markers carry the size; C4 (Huffman tables), C8 and CC (arithmetic) do not.
_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI, EOI


def _jpeg(data: bytes) -> ImageInfo:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError("the JPEG's markers are corrupt")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker in _SOF:
            height_width = _sized("image/jpeg", data, pos + 5, ">HH")
            return ImageInfo("image/jpeg", height_width.height, height_width.width)
        if marker == 0xDA:  # start of scan before any frame header
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ImageError("the JPEG's markers are corrupt")
        pos += 2 + length
    raise ImageError("the JPEG has no frame header")


def _webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageError("the WebP (VP8) frame is corrupt")
        info = _sized("image/webp", data, 26, "<HH")
        return ImageInfo("image/webp", info.width & 0x3FFF, info.height & 0x3FFF)
    if chunk == b"VP8L":
        if len(data) < 25 or data[20] != 0x2F:
            raise ImageError("the WebP (lossless) header is corrupt")
        (bits,) = struct.unpack_from("<I", data, 21)
        return ImageInfo("image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        if len(data) < 30:
            raise ImageError("the WebP header is cut short")
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("image/webp", width, height)
    raise ImageError("the WebP has no known image chunk")


def _bmp(data: bytes) -> ImageInfo:
    if len(data) < 18:
        raise ImageError("the BMP header is cut short")
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _sized("image/bmp", data, 18, "<HH")
    info = _sized("image/bmp", data, 18, "<ii")
    return ImageInfo("image/bmp", info.width, abs(info.height))  # negative: top-down rows
