"""/openapi.json against a real server with the default models: every documented example is
answered as documented, and a schema fuzzer (schemathesis) finds no 5xx and no answer the
document does not describe.

The fuzzer is bounded: a few examples per operation, a deterministic seed, and each request's
X-Request-Timeout capped at FUZZ_TIMEOUT_S (a fuzzed chat request may ask for thousands of
tokens; it gets the documented 504 instead of minutes of generation).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import schemathesis.engine
from schemathesis import Case, HookContext
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response
from schemathesis.engine import Status
from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError, ScenarioFinished

from tests.conftest import RunningServer, stop_server
from tests.e2e.openapi_examples import (
    events,
    media_type,
    recorded,
    remember,
    requests_of,
    send,
    shape,
    start_example_server,
    text_shape,
)

FUZZ_TIMEOUT_S = 4.0
SMOLLM2_VOCAB = 49152


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_example_server()
    yield running
    stop_server(running)


# -- the examples are real ------------------------------------------------------------------


def test_every_example_is_answered_as_documented(server: RunningServer) -> None:
    """Each documented request gets 200 and an answer shaped like a documented answer of its
    media type; each documented answer is matched by some request. Values may differ (ids,
    times, sampled text); keys and types may not. Refresh the file with
    `python -m tests.e2e.openapi_examples` when an answer changes on purpose."""
    document = httpx.get(server.base_url + "/openapi.json").json()
    unmatched = {(key, media, name) for key, by_media in _documented(document).items()
                 for media, named in by_media.items() for name in named}
    earlier: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for example in requests_of(document):
            reply = send(server.base_url, example, Path(tmp), earlier)
            assert reply.status_code == 200, (example, reply.text)
            remember(example, reply, earlier)
            kind = media_type(reply)
            content = _operation(document, example)["responses"]["200"]["content"]
            assert kind in content, (example, kind)
            if kind.startswith("audio/"):
                assert reply.content, example
                continue
            named = content[kind].get("examples", {})
            matches = [n for n, e in named.items() if _same(kind, e["value"], recorded(reply))]
            assert matches, (f"{example.key} answered {kind} unlike its documented examples",
                             example, reply.text[:2000])
            unmatched -= {(example.key, kind, n) for n in matches}
    assert not unmatched, f"documented answers no example request produces: {unmatched}"


def _documented(document: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for media, body in operation["responses"]["200"].get("content", {}).items():
                if body.get("examples"):
                    found.setdefault(f"{method.upper()} {path}", {})[media] = body["examples"]
    return found


def _operation(document: dict[str, Any], example: Any) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][example.template][example.method]
    return operation


def _same(kind: str, documented: Any, live: Any) -> bool:
    if kind == "application/json":
        return bool(shape(documented) == shape(live))
    if kind == "text/event-stream":
        return {shape(e) for e in events(documented)} == {shape(e) for e in events(live)}
    if documented.startswith("# HELP"):  # metrics: the documented families are all there
        return all(line in live for line in documented.splitlines() if line.startswith("#"))
    return text_shape(documented) == text_shape(live)


# -- the fuzzer -----------------------------------------------------------------------------

CONFIG = {
    "seed": int(os.environ.get("FUZZ_SEED", "20261201")),
    "workers": 1,
    # FUZZ_SECONDS=600 fuzzes on (new random requests) for that long, to hunt by hand.
    **({"max-time": int(os.environ["FUZZ_SECONDS"])} if "FUZZ_SECONDS" in os.environ else {}),
    # Unknown headers and fields are accepted on purpose (newer SDKs send more): they are
    # no schema violation here.
    "generation": {"allow-extra-parameters": False, "max-examples": 8, "no-shrink": True},
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        # 504 is the documented answer to a request past its deadline (X-Request-Timeout,
        # capped at FUZZ_TIMEOUT_S); every other 5xx is a failure.
        "not_a_server_error": {"expected-statuses": ["2XX", "4XX", 504]},
        # A valid request may still name a model this server lacks (404) or ask for more
        # than it allows (400): valid by the schema is not the same as served.
        "positive_data_acceptance": {"enabled": False},
    },
}


def test_fuzz_the_document(server: RunningServer) -> None:
    """Examples, boundary values and random valid and invalid requests for every operation;
    checks: no 5xx but 504, statuses, content types, headers and bodies as documented, and
    requests that break the schema refused."""
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json",
                                           config=SchemathesisConfig.from_dict(CONFIG))
    schema.hook(map_case)
    schema.hook(filter_failure)
    failures: list[str] = []
    tested = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, ScenarioFinished) and event.status != Status.SKIP:
            tested += len(event.recorder.cases)
            failures += _failures(event)
        elif isinstance(event, NonFatalError | FatalError):
            failures.append(f"{getattr(event, 'label', '')}: {event}")
        elif isinstance(event, EngineFinished):
            print(f"fuzzed {tested} requests in {event.running_time:.0f}s")
    assert tested > 500
    assert not failures, "\n".join(dict.fromkeys(failures))


def _failures(event: ScenarioFinished) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                case = event.recorder.cases[case_id].value
                found.append(f"{event.label} {check.name}: {check.failure_info.failure}\n"
                             f"  reproduce: {check.failure_info.code_sample}\n  body: "
                             f"{case.body!r}"[:3000])
    return found


def filter_failure(context: HookContext, failure: Failure, case: Case,
                   response: Response) -> bool:
    """/health (and its aliases) answers 503 while a model loads: the fuzzer unloads and loads
    models through /admin, so that answer is the documented one, not a server error."""
    return not (case.operation.path in ("/health", "/healthz", "/ping")
                and response.status_code == 503
                and response.json().get("status") == "unavailable")


def map_case(context: HookContext, case: Case) -> Case:
    """X-Request-Timeout at most FUZZ_TIMEOUT_S; a value the server must refuse is kept."""
    headers = dict(case.headers or {})
    value = headers.get("X-Request-Timeout")
    try:
        asked = math.inf if value is None else float(value)
    except ValueError:
        return case
    if not math.isnan(asked) and asked > 0:
        headers["X-Request-Timeout"] = repr(min(asked, FUZZ_TIMEOUT_S))
        case.headers = headers
    return case


@pytest.mark.parametrize(("path", "body"), [
    ("/detokenize", {"tokens": [SMOLLM2_VOCAB]}),
    ("/v1/completions", {"prompt": [SMOLLM2_VOCAB], "echo": True, "max_tokens": 1}),
    ("/v1/completions", {"prompt": [[5, SMOLLM2_VOCAB]], "max_tokens": 1}),
])
def test_out_of_vocabulary_ids(server: RunningServer, path: str, body: dict[str, Any]) -> None:
    reply = httpx.post(server.base_url + path, timeout=30,
                       json={"model": "smollm2-135m-instruct", **body})
    assert reply.status_code == 400, reply.text
