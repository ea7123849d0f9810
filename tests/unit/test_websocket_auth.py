"""WebSocket handshakes through the real middleware (Starlette's TestClient): keys in headers or
the browser subprotocol, request ids, refusals in OpenAI's envelope, errors of a route."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import WebSocket
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from pocketserve.api.websocket import choose_subprotocol, key_from_subprotocols
from pocketserve.errors import ModelNotFound
from tests.ws_helpers import ECHO, KEY, echo_app, ws_settings

BROWSER = ["realtime", f"openai-insecure-api-key.{KEY}"]


@pytest.fixture()
def client() -> Iterator[TestClient]:
    app = echo_app(ws_settings(open_paths=["/health", "/metrics", "/v1/open/*"]))

    @app.websocket("/v1/test/secret-echo")
    async def careless(websocket: WebSocket) -> None:  # accepts the key subprotocol itself
        await websocket.accept(subprotocol=websocket.scope["subprotocols"][-1])
        await websocket.send_text("hi")

    @app.websocket("/v1/open/fails")
    async def fails(websocket: WebSocket) -> None:
        if websocket.query_params.get("after") == "accept":
            await websocket.accept()
        if websocket.query_params.get("kind") == "crash":
            raise RuntimeError("boom")
        raise ModelNotFound("The model 'nope' does not exist.")

    @app.websocket("/v1/open/forgets")
    async def forgets(websocket: WebSocket) -> None:  # neither accepts nor refuses
        return

    with TestClient(app) as test_client:
        yield test_client


def _denied(client: TestClient, path: str = ECHO, **kwargs: object) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as refused, \
            client.websocket_connect(path, **kwargs):  # type: ignore[arg-type]
        pass
    return refused.value


def test_no_key_is_refused_before_accept_with_401(client: TestClient) -> None:
    refused = _denied(client)
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "openai-insecure-api-key." in error["message"]
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["x-request-id"]


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "subprotocol"])
def test_wrong_key_is_refused(client: TestClient, how: str) -> None:
    kwargs: dict[str, object] = {
        "bearer": {"headers": {"Authorization": "Bearer nope"}},
        "x-api-key": {"headers": {"X-API-Key": "nope"}},
        "subprotocol": {"subprotocols": ["realtime", "openai-insecure-api-key.nope"]},
    }[how]
    refused = _denied(client, **kwargs)
    assert refused.status_code == 401
    assert "Incorrect API key" in refused.json()["error"]["message"]


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "subprotocol"])
def test_right_key_is_accepted_and_echoes(client: TestClient, how: str) -> None:
    kwargs: dict[str, object] = {
        "bearer": {"headers": {"Authorization": f"Bearer {KEY}"}},
        "x-api-key": {"headers": {"X-API-Key": KEY}},
        "subprotocol": {"subprotocols": BROWSER},
    }[how]
    with client.websocket_connect(ECHO, **kwargs) as ws:  # type: ignore[arg-type]
        hello = ws.receive_json()
        assert hello["api_key_id"].startswith("key-")
        ws.send_text("ping")
        assert ws.receive_text() == "ping"
        if how == "subprotocol":
            assert ws.accepted_subprotocol == "realtime"
            assert KEY not in str(ws.extra_headers)


def test_key_subprotocol_alone_is_never_echoed(client: TestClient) -> None:
    with client.websocket_connect(ECHO, subprotocols=[f"openai-insecure-api-key.{KEY}"]) as ws:
        assert ws.receive_json()["subprotocol"] is None
        assert ws.accepted_subprotocol is None


def test_middleware_drops_a_key_subprotocol_a_route_accepts(client: TestClient) -> None:
    with client.websocket_connect("/v1/test/secret-echo", subprotocols=BROWSER) as ws:
        assert ws.receive_text() == "hi"
        assert ws.accepted_subprotocol is None


def test_request_id_round_trip(client: TestClient) -> None:
    headers = {"X-API-Key": KEY, "X-Request-ID": "ws-trace-7"}
    with client.websocket_connect(ECHO, headers=headers) as ws:
        assert ws.receive_json()["request_id"] == "ws-trace-7"
        assert (b"x-request-id", b"ws-trace-7") in (ws.extra_headers or [])
    with client.websocket_connect(ECHO, headers={"X-API-Key": KEY,
                                                 "X-Request-ID": "bad id"}) as ws:
        made = ws.receive_json()["request_id"]
        assert made != "bad id" and len(made) == 32
        assert (b"x-request-id", made.encode()) in (ws.extra_headers or [])
    refused = _denied(client, headers={"X-Request-ID": "ws-trace-8"})
    assert refused.headers["x-request-id"] == "ws-trace-8"


def test_request_timeout_header_is_refused_not_ignored(client: TestClient) -> None:
    refused = _denied(client, headers={"X-API-Key": KEY, "X-Request-Timeout": "5"})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "X-Request-Timeout"


def test_open_paths_need_no_key(client: TestClient) -> None:
    assert _denied(client, "/v1/open/fails").status_code == 404  # reached the route


def test_route_errors_deny_before_accept_and_close_after(client: TestClient) -> None:
    refused = _denied(client, "/v1/open/fails")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    with client.websocket_connect("/v1/open/fails?after=accept") as ws, \
            pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()
    assert closed.value.code == 1008 and "does not exist" in closed.value.reason
    with client.websocket_connect("/v1/open/fails?after=accept&kind=crash") as ws, \
            pytest.raises(WebSocketDisconnect) as crashed:
        ws.receive_text()
    assert crashed.value.code == 1011


def test_an_unsettled_handshake_or_a_crash_before_accept_is_a_500(client: TestClient) -> None:
    refused = _denied(client, "/v1/open/forgets", headers={"X-Request-ID": "forgot-1"})
    assert refused.status_code == 500
    assert refused.json()["error"]["type"] == "server_error"
    assert refused.headers["x-request-id"] == "forgot-1"
    crashed = _denied(client, "/v1/open/fails?kind=crash")
    assert crashed.status_code == 500
    assert "boom" not in crashed.text


def test_access_log_line_when_a_connection_closes(client: TestClient,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pocketserve.access")
    with client.websocket_connect(ECHO, headers={"X-API-Key": KEY}) as ws:
        ws.receive_json()
    _denied(client)
    lines = [r.getMessage() for r in caplog.records if r.name == "pocketserve.access"]
    assert any(line.startswith(f"WS {ECHO} closed 1000 by client") for line in lines), lines
    assert any(line.startswith(f"WS {ECHO} refused unauthorized 401") for line in lines), lines


def test_subprotocol_helpers() -> None:
    assert key_from_subprotocols(["realtime", "openai-insecure-api-key.abc"]) == "abc"
    assert key_from_subprotocols(["realtime", "openai-insecure-api-key."]) is None
    assert key_from_subprotocols([]) is None
    offered = ["openai-insecure-api-key.abc", "openai-beta.realtime-v1", "realtime"]
    assert choose_subprotocol(offered, ["realtime"]) == "realtime"
    assert choose_subprotocol(offered, ["openai-insecure-api-key.abc"]) is None
    assert choose_subprotocol(offered, []) is None
