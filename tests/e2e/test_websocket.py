"""WebSockets end to end: the app served by uvicorn as `pocketserve serve` configures it, and
the `websockets` client a user would use; then the `pocketserve serve` command itself."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from pocketserve.cli import uvicorn_config
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.e2e.helpers import metric, wait_for
from tests.ws_helpers import ECHO, KEY, echo_app, ws_settings

MAX_MESSAGE = 4096


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    settings = ws_settings(port=free_port(), max_body_bytes=MAX_MESSAGE,
                           max_websocket_connections=2)
    server = uvicorn.Server(uvicorn_config(echo_app(settings), settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, timeout_s=30)
    yield f"127.0.0.1:{settings.port}"
    server.should_exit = True
    thread.join(timeout=30)


def _open(base: str, path: str = ECHO, headers: dict[str, str] | None = None,
          subprotocols: list[str] | None = None) -> ClientConnection:
    return connect(f"ws://{base}{path}", additional_headers=headers, open_timeout=10,
                   subprotocols=[Subprotocol(s) for s in subprotocols or []] or None)


def _refused(base: str, **kwargs: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused, \
            _open(base, **kwargs):  # type: ignore[arg-type]
        pass
    return refused.value


def test_no_key_and_wrong_key_get_401_in_openai_envelope(base: str) -> None:
    for kwargs in ({}, {"headers": {"Authorization": "Bearer nope"}},
                   {"subprotocols": ["realtime", "openai-insecure-api-key.nope"]}):
        refused = _refused(base, **kwargs)
        assert refused.response.status_code == 401, kwargs
        assert json.loads(refused.response.body)["error"]["code"] == "invalid_api_key"
        assert refused.response.headers["x-request-id"]


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "subprotocol"])
def test_keys_accepted_and_the_key_never_comes_back(base: str, how: str) -> None:
    headers = {"bearer": {"Authorization": f"Bearer {KEY}"}, "x-api-key": {"X-API-Key": KEY},
               "subprotocol": {}}[how]
    offered = ["realtime", f"openai-insecure-api-key.{KEY}"] if how == "subprotocol" else None
    with _open(base, headers={**headers, "X-Request-ID": f"e2e-{how}"},
               subprotocols=offered) as ws:
        hello = json.loads(ws.recv())
        assert hello["request_id"] == f"e2e-{how}"
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == f"e2e-{how}"
        assert KEY not in str(ws.response.headers)
        assert ws.subprotocol == ("realtime" if offered else None)
        ws.send("hello")
        assert ws.recv() == "hello"


def test_message_past_max_body_bytes_closes_1009(base: str) -> None:
    with _open(base, headers={"X-API-Key": KEY}) as ws:
        ws.recv()
        ws.send("x" * (MAX_MESSAGE + 1))
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_connection_limit_then_free_again_and_metrics(base: str) -> None:
    key = {"X-API-Key": KEY}
    with contextlib.ExitStack() as held:
        first = held.enter_context(_open(base, headers=key))
        held.enter_context(_open(base, headers=key))
        refused = _refused(base, headers=key)
        assert refused.response.status_code == 429
        assert int(refused.response.headers["retry-after"]) >= 1
        assert json.loads(refused.response.body)["error"]["code"] == "too_many_connections"
        scrape = httpx.get(f"http://{base}/metrics").text
        assert metric(scrape, "pocketserve_websocket_connections_open", route=ECHO) == 2
        first.close()

        def reopened() -> bool:
            try:
                with _open(base, headers=key):
                    return True
            except InvalidStatus:
                return False

        assert wait_for(reopened, timeout_s=10, step_s=0.1)
    assert wait_for(lambda: metric(httpx.get(f"http://{base}/metrics").text,
                                   "pocketserve_websocket_connections_open") == 0)
    scrape = httpx.get(f"http://{base}/metrics").text
    assert metric(scrape, "pocketserve_websocket_connections_total", route=ECHO,
                  outcome="connection_limit") >= 1
    assert metric(scrape, "pocketserve_websocket_connections_total", route=ECHO,
                  outcome="accepted") >= 3
    assert metric(scrape, "pocketserve_websocket_connection_duration_seconds_count",
                  route=ECHO) >= 3


@pytest.fixture(scope="module")
def served() -> Iterator[RunningServer]:
    running = start_server([], env={"POCKETSERVE_MODELS": "[]",
                                    "POCKETSERVE_API_KEYS": json.dumps([KEY])})
    yield running
    stop_server(running)


def test_pocketserve_serve_speaks_websocket(served: RunningServer) -> None:
    base = f"127.0.0.1:{served.port}"
    refused = _refused(base, path="/v1/realtime", headers={"X-Request-ID": "cli-ws"})
    assert refused.response.status_code == 401
    assert refused.response.headers["x-request-id"] == "cli-ws"
    # Past the key: the realtime route accepts, and with no chat model served says so in an
    # error event and closes 1008.
    with _open(base, path="/v1/realtime", headers={"X-API-Key": KEY}) as ws:
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["error"]["param"] == "model"
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    # No such route: refused before accept, as Starlette closes it.
    assert _refused(base, path="/v1/no-such-socket",
                    headers={"X-API-Key": KEY}).response.status_code == 403
    assert wait_for(lambda: "WS /v1/no-such-socket refused not_found" in served.log())
    assert "WS /v1/realtime refused unauthorized 401" in served.log()
    assert "Unsupported upgrade request" not in served.log()
    assert "without completing handshake" not in served.log()  # uvicorn's false alarm dropped
