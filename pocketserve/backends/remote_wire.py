"""The engine's requests as OpenAI API bodies, and OpenAI's answers as the engine's events.

Pure translation for the `remote` backend: no network here, so every rule is tested alone.
Sampling fields OpenAI does not define (`top_k`, `min_p`, `repetition_penalty`) are sent only
when set; llama-server, vLLM and pocketserve take them, and a server that does not answers 400
naming them, which reaches the client as it is.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from pocketserve.errors import (
    ContextLengthExceeded,
    EngineFailure,
    InvalidRequest,
    PocketserveError,
    RetryLater,
)
from pocketserve.ops.chat import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ImagePart,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
)
from pocketserve.ops.common import Usage
from pocketserve.ops.transcription import Segment, TranscriptInfo, TranscriptionRequest, Word

_EXTRA_SAMPLING = ("top_k", "min_p", "repetition_penalty")


def chat_body(req: ChatRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in req.messages],
                            **_sampling(req.sampling), "stream": True,
                            "stream_options": {"include_usage": True}}
    if req.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters,
            **({"strict": True} if t.strict else {})}} for t in req.tools]
        body["tool_choice"] = (req.tool_choice if req.tool_choice in ("auto", "none", "required")
                               else {"type": "function", "function": {"name": req.tool_choice}})
        body["parallel_tool_calls"] = req.parallel_tool_calls
    return body


def completion_body(req: CompletionRequest, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": req.prompt, **_sampling(req.sampling),
                            "stream": True, "stream_options": {"include_usage": True}}
    if req.echo:
        body["echo"] = True
    if req.suffix is not None:
        body["suffix"] = req.suffix
    return body


def _message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if isinstance(m.content, str):
        out["content"] = m.content
    else:
        out["content"] = [
            {"type": "image_url", "image_url": {
                "url": f"data:{p.media_type};base64,{base64.b64encode(p.data).decode()}",
                "detail": p.detail}} if isinstance(p, ImagePart)
            else {"type": "text", "text": p.text} for p in m.content]
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _sampling(s: SamplingParams) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("max_tokens", "temperature", "top_p", "presence_penalty",
                 "frequency_penalty", "seed", *_EXTRA_SAMPLING):
        value = getattr(s, name)
        if value is not None:
            out[name] = value
    if s.stop:
        out["stop"] = list(s.stop)
    if s.n != 1:
        out["n"] = s.n
    if s.logprobs:
        out["logprobs"] = True
        if s.top_logprobs:
            out["top_logprobs"] = s.top_logprobs
    if s.json_schema is not None:
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "response", "schema": s.json_schema, "strict": True}}
    elif s.json_object:
        out["response_format"] = {"type": "json_object"}
    return out


def sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON of each `data:` line of a server-sent event stream, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if isinstance(chunk, dict) and "error" in chunk:  # an error after the headers
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            client_fault = error.get("param") or error.get("type") == "invalid_request_error"
            raise error_from(400 if client_fault else 500, chunk)
        yield chunk


def chat_events(chunk: dict[str, Any], completion: bool = False) -> list[Any]:
    """The engine's events for one streamed chunk of chat (or, `completion`, completions)."""
    events: list[Any] = []
    for choice in chunk.get("choices") or ():
        index = int(choice.get("index", 0))
        finish = choice.get("finish_reason")
        delta = choice if completion else (choice.get("delta") or {})
        if reasoning := delta.get("reasoning_content"):
            events.append(ReasoningDelta(index, reasoning))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            events.append(ToolCallDelta(index, int(call.get("index", 0)),
                                        arguments=function.get("arguments") or "",
                                        id=call.get("id"), name=function.get("name")))
        text = delta.get("text" if completion else "content") or ""
        if text or finish is not None:
            events.append(TextDelta(index, text, _logprobs(choice.get("logprobs"), completion),
                                    finish))
    if usage := chunk.get("usage"):
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        events.append(Usage(int(usage.get("prompt_tokens") or 0),
                            int(usage.get("completion_tokens") or 0), int(cached)))
    return events


def _logprobs(data: Any, completion: bool) -> list[TokenLogprob] | None:
    if not data:
        return None
    if completion:  # the legacy shape: parallel lists
        tops = data.get("top_logprobs") or [{}] * len(data.get("tokens") or ())
        return [TokenLogprob(t, float(lp), list(t.encode()),
                             [TopLogprob(k, float(v), list(k.encode())) for k, v in top.items()])
                for t, lp, top in zip(data.get("tokens") or (), data.get("token_logprobs") or (),
                                      tops, strict=False)]
    return [TokenLogprob(c["token"], float(c["logprob"]), c.get("bytes"),
                         [TopLogprob(t["token"], float(t["logprob"]), t.get("bytes"))
                          for t in c.get("top_logprobs") or ()])
            for c in data.get("content") or ()]


def embeddings_body(texts: list[str] | None, token_ids: list[list[int]] | None,
                    dimensions: int | None, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": texts if texts is not None else token_ids,
                            "encoding_format": "base64"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def embedding_bytes(item: dict[str, Any]) -> bytes:
    """One embedding as float32 bytes, from base64 (asked for) or a float list."""
    data = item["embedding"]
    if isinstance(data, str):
        return base64.b64decode(data)
    import numpy as np

    return np.asarray(data, dtype="<f4").tobytes()


def transcription_form(req: TranscriptionRequest, model: str) -> dict[str, Any]:
    form: dict[str, Any] = {"model": model, "response_format": "verbose_json",
                            "temperature": str(req.temperature),
                            "timestamp_granularities[]": ["segment", *(
                                ["word"] if req.word_timestamps else [])]}
    if req.language is not None and req.task == "transcribe":
        form["language"] = req.language
    if req.prompt is not None:
        form["prompt"] = req.prompt
    if req.vad is not None:
        vad = {k: v for k, v in {"threshold": req.vad.threshold,
                                 "silence_duration_ms": req.vad.min_silence_ms,
                                 "prefix_padding_ms": req.vad.speech_pad_ms}.items()
               if v is not None}
        form["chunking_strategy"] = json.dumps({"type": "server_vad", **vad}) if vad else "auto"
    return form


def transcript_events(answer: dict[str, Any]) -> list[Any]:
    """verbose_json (segments) as the engine's events; a plain `text` answer (servers without
    verbose_json) as one segment over the whole audio."""
    duration = float(answer.get("duration") or 0.0)
    events: list[Any] = [TranscriptInfo(language=str(answer.get("language") or ""),
                                        duration=duration)]
    words = [Word(word=w["word"], start=float(w["start"]), end=float(w["end"]),
                  probability=float(w.get("probability", 1.0)))
             for w in answer.get("words") or ()]
    segments = answer.get("segments")
    if not segments:
        segments = [{"id": 0, "start": 0.0, "end": duration, "text": answer.get("text", "")}]
    starts = [float(s.get("start", 0.0)) for s in segments]
    for i, s in enumerate(segments):
        start, end = starts[i], float(s.get("end", duration))
        until = starts[i + 1] if i + 1 < len(starts) else float("inf")
        inside = [w for w in words if (start <= w.start or i == 0) and w.start < until]
        events.append(Segment(
            id=int(s.get("id", i)), seek=int(s.get("seek", 0)), start=start, end=end,
            text=str(s.get("text", "")), tokens=list(s.get("tokens") or ()),
            temperature=float(s.get("temperature") or 0.0),
            avg_logprob=float(s.get("avg_logprob") or 0.0),
            compression_ratio=float(s.get("compression_ratio") or 0.0),
            no_speech_prob=float(s.get("no_speech_prob") or 0.0),
            words=inside if words else None))
    return events


def error_from(status: int, body: Any) -> PocketserveError:
    """The remote server's answer as our error: its 400s reach the client as they were (the
    parameter named), anything else says the remote failed."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        param, code = error.get("param"), error.get("code")
    else:
        message, param, code = str(error or body)[:500], None, None
    code = code if isinstance(code, str) else None
    if code == "context_length_exceeded":
        return ContextLengthExceeded(message, param or "messages", code)
    if status in (400, 422):
        return InvalidRequest(message, param=param, code=code)
    if status == 429:
        return RetryLater(f"The remote server is busy: {message}", code=code)
    return EngineFailure(f"The remote server answered {status}: {message}", code=code)
