"""The shapes of the JSON answers, for /openapi.json only.

Routes build their answers as plain dicts (fast, and shaped next to the code that fills them);
these models describe those dicts so the document says what comes back, and the schema fuzzer
(tests/e2e/test_openapi_fuzz.py) checks every answer against them. `extra="forbid"` makes an
undocumented key a failure there, so a new key must be added here too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    message: str = Field(description="What went wrong, for a person.")
    type: str = Field(description="invalid_request_error, rate_limit_exceeded, timeout_error, "
                      "service_unavailable, not_found_error, server_error, ...")
    param: str | None = Field(description="The request parameter at fault, when one is.")
    code: str | None = Field(description="A stable machine-readable code, when there is one.")


class ErrorResponse(Answer):
    """OpenAI's error envelope: every failure the server answers has this body."""

    error: ErrorDetail


# -- chat and completions -------------------------------------------------------------------


class PromptTokensDetails(Answer):
    cached_tokens: int


class Usage(Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class TopLogprob(Answer):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(Answer):
    content: list[TokenLogprob]
    refusal: None


FinishReason = Literal["stop", "length"]


class AssistantMessage(Answer):
    role: Literal["assistant"]
    content: str
    refusal: None


class ChatChoice(Answer):
    index: int
    finish_reason: FinishReason | None
    message: AssistantMessage
    logprobs: ChatLogprobs | None


class _Envelope(Answer):
    id: str
    created: int
    model: str
    system_fingerprint: str


class ChatCompletion(_Envelope):
    object: Literal["chat.completion"]
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(Answer):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(Answer):
    index: int
    finish_reason: FinishReason | None
    delta: ChunkDelta
    logprobs: ChatLogprobs | None


class ChatCompletionChunk(_Envelope):
    """One `data:` event of a chat stream; the stream ends with `data: [DONE]`."""

    object: Literal["chat.completion.chunk"]
    choices: list[ChunkChoice]
    usage: Usage | None = Field(default=None, description="Present (null, then filled on the "
                                "last chunk) only with stream_options.include_usage.")


class CompletionLogprobs(Answer):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(Answer):
    index: int
    finish_reason: FinishReason | None
    text: str
    logprobs: CompletionLogprobs | None


class Completion(_Envelope):
    """The whole answer, and also each `data:` event of a stream (then `usage` only on the
    last one, with stream_options.include_usage)."""

    object: Literal["text_completion"]
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Tokenized(Answer):
    count: int
    max_model_len: int
    tokens: list[int]


class Detokenized(Answer):
    prompt: str


# -- embeddings and rerank ------------------------------------------------------------------


class Embedding(Answer):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian "
                                         "float32 with encoding_format=base64.")


class EmbeddingUsage(Answer):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Answer):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class RerankDocument(Answer):
    text: str


class RerankResult(Answer):
    index: int
    relevance_score: float
    document: RerankDocument | None = Field(default=None,
                                            description="Only with return_documents.")


class RerankResponse(Answer):
    id: str
    model: str
    results: list[RerankResult]
    usage: EmbeddingUsage


# -- models, health, admin ------------------------------------------------------------------

ModelState = Literal["loading", "ready", "failed", "unloaded", "restarting"]


class ModelObject(Answer):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    capability: str
    backend: str
    aliases: list[str]
    state: ModelState
    error: str | None
    restarts: int
    context_length: int | None
    dimensions: int | None = None
    scoring: str | None = None
    weights_file: str | None = None
    input_modalities: list[Literal["text", "image", "audio"]] = Field(
        description="What the model reads: `image` when requests may carry images.")
    tools: bool | None = Field(default=None, description="Chat models: whether requests with "
                               "`tools` (function calling) are taken.")
    vision: bool | None = Field(default=None, description="Chat models: whether requests "
                                "with images are taken (as `image` in input_modalities).")


class ModelList(Answer):
    object: Literal["list"]
    data: list[ModelObject]


class Health(Answer):
    status: Literal["ok", "unavailable"]
    models: dict[str, ModelState]
    not_ready: list[str]


class CpuStatus(Answer):
    threads: int
    priority: Literal["interactive", "normal", "bulk"]
    weight: int = Field(description="Its slice's length relative to the others' when shared.")
    gang: bool = Field(description="Its threads run in slices of their own (llama.cpp).")
    wait_s: float = Field(description="Seconds it was held paused while it had work.")
    paused: bool


class ModelStatus(Answer):
    id: str
    capability: str
    backend: str
    aliases: list[str]
    state: ModelState
    info: dict[str, Any] = Field(description="What the worker reports (differs by backend).")
    error: str | None
    pid: int | None
    restarts: int
    memory_bytes: int
    memory_mb: float
    pinned: bool
    in_flight: int
    queued: int
    idle_s: float
    active_sequences: int
    generated_events: int
    cpu: CpuStatus | None = Field(description="Its part of the CPU plan.")


class ModelStatusList(Answer):
    object: Literal["list"]
    data: list[ModelStatus]


# -- audio ----------------------------------------------------------------------------------


class Voice(Answer):
    object: Literal["audio.voice"]
    id: str
    name: str
    model: str
    language: str
    backend_voice: str


class VoiceName(Answer):
    id: str
    name: str


class VoiceList(Answer):
    object: Literal["list"]
    data: list[Voice]
    voices: list[VoiceName] = Field(description="Each voice id once, as Open WebUI reads them.")


class SpeechModelId(Answer):
    id: str


class SpeechModelEntry(Answer):
    id: str
    object: Literal["model"]


class SpeechModelList(Answer):
    object: Literal["list"]
    data: list[SpeechModelEntry]
    models: list[SpeechModelId] = Field(description="The same ids, as Open WebUI reads them.")


class SpeechUsage(Answer):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDelta(Answer):
    type: Literal["speech.audio.delta"]
    audio: str = Field(description="Base64 of the next piece of audio.")


class SpeechAudioDone(Answer):
    type: Literal["speech.audio.done"]
    usage: SpeechUsage


class DurationUsage(Answer):
    type: Literal["duration"]
    seconds: int


class Transcription(Answer):
    """response_format=json. A translation has no `usage`."""

    text: str
    usage: DurationUsage | None = None


class TranscriptSegment(Answer):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class TranscriptWord(Answer):
    word: str
    start: float
    end: float


class VerboseTranscription(Answer):
    """response_format=verbose_json: `segments` and `words` as timestamp_granularities asks."""

    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptSegment] | None = None
    words: list[TranscriptWord] | None = None
    usage: DurationUsage | None = None


class TranscriptTextDelta(Answer):
    type: Literal["transcript.text.delta"]
    delta: str


class TranscriptTextDone(Answer):
    type: Literal["transcript.text.done"]
    text: str


class SpeechStreamError(Answer):
    """The last event of a speech stream that failed after it started."""

    type: Literal["error"]
    error: ErrorDetail
