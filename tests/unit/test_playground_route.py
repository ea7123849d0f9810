"""The playground's routes: open without a key, strict headers, off by a setting."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from pocketserve.api.app import create_app
from pocketserve.config import Settings


def _client(**settings: object) -> TestClient:
    return TestClient(create_app(Settings(models=[], **settings)))  # type: ignore[arg-type]


def test_the_page_and_its_files_need_no_key_but_the_api_does() -> None:
    with _client(api_keys=["sk-x"]) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/playground/app.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        script = client.get("/playground/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert script.headers["content-security-policy"] == csp
        assert client.get("/playground/pcm-worklet.js").status_code == 200
        assert client.get("/v1/models").status_code == 401
        assert client.get("/playground/nothing.js").status_code == 404
        # The folder's files only: nothing above it.
        assert client.get("/playground/..%2f__init__.py").status_code == 404


def test_no_inline_script_or_style_in_the_page() -> None:
    with _client() as client:
        html = client.get("/").text
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers


def test_the_playground_can_be_turned_off() -> None:
    with _client(playground=False, api_keys=["sk-x"]) as client:
        assert client.get("/").status_code == 401
        assert client.get("/playground/app.js").status_code == 401
    with _client(playground=False) as client:
        assert client.get("/").status_code == 404
        assert client.get("/playground/app.js").status_code == 404


def test_the_page_is_not_in_the_api_document() -> None:
    with _client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/playground") for p in paths)
