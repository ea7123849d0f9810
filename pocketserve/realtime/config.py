"""A session's settings: what `session.update` may change and how `session.created` shows it.

Updates use the GA shape (`{"type": "realtime", "audio": {"input": ..., "output": ...}}`); the
beta shape (flat `modalities`, `voice`, `turn_detection`, `input_audio_format`, ...) is mapped
onto it. Only what is present changes; `turn_detection: null` turns server VAD off. Decisions:
`semantic_vad` is served as `server_vad` with its defaults (no turn model here); the only input
and output format is 24 kHz PCM16; function tools need a chat model that can call them.

A session is of one type for its life: `realtime` (a conversation) or `transcription` (audio
in, transcripts out, no responses); an update naming the other type is refused. The
transcription model a client names is looked up through `resolve_transcription`, which the
route gives (served models, and OpenAI's transcription names mapped to the default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pocketserve.ops.chat import Tool, ToolChoice
from pocketserve.ops.transcription import TurnDetection
from pocketserve.realtime.errors import ClientError
from pocketserve.realtime.errors import field as get
from pocketserve.realtime.tools import parse_choice, parse_tools, wire_choice, wire_tools
from pocketserve.voice.reply import DEFAULT_INSTRUCTIONS

PCM = {"type": "audio/pcm", "rate": 24_000}
MAX_OUTPUT_TOKENS = 4096


@dataclass
class Vad:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def to_engine(self) -> TurnDetection:
        return TurnDetection(threshold=self.threshold, prefix_padding_ms=self.prefix_padding_ms,
                             silence_duration_ms=self.silence_duration_ms)

    def wire(self) -> dict[str, Any]:
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response, "idle_timeout_ms": None}


@dataclass
class SessionConfig:
    id: str
    model: str  # the chat model, as served
    transcription_model: str
    speech_model: str
    instructions: str = DEFAULT_INSTRUCTIONS
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    max_output_tokens: int | None = None  # None: "inf", i.e. up to `token_cap`
    token_cap: int = 1024  # the server's realtime_max_output_tokens
    temperature: float | None = None  # the server's realtime_temperature
    turn_detection: Vad | None = field(default_factory=Vad)
    language: str | None = None
    prompt: str | None = None
    voice: str = "alloy"
    speed: float = 1.0
    type: str = "realtime"  # or "transcription"
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    takes_tools: bool = True  # whether the chat model can call functions
    resolve_transcription: Callable[[str], str] | None = None  # a name -> the served id

    def wire(self) -> dict[str, Any]:
        """The session object of `session.created` / `session.updated`."""
        audio_input = {
            "format": dict(PCM), "noise_reduction": None,
            "transcription": {"model": self.transcription_model, "language": self.language,
                              "prompt": self.prompt},
            "turn_detection": None if self.turn_detection is None
            else self.turn_detection.wire()}
        if self.type == "transcription":
            return {"type": "transcription", "object": "realtime.transcription_session",
                    "id": self.id, "expires_at": 0, "include": None,
                    "audio": {"input": audio_input}}
        return {
            "type": "realtime", "object": "realtime.session", "id": self.id,
            "model": self.model, "output_modalities": list(self.output_modalities),
            "instructions": self.instructions, "tools": wire_tools(self.tools),
            "tool_choice": wire_choice(self.tool_choice),
            "max_output_tokens": "inf" if self.max_output_tokens is None
            else self.max_output_tokens,
            "tracing": None, "truncation": "auto", "prompt": None, "expires_at": 0,
            "include": None,
            "audio": {
                "input": audio_input,
                "output": {"format": dict(PCM), "voice": self.voice, "speed": self.speed},
            },
        }

    def update(self, session: Any) -> None:
        """Apply `session.update`'s `session`; a bad field raises before anything changes."""
        if not isinstance(session, dict):
            raise ClientError("'session' must be an object.", param="session")
        kind = session.get("type")
        if kind not in (None, "realtime", "transcription"):
            raise ClientError(f"Invalid value for 'session.type': {kind!r}.",
                              param="session.type")
        if kind is not None and kind != self.type:
            raise ClientError(f"This is a {self.type} session; its type cannot change to "
                              f"{kind!r}. Open a new session (intent=transcription in the "
                              "URL for a transcription session).", param="session.type")
        new = _copy(self)
        shaped = session if kind is not None else _from_beta(session)
        if self.type == "transcription":
            _transcription_only(shaped)
        _apply(new, shaped)
        self.__dict__.update(new.__dict__)


def _copy(config: SessionConfig) -> SessionConfig:
    vad = None if config.turn_detection is None else Vad(**config.turn_detection.__dict__)
    return SessionConfig(**{**config.__dict__, "output_modalities":
                            list(config.output_modalities), "turn_detection": vad,
                            "tools": list(config.tools)})


def _transcription_only(s: dict[str, Any]) -> None:
    """A transcription session has input audio only: a field for answers is refused."""
    for name in ("instructions", "output_modalities", "max_output_tokens", "tools",
                 "tool_choice"):
        if name in s:
            raise ClientError(f"'session.{name}' is not available in a transcription session.",
                              code="unknown_parameter", param=f"session.{name}")
    audio = s.get("audio")
    if isinstance(audio, dict) and audio.get("output"):
        raise ClientError("'session.audio.output' is not available in a transcription "
                          "session.", code="unknown_parameter", param="session.audio.output")


def _apply(c: SessionConfig, s: dict[str, Any]) -> None:
    if (text := get(s, "instructions", str, "session")) is not None:
        c.instructions = text
    if (modalities := get(s, "output_modalities", list, "session")) is not None:
        if modalities not in (["audio"], ["text"]):
            raise ClientError("'session.output_modalities' must be [\"audio\"] or [\"text\"].",
                              param="session.output_modalities")
        c.output_modalities = list(modalities)
    if "max_output_tokens" in s:
        c.max_output_tokens = max_tokens(s["max_output_tokens"], "session.max_output_tokens")
    if (tools := get(s, "tools", list, "session")) is not None:
        if tools and not c.takes_tools:
            raise ClientError(f"The chat model {c.model!r} cannot call functions; serve one "
                              "that can (a llama.cpp model with a tool-call template).",
                              code="unsupported_parameter", param="session.tools")
        c.tools = parse_tools(tools, "session.tools")
    if "tool_choice" in s:
        c.tool_choice = parse_choice(s["tool_choice"], "session.tool_choice")
    audio = get(s, "audio", dict, "session") or {}
    _input(c, get(audio, "input", dict, "session.audio") or {})
    output = get(audio, "output", dict, "session.audio") or {}
    _format(get(output, "format", dict, "session.audio.output"), "session.audio.output.format")
    voice = get(output, "voice", (str, dict), "session.audio.output")
    if voice is not None:
        c.voice = voice if isinstance(voice, str) else str(
            get(voice, "id", str, "session.audio.output.voice", required=True))
    if (speed := get(output, "speed", (int, float), "session.audio.output")) is not None:
        if not 0.25 <= speed <= 1.5:
            raise ClientError("'session.audio.output.speed' must be between 0.25 and 1.5.",
                              param="session.audio.output.speed")
        c.speed = float(speed)


def _input(c: SessionConfig, i: dict[str, Any]) -> None:
    where = "session.audio.input"
    _format(get(i, "format", dict, where), f"{where}.format")
    transcription = get(i, "transcription", dict, where)
    if transcription is not None:
        c.language = get(transcription, "language", str, f"{where}.transcription")
        c.prompt = get(transcription, "prompt", str, f"{where}.transcription")
        model = get(transcription, "model", str, f"{where}.transcription")
        if model is not None:
            resolve = c.resolve_transcription
            c.transcription_model = resolve(model) if resolve is not None else model
    if "turn_detection" in i:
        c.turn_detection = _vad(i["turn_detection"], c.turn_detection, f"{where}.turn_detection")


def _vad(value: Any, current: Vad | None, where: str) -> Vad | None:
    if value is None:
        return None
    kind = get(value, "type", str, where)
    if kind not in ("server_vad", "semantic_vad", None):
        raise ClientError(f"Invalid value for '{where}.type': {kind!r}; use 'server_vad'.",
                          param=f"{where}.type")
    vad = Vad() if current is None or kind == "semantic_vad" else Vad(**current.__dict__)
    if (threshold := get(value, "threshold", (int, float), where)) is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ClientError(f"'{where}.threshold' must be between 0 and 1.",
                              param=f"{where}.threshold")
        vad.threshold = float(threshold)
    for name in ("prefix_padding_ms", "silence_duration_ms"):
        if (ms := get(value, name, int, where)) is not None:
            if not 0 <= ms <= 10_000:
                raise ClientError(f"'{where}.{name}' must be between 0 and 10000.",
                                  param=f"{where}.{name}")
            setattr(vad, name, ms)
    for name in ("create_response", "interrupt_response"):
        if (flag := get(value, name, bool, where)) is not None:
            setattr(vad, name, flag)
    return vad


def _format(value: dict[str, Any] | None, where: str) -> None:
    if value is None:
        return
    if value.get("type", "audio/pcm") != "audio/pcm" or value.get("rate", 24_000) != 24_000:
        raise ClientError(f"Unsupported audio format {value!r}: this server takes and sends "
                          "24 kHz PCM16 ({'type': 'audio/pcm', 'rate': 24000}).",
                          code="unsupported_audio_format", param=where)


def max_tokens(value: Any, where: str) -> int | None:
    if value == "inf" or value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not (
            1 <= value <= MAX_OUTPUT_TOKENS):
        raise ClientError(f"'{where}' must be an integer from 1 to {MAX_OUTPUT_TOKENS}, or "
                          "'inf'.", param=where)
    return value


_BETA_FORMATS = {"pcm16": PCM}


def _from_beta(s: dict[str, Any]) -> dict[str, Any]:
    """The beta's flat session fields in the GA's nested shape."""
    out: dict[str, Any] = {k: s[k] for k in ("instructions", "tools", "tool_choice") if k in s}
    if "modalities" in s:
        modalities = s["modalities"]
        out["output_modalities"] = (["audio"] if isinstance(modalities, list)
                                    and "audio" in modalities else modalities)
    if "max_response_output_tokens" in s:
        out["max_output_tokens"] = s["max_response_output_tokens"]
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    if "input_audio_format" in s:
        audio_in["format"] = _BETA_FORMATS.get(s["input_audio_format"],
                                               {"type": str(s["input_audio_format"])})
    if "output_audio_format" in s:
        audio_out["format"] = _BETA_FORMATS.get(s["output_audio_format"],
                                                {"type": str(s["output_audio_format"])})
    if "turn_detection" in s:
        audio_in["turn_detection"] = s["turn_detection"]
    if isinstance(s.get("input_audio_transcription"), dict):
        audio_in["transcription"] = s["input_audio_transcription"]
    for name in ("voice", "speed"):
        if name in s:
            audio_out[name] = s[name]
    out["audio"] = {"input": audio_in, "output": audio_out}
    return out
