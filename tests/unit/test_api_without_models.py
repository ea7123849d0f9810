"""The HTTP layer with no model loaded: keys, request ids on every answer, limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pocketserve.api.app import create_app
from pocketserve.config import Settings


@pytest.fixture()
def client() -> Iterator[TestClient]:
    settings = Settings(models=[], api_keys=["sk-test"], max_body_bytes=2048,
                        rate_limit_requests_per_min=3)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_401_without_key_in_openai_envelope(client: TestClient) -> None:
    reply = client.get("/v1/models")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.headers["x-request-id"]
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "Incorrect API key" in wrong.json()["error"]["message"]


def test_key_as_bearer_or_header_and_open_paths(client: TestClient) -> None:
    assert client.get("/v1/models", headers={"Authorization": "Bearer sk-test"}).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": "sk-test"}).status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/admin/models").status_code == 401


def test_health_aliases_answer_as_health_without_a_key(client: TestClient) -> None:
    health = client.get("/health")
    for alias in ("/healthz", "/ping"):
        reply = client.get(alias)
        assert reply.status_code == 200, alias
        assert reply.json() == health.json() == {"status": "ok", "models": {}, "not_ready": []}
    assert client.get("/healthy").status_code == 401  # only the exact paths are open


def test_request_id_echoed_on_errors(client: TestClient) -> None:
    headers = {"X-API-Key": "sk-test", "X-Request-ID": "trace-123"}
    missing = client.post("/v1/chat/completions", headers=headers,
                          json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "trace-123"
    too_big = client.post("/v1/chat/completions", headers=headers, content=b"x" * 4096)
    assert too_big.status_code == 413
    assert too_big.headers["x-request-id"] == "trace-123"
    bad_timeout = client.get("/v1/models", headers={**headers, "X-Request-Timeout": "soon"})
    assert bad_timeout.status_code == 400
    assert bad_timeout.json()["error"]["param"] == "X-Request-Timeout"
    assert bad_timeout.headers["x-request-id"] == "trace-123"


def test_rate_limit_per_key_with_retry_after(client: TestClient) -> None:
    headers = {"X-API-Key": "sk-test"}
    for _ in range(3):
        assert client.get("/v1/models", headers=headers).status_code == 200
    limited = client.get("/v1/models", headers=headers)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_metrics_count_requests_by_route_and_status(client: TestClient) -> None:
    client.get("/v1/models")  # refused before routing: counted as unmatched
    client.get("/v1/models", headers={"X-API-Key": "sk-test"})
    text = client.get("/metrics").text
    assert 'pocketserve_requests_total{model="-",route="unmatched",status="401"} 1.0' in text
    assert 'pocketserve_requests_total{model="-",route="/v1/models",status="200"} 1.0' in text


def test_unexpected_error_is_500_envelope_with_request_id() -> None:
    from starlette.types import Receive, Scope, Send

    from pocketserve.api.middleware import RequestContextMiddleware
    from pocketserve.serving.metrics import Metrics

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    app = RequestContextMiddleware(broken, metrics=Metrics(), timeout_s=None)
    test_client = TestClient(app)  # not entered: no lifespan for this bare app
    reply = test_client.get("/anything", headers={"X-Request-ID": "trace-500"})
    assert reply.status_code == 500
    assert reply.json()["error"]["type"] == "server_error"
    assert "boom" not in reply.text  # no internals leak to the client
    assert reply.headers["x-request-id"] == "trace-500"

