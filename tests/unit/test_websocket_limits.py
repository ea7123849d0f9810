"""WebSocket connection limits, per-key rate limits on opening connections, the metrics they
move, and the close-code fallback for servers without HTTP denial responses."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.types import Message

from pocketserve.api.limits import ConnectionSlots
from tests.e2e.helpers import metric
from tests.ws_helpers import ECHO, KEY, echo_app, ws_settings

OTHER = "sk-ws-other"


def _refusal(client: TestClient, headers: dict[str, str]) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as refused, \
            client.websocket_connect(ECHO, headers=headers):
        pass
    return refused.value


def test_server_limit_refuses_the_next_and_accepts_after_one_closes() -> None:
    app = echo_app(ws_settings(max_websocket_connections=2))
    key = {"X-API-Key": KEY}
    with TestClient(app) as client, contextlib.ExitStack() as stack:
        first = stack.enter_context(client.websocket_connect(ECHO, headers=key))
        stack.enter_context(client.websocket_connect(ECHO, headers=key))
        first.receive_json()
        refused = _refusal(client, key)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_connections"
        assert int(refused.headers["retry-after"]) >= 1
        assert "limit of 2 open WebSocket connections" in refused.json()["error"]["message"]
        first.close()
        stack.close()  # both closed now
        with client.websocket_connect(ECHO, headers=key) as again:
            assert again.receive_json()["request_id"]
        text = client.get("/metrics").text
    assert metric(text, "pocketserve_websocket_connections_total", route=ECHO,
                  outcome="accepted") == 3
    assert metric(text, "pocketserve_websocket_connections_total", route=ECHO,
                  outcome="connection_limit") == 1


def test_per_key_limit_leaves_other_keys_alone() -> None:
    app = echo_app(ws_settings(api_keys=[KEY, OTHER], max_websocket_connections_per_key=1))
    with TestClient(app) as client, \
            client.websocket_connect(ECHO, headers={"X-API-Key": KEY}) as held:
        held_key = held.receive_json()["api_key_id"]
        refused = _refusal(client, {"Authorization": f"Bearer {KEY}"})
        assert refused.status_code == 429
        assert "This API key has reached its limit of 1" in refused.json()["error"]["message"]
        with client.websocket_connect(ECHO, headers={"X-API-Key": OTHER}) as other:
            assert other.receive_json()["api_key_id"] != held_key
        text = client.get("/metrics").text
    assert metric(text, "pocketserve_websocket_connections_total",
                  outcome="key_connection_limit") == 1


def test_rate_limit_counts_connections_opened() -> None:
    app = echo_app(ws_settings(rate_limit_requests_per_min=2))
    key = {"X-API-Key": KEY}
    with TestClient(app) as client:
        for _ in range(2):
            with client.websocket_connect(ECHO, headers=key) as ws:
                ws.receive_json()
        refused = _refusal(client, key)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        text = client.get("/metrics").text
    assert metric(text, "pocketserve_websocket_connections_total", route=ECHO,
                  outcome="rate_limited") == 1


def test_metrics_gauge_counts_and_duration() -> None:
    app = echo_app(ws_settings())
    with TestClient(app) as client:
        with client.websocket_connect(ECHO, headers={"X-API-Key": KEY}) as ws:
            ws.receive_json()
            during = client.get("/metrics").text
        assert _refusal(client, {}).status_code == 401
        after = client.get("/metrics").text
    assert metric(during, "pocketserve_websocket_connections_open", route=ECHO) == 1
    assert metric(after, "pocketserve_websocket_connections_open", route=ECHO) == 0
    assert metric(after, "pocketserve_websocket_connections_total", route=ECHO,
                  outcome="unauthorized") == 1
    assert metric(after, "pocketserve_websocket_connection_duration_seconds_count",
                  route=ECHO) == 1
    assert metric(after, "pocketserve_requests_total", route=ECHO) == 0  # not HTTP requests


def _raw_handshake(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    """One handshake straight through ASGI, from a server without the denial extension."""
    scope: dict[str, Any] = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": ECHO,
        "raw_path": ECHO.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "subprotocols": [], "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        "state": {}}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"} if not sent else {"type": "websocket.disconnect",
                                                               "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_without_denial_extension_refusals_are_close_codes() -> None:
    app = echo_app(ws_settings(max_websocket_connections=1))
    [unauthorized] = _raw_handshake(app, [])
    assert unauthorized["type"] == "websocket.close" and unauthorized["code"] == 1008
    assert "API key" in unauthorized["reason"]
    assert app.middleware_stack is not None
    assert _find_slots(app.middleware_stack).take(None) is None  # the one slot, held elsewhere
    [full] = _raw_handshake(app, [(b"x-api-key", KEY.encode())])
    assert full["type"] == "websocket.close" and full["code"] == 1013


def _find_slots(app: Any) -> ConnectionSlots:
    while not isinstance(getattr(app, "slots", None), ConnectionSlots):
        app = app.app
    return app.slots  # type: ignore[no-any-return]


def test_connection_slots_count_per_key() -> None:
    slots = ConnectionSlots(max_total=3, max_per_key=2)
    assert slots.take("a") is None and slots.take("a") is None
    assert slots.take("a") == "key_connection_limit"
    assert slots.take(None) is None
    assert slots.take("b") == "connection_limit"
    slots.give("a")
    assert slots.take("b") is None
    assert slots.total == 3
