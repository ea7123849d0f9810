"""Key matching, open paths, bind safety, request ids, deadlines and input limits."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from pocketserve.api.auth import ApiKeys, check_bind, is_open_path, presented_key
from pocketserve.api.middleware import deadline_from, request_id_from
from pocketserve.errors import InvalidRequest
from pocketserve.serving.metrics import Metrics
from pocketserve.serving.usage import check_input, text_chars


def test_keys_match_by_value_only() -> None:
    keys = ApiKeys(["alpha-key", "beta-key"])
    assert keys.match("alpha-key") is not None
    assert keys.match("beta-key") not in (None, keys.match("alpha-key"))
    assert keys.match("alpha-ke") is None
    assert keys.match("") is None
    assert not ApiKeys([])


def test_key_from_bearer_or_x_api_key() -> None:
    assert presented_key(Headers({"authorization": "Bearer abc"})) == "abc"
    assert presented_key(Headers({"x-api-key": "xyz"})) == "xyz"
    assert presented_key(Headers({"authorization": "Basic abc"})) is None
    assert presented_key(Headers({})) is None


def test_open_paths_exact_and_prefix() -> None:
    assert is_open_path("/health", ["/health"])
    assert not is_open_path("/healthz", ["/health"])
    assert is_open_path("/docs/x", ["/docs*"])
    assert not is_open_path("/v1/models", ["/health", "/metrics"])


def test_bind_refuses_open_address_without_keys() -> None:
    assert check_bind("127.0.0.1", has_keys=False, allow_open=False) is None
    assert check_bind("localhost", has_keys=False, allow_open=False) is None
    assert check_bind("::1", has_keys=False, allow_open=False) is None
    refusal = check_bind("0.0.0.0", has_keys=False, allow_open=False)
    assert refusal is not None and "API_KEYS" in refusal and "--allow-open-access" in refusal
    assert check_bind("0.0.0.0", has_keys=True, allow_open=False) is None
    assert check_bind("0.0.0.0", has_keys=False, allow_open=True) is None


def test_request_id_kept_when_sane_else_made() -> None:
    assert request_id_from("req-42_a.b:c") == "req-42_a.b:c"
    assert len(request_id_from(None)) == 32
    assert request_id_from("bad id with spaces\n") != "bad id with spaces\n"
    assert request_id_from("x" * 500) != "x" * 500


def test_deadline_header_only_shortens() -> None:
    assert deadline_from(None, 600.0, 100.0) == 700.0
    assert deadline_from("2.5", 600.0, 100.0) == 102.5
    assert deadline_from("9999", 600.0, 100.0) == 700.0
    assert deadline_from("3", None, 100.0) == 103.0
    assert deadline_from(None, None, 100.0) is None
    for bad in ("soon", "-1", "0", "nan", "inf"):
        with pytest.raises(InvalidRequest):
            deadline_from(bad, 600.0, 100.0)


def test_input_limit_counts_all_text() -> None:
    payload = {"messages": [{"role": "user", "content": "x" * 40}], "sampling": {"n": 1}}
    assert text_chars(payload) == 44
    check_input("chat", payload, {"chat": 44})
    with pytest.raises(InvalidRequest) as caught:
        check_input("chat", payload, {"chat": 43})
    assert caught.value.code == "input_too_long"
    check_input("speech", payload, {"chat": 1})  # no limit for that capability


def test_each_metrics_object_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.requests.labels("/x", "m", "200").inc()
    assert b'route="/x"' in one.render()
    assert b'route="/x"' not in two.render()
