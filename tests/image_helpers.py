"""Small real images built in memory (PNG, GIF, BMP, JPEG and WebP headers), and a local HTTP
server that records every request it gets, for the fetch guard's tests."""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A real PNG: `width` x `height` pixels of one colour."""
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b""))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose header declares a canvas of `width` x `height`."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def gif(width: int = 3, height: int = 5) -> bytes:
    return (b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00"
            + b"\x00\x00\x00\xff\xff\xff" + b",\x00\x00\x00\x00" + struct.pack("<HH", width, height)
            + b"\x00\x02\x02\x44\x01\x00;")


def bmp(width: int = 4, height: int = -3) -> bytes:
    """A BMP header (a negative height: rows stored top-down)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\x00" * (((width * 3 + 3) // 4) * 4 * abs(height))
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 54) + info + pixels


def jpeg_header(width: int = 7, height: int = 6) -> bytes:
    """SOI, an APP0 segment, then a baseline frame header: what the sniffer reads."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def webp_lossless(width: int = 9, height: int = 4) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def seen(number: int, data: bytes, media_type: str, size: str, detail: str = "auto") -> str:
    """What the fake vision model says of image `number` (backends/fake.py)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"image{number}: {media_type} {size} {len(data)}B sha256:{digest} detail:{detail}"


Route = Callable[[BaseHTTPRequestHandler], None]


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1; `hits` lists (path, Host header) of every request
    that reached it. `routes` maps a path to a handler; others answer 404."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.routes: dict[str, Route] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append((self.path, self.headers.get("Host", "")))
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def body(data: bytes, content_type: str = "image/png", length: bool = True) -> Route:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return send


def endless(chunk: bytes = b"\x89PNG" + b"\x00" * 65532) -> Route:
    """A body with no declared length that would go on far past any cap (ends after 64 MiB)."""
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.protocol_version = "HTTP/1.0"
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.end_headers()
        try:
            for _ in range(1024):
                handler.wfile.write(chunk)
        except OSError:
            pass  # the client hung up at its cap
    return send


def declared(length: int) -> Route:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
    return send


def redirect(location: str, status: int = 302) -> Route:
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return send


def slow(seconds: float, data: bytes) -> Route:
    def send(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        body(data)(handler)
    return send
