"""The documented examples, sent to a real server: the test that keeps them true, and the tool
that records them.

Every request example in /openapi.json (request-model `examples`, the audio forms' `examples`,
parameter `examples`) is sent as it is documented. `python -m tests.e2e.openapi_examples`
starts a server with the default models and rewrites pocketserve/api/openapi_examples.json
from what it answers; the test compares the live answers' shapes with that file.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pocketserve.config import Settings
from tests.conftest import RunningServer, start_server
from tests.stt_helpers import espeak

EXAMPLES_FILE = Path(__file__).parents[2] / "pocketserve" / "api" / "openapi_examples.json"

# No vision model ships in a package, so the server the examples run on serves, beside the
# default models, the fake engine that sees (backends/fake.py): /v1/images/describe needs one.
VISION_FAKE = {"id": "fake-vision", "capability": "chat", "backend": "fake", "source": "none:",
               "description": "A test double that sees: it answers with what it received of "
               "each image (type, size, bytes, SHA-256).", "options": {"vision": True}}


def start_example_server() -> RunningServer:
    """The models a plain `pocketserve serve` serves, and VISION_FAKE."""
    models = [*Settings().models, str(VISION_FAKE["id"])]
    return start_server(models, env={"POCKETSERVE_EXTRA_MODELS": json.dumps([VISION_FAKE])})

# The audio the form examples name: what is said in it, and espeak-ng's voice for it.
SPOKEN = {"fox.wav": ("The quick brown fox jumps over the lazy dog.", "en-us"),
          "buenos_dias.wav": ("Buenos días. ¿Cómo estás hoy?", "es")}
_SHORT_AUDIO = 64  # base64 characters of audio kept in a recorded speech stream


@dataclass
class Example:
    method: str
    template: str  # the documented path, e.g. /v1/models/{model_id}
    path: str
    json: dict[str, Any] | None = None
    form: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.method.upper()} {self.template}"


def requests_of(document: dict[str, Any]) -> list[Example]:
    """One request per documented example; one plain request for an operation without any."""
    found: list[Example] = []
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            found += _operation_examples(method, path, operation, schemas)
    return found


def _operation_examples(method: str, path: str, operation: dict[str, Any],
                        schemas: dict[str, Any]) -> list[Example]:
    url, params = path, {}
    for param in operation.get("parameters", []):
        named = param.get("examples")
        if not named:
            continue
        value = str(next(iter(named.values()))["value"])
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", value)
        else:
            params[param["name"]] = value
    content = operation.get("requestBody", {}).get("content", {})
    bodies = []
    for media_type, body in content.items():
        ref = body["schema"]["$ref"].rsplit("/", 1)[1]
        kind = "json" if media_type == "application/json" else "form"
        bodies += [(kind, example) for example in schemas[ref].get("examples", [])]
    if content and not bodies:
        raise AssertionError(f"{method.upper()} {path} documents no request example")
    if not bodies:
        return [Example(method, path, url, params=params)]
    return [Example(method, path, url, params=params, **{kind: example})
            for kind, example in bodies]


# Routes that read a stored response (or dialogue session) name the one the last example of
# its POST made (their paths come after it in the document; DELETE comes last): path
# parameter -> (the example that made it, the answer's key that holds it).
EARLIER = {"response_id": ("POST /v1/responses", "id"),
           "session_id": ("POST /v1/dialogue", "session_id")}


def send(base_url: str, example: Example, audio_dir: Path,
         earlier: dict[str, str] | None = None) -> httpx.Response:
    """The example's request; `{name}` left in its path is filled from `earlier` (what
    `remember` kept of earlier answers)."""
    path = example.path
    for name, value in (earlier or {}).items():
        path = path.replace("{" + name + "}", value)
    files = None
    data: dict[str, Any] | None = None
    if example.form is not None:
        data = {k: v for k, v in example.form.items() if k != "file"}
        data = {k: json.dumps(v) if isinstance(v, bool) else v for k, v in data.items()}
        name = example.form["file"]
        files = {"file": (name, _audio(name, audio_dir).read_bytes(), "audio/wav")}
    return httpx.request(example.method, base_url + path, json=example.json,
                         data=data, files=files, params=example.params, timeout=60)


def remember(example: Example, reply: httpx.Response, earlier: dict[str, str]) -> None:
    """Keep the id of a JSON answer that later examples' paths name (see EARLIER)."""
    for name, (key, field_name) in EARLIER.items():
        if example.key == key and media_type(reply) == "application/json":
            earlier[name] = reply.json()[field_name]


def _audio(name: str, audio_dir: Path) -> Path:
    path = audio_dir / name
    if not path.exists():
        text, voice = SPOKEN[name]
        espeak(text, path, voice=voice, speed=150)
    return path


def media_type(reply: httpx.Response) -> str:
    return reply.headers.get("content-type", "").split(";")[0].strip()


def recorded(reply: httpx.Response) -> Any:
    """The answer as the examples file keeps it (JSON parsed, text as is, audio shortened)."""
    kind = media_type(reply)
    if kind == "application/json":
        return _short_audio(reply.json())
    if kind == "text/event-stream":
        return re.sub(f'("audio":")([A-Za-z0-9+/=]{{{_SHORT_AUDIO}}})[A-Za-z0-9+/=]*"',
                      r'\1\2"', reply.text)
    if kind == "text/plain" and reply.text.startswith("# HELP"):
        return _metrics_excerpt(reply.text)
    return reply.text


def _short_audio(value: Any) -> Any:
    """JSON with base64 `audio` (dialogue, text-to-speech) cut as streams' audio is."""
    if isinstance(value, dict):
        return {k: v[:_SHORT_AUDIO] if k == "audio" and isinstance(v, str) else _short_audio(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_short_audio(v) for v in value]
    return value


def _metrics_excerpt(text: str) -> str:
    """The request counter's family: the whole exposition is hundreds of lines."""
    keep = [line for line in text.splitlines()
            if line.startswith(("# HELP pocketserve_requests_total",
                                "# TYPE pocketserve_requests_total",
                                "pocketserve_requests_total{"))]
    return "\n".join(keep[:6]) + "\n"


def shape(value: Any) -> Any:
    """What must stay the same between a documented answer and a live one: keys and types."""
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, shape(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", frozenset(shape(v) for v in value))
    if isinstance(value, bool) or value is None:
        return repr(type(value).__name__)
    return "number" if isinstance(value, int | float) else "string"


def events(text: str) -> list[Any]:
    """The data of each server-sent event, JSON parsed ([DONE] kept as text)."""
    found = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def text_shape(text: str) -> list[str]:
    """Subtitles and plain transcripts: the kind of each line (index, timing, text, blank)."""
    kinds = []
    for line in text.splitlines():
        if not line.strip():
            kinds.append("blank")
        elif line.strip().isdigit():
            kinds.append("index")
        elif "-->" in line:
            kinds.append("timing")
        else:
            kinds.append("text")
    return kinds


def record(base_url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Send every example and keep each answer, named after its request's position."""
    document = httpx.get(base_url + "/openapi.json").json()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    earlier: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for example in requests_of(document):
            reply = send(base_url, example, Path(tmp), earlier)
            reply.raise_for_status()
            remember(example, reply, earlier)
            kind = media_type(reply)
            if kind.startswith("audio/"):
                continue  # binary audio: the document gives its media type only
            by_kind = out.setdefault(example.key, {}).setdefault(kind, {})
            name = summary = _summary(example)
            while name in by_kind:
                name += "+"
            by_kind[name] = {"summary": summary, "value": recorded(reply)}
    return out


def _summary(example: Example) -> str:
    body = example.json or example.form or {}
    if body.get("stream") or body.get("stream_format") == "sse":
        audio = any(name in example.path for name in ("speech", "dialogue"))
        return "streamed" + (" (audio shortened)" if audio else "")
    for key in ("response_format", "encoding_format"):
        if key in body:
            return f"{key}={body[key]}"
    return "from messages" if "messages" in body and "tokenize" in example.path else "answer"


def main() -> None:
    from tests.conftest import stop_server

    server = start_example_server()
    try:
        EXAMPLES_FILE.write_text(json.dumps(record(server.base_url), indent=1,
                                            ensure_ascii=False) + "\n")
    finally:
        stop_server(server)
    print(f"wrote {EXAMPLES_FILE}")


if __name__ == "__main__":
    main()
