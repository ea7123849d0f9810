"""The one settings object, and the description of a model.

Precedence, highest first: explicit overrides (CLI flags), environment (`POCKETSERVE_*`, nested
with `__`), the YAML config file, then the defaults written here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Capability = Literal["chat", "embeddings", "rerank", "transcription", "speech"]
Priority = Literal["interactive", "normal", "bulk"]


class ModelSpec(BaseModel):
    """One servable model: what it does, which backend runs it and where its weights are."""

    id: str = Field(description="The name clients put in `model`.")
    aliases: list[str] = Field(default_factory=list, description="Other names that reach it.")
    capability: Capability = Field(description="Which API family it serves.")
    backend: str = Field(description="A module under pocketserve.backends (e.g. llamacpp), or "
                         "the name of an entry point in the `pocketserve.backends` group "
                         "(a backend of one's own: docs/plugins.md).")
    source: str = Field(
        description="Where the weights are: `package:<module>/<file>` for an installed model "
        "package, a local file or folder path, `program:<name>` for a program on PATH, "
        "`none:` for a backend that needs no files, or `hf:<repo>` (only where a network "
        "exists)."
    )
    description: str = ""
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend options, e.g. n_ctx, threads, n_parallel for llama.cpp.",
    )
    default_sampling: dict[str, Any] = Field(
        default_factory=dict, description="Sampling defaults used when a request leaves them out."
    )


class ModelPolicy(BaseModel):
    """How the server treats one model over time; any field left out takes the server default."""

    preload: bool | None = Field(
        default=None, description="Load at start-up (true) or on first use (false).")
    pin: bool = Field(
        default=False, description="Never unload it for idleness or to make room for another.")
    ttl_s: float | None = Field(
        default=None, gt=0,
        description="Unload after this many idle seconds; overrides idle_ttl_s.")
    memory_mb: float | None = Field(
        default=None, gt=0, description="Expected memory when loaded, used by the budget before "
        "the model has ever been loaded; default: 1.5 x the size of its weights.")
    max_in_flight: int | None = Field(
        default=None, ge=1, description="Requests run at once; overrides max_in_flight.")
    max_queue: int | None = Field(
        default=None, ge=0, description="Requests waiting in line; overrides max_queue.")
    priority: Priority | None = Field(
        default=None, description="Who goes first when several models are busy on the CPU: "
        "interactive slices are 4x the length of bulk ones, normal 2x. Default by "
        "capability: chat and speech interactive, transcription and rerank normal, "
        "embeddings bulk.")


class Settings(BaseSettings):
    """Everything a deployment can change. One instance is built per app, never at import."""

    model_config = SettingsConfigDict(
        env_prefix="POCKETSERVE_", env_nested_delimiter="__", extra="ignore"
    )

    config_file: Path | None = Field(
        default=None, description="Optional YAML file with any of these settings."
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_json: bool = Field(default=False, description="Log one JSON object per line.")
    models: list[str] = Field(
        default_factory=lambda: ["smollm2-135m-instruct", "whisper-base", "piper-joe-medium",
                                 "all-minilm-l6-v2", "minilm-cosine-reranker"],
        description="Models to serve: catalog ids or paths to local model files/folders.",
    )
    extra_models: list[ModelSpec] = Field(
        default_factory=list, description="Catalog entries added to the built-in ones."
    )
    embeddings_truncate: bool = Field(
        default=False, description="Cut embedding inputs longer than the model's limit instead "
        "of answering 400 (OpenAI answers 400, so clients expect it).")
    rerank_truncate: bool = Field(
        default=True, description="Cut rerank documents that do not fit the model beside the "
        "query instead of answering 400 (Cohere and Jina truncate too).")
    reasoning_content: bool = Field(
        default=True, description="Put a model's thinking (`<think>` blocks) in "
        "`reasoning_content` instead of the answer's content; false leaves it in the content "
        "as the model wrote it.")
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads per model worker (a model's own "
        "`threads` option wins); default: every core this process may run on (cut to a "
        "cgroup CPU quota where one is set)."
    )
    cpu_slicing: bool = Field(
        default=True, description="When several models are busy at once, take turns on the "
        "CPU in short slices (pausing the others' workers), sized by priority; a model alone "
        "is never paused. Linux only. False: all workers run at once and the kernel shares "
        "the cores (then a chat stream keeps about 0.1 of its speed beside three other busy "
        "models on 2 cores, against about 0.5 with slicing: bench/mixed_load.py).")
    cpu_slice_period_ms: float = Field(
        default=40.0, ge=5, le=1000, description="Length of one round of slices when models "
        "take turns: shorter evens out streams, longer costs fewer switches.")
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "pocketserve",
        description="Where derived files are kept, e.g. GGUF weights re-encoded for batching.")
    data_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_DATA_HOME")
                                     or Path.home() / ".local" / "share") / "pocketserve",
        description="Where the server keeps what must outlive a restart: stored responses "
        "(responses.sqlite3). Created on first use.")
    responses_max_stored: int | None = Field(
        default=10_000, ge=1, description="Stored responses kept at most; past it the oldest "
        "are deleted. None: no limit by count.")
    responses_max_age_days: float | None = Field(
        default=30.0, gt=0, description="Days a stored response is kept (OpenAI keeps them "
        "30 days); older ones are gone. None: no limit by age.")
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413), "
        "and largest WebSocket message (the connection is closed with 1009 past it)."
    )
    audio_max_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024,
        description="Largest audio upload for transcription/translation (413), as OpenAI's.")
    audio_max_seconds: float = Field(
        default=1800.0, gt=0,
        description="Longest audio accepted for transcription/translation (400 beyond it).")
    ray: bool = Field(
        default=False, description="Serve every model as a Ray Serve deployment (the `ray` "
        "extra); this process's HTTP app stays the ingress. docs/scaling.md.")
    ray_address: str | None = Field(
        default=None, description="The Ray cluster to join (e.g. 10.0.0.5:6379, or auto); "
        "None starts a local Ray instance, stopped again at shutdown.")
    ray_replicas: dict[str, int] = Field(
        default_factory=dict, description="Replicas per model on Ray (default 1), by id or "
        "alias; `--replicas MODEL=N`.")
    ray_autoscaling: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Ray Serve autoscaling_config per model (min_replicas, "
        "max_replicas, target_ongoing_requests, ...); wins over ray_replicas.")
    ray_num_cpus_per_replica: float = Field(
        default=0.0, ge=0, description="CPUs each replica reserves in Ray's scheduler (0: none, "
        "so every model fits a small machine; threads still come from the CPU plan).")
    worker_start_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a model may take to load before it fails."
    )
    worker_restart_max_backoff_s: float = Field(
        default=30.0, gt=0, description="Longest wait between restarts of a crashed worker."
    )
    # -- admission ---------------------------------------------------------------------------
    max_in_flight: int = Field(
        default=8, ge=1, description="Requests a model runs at once (its batch); more wait.")
    max_queue: int = Field(
        default=64, ge=0, description="Requests that may wait per model; past it: 429.")
    request_timeout_s: float | None = Field(
        default=600.0, gt=0, description="Longest a request may wait and run before 504; the "
        "X-Request-Timeout header (seconds) may shorten it. None: no limit.")
    max_input_chars: dict[str, int] = Field(
        default_factory=lambda: {"chat": 1_000_000, "embeddings": 1_000_000,
                                 "rerank": 1_000_000, "transcription": 100_000,
                                 "speech": 10_000},
        description="Largest total of text characters in one request, per capability (400): "
        "a safety net over every string of the request, not the API's own field limits.")
    # -- lifecycle ---------------------------------------------------------------------------
    preload: bool = Field(
        default=True, description="Load every model at start-up unless its policy says not.")
    idle_ttl_s: float | None = Field(
        default=None, gt=0, description="Unload a model idle this long (seconds); None: never.")
    memory_budget_mb: float | None = Field(
        default=None, gt=0, description="Memory all loaded models may use together; loading "
        "past it unloads the least recently used unpinned models first, else 503.")
    model_aliases: dict[str, str] = Field(
        default_factory=dict, description="More names for served models, {alias: model id or "
        "alias}, e.g. {\"claude-3-5-haiku-latest\": \"smollm2\", \"gpt-4o-mini\": \"smollm2\"}, "
        "so clients that send a vendor's model name reach a local model. They join the model's "
        "`aliases` in /v1/models (not entries of their own). An alias of a model that is not "
        "served, or one that is already a served model's name, is logged and left out.")
    model_policies: dict[str, ModelPolicy] = Field(
        default_factory=dict, description="Per model id or alias: preload, pin, ttl_s, ...")
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight requests may finish "
        "before they are cancelled and the workers stopped.")
    # -- security ----------------------------------------------------------------------------
    api_keys: list[str] = Field(
        default_factory=list, description="Keys accepted as `Authorization: Bearer <key>` or "
        "`X-API-Key` (and on a WebSocket handshake as the `openai-insecure-api-key.<key>` "
        "subprotocol). Empty (and no api_keys_file): no authentication.")
    api_keys_file: Path | None = Field(
        default=None, description="A file with one API key per line (# comments allowed).")
    open_paths: list[str] = Field(
        default_factory=lambda: ["/health", "/healthz", "/ping", "/metrics"],
        description="Paths answered without a key; a trailing * matches a prefix.")
    playground: bool = Field(
        default=True, description="Serve the playground page at / (its files under "
        "/playground/, open without a key; the API calls it makes need one as any client's).")
    allow_open_access: bool = Field(
        default=False, description="Allow binding a non-loopback address without API keys, "
        "i.e. serving anyone who can reach the port.")
    rate_limit_requests_per_min: int | None = Field(
        default=None, ge=1, description="Requests per minute per API key (429); None: no limit.")
    rate_limit_tokens_per_min: int | None = Field(
        default=None, ge=1, description="Prompt + generated tokens per minute per API key (429).")
    # -- WebSockets --------------------------------------------------------------------------
    max_websocket_connections: int | None = Field(
        default=64, ge=1, description="WebSocket connections open at once, server-wide, "
        "counted from handshake to close; past it a handshake is refused (429, or close code "
        "1013 where the server cannot answer HTTP). None: no limit.")
    max_websocket_connections_per_key: int | None = Field(
        default=None, ge=1, description="WebSocket connections one API key may hold open at "
        "once (429 / 1013 past it); applies only where keys are required. None: no limit.")
    # -- Realtime and the other voice routes ------------------------------------------------
    # The voice models: /v1/realtime, /v1/dialogue and the short aliases (/v1/speech-to-text,
    # /v1/text-to-speech, /v1/generate) use them where the client names no model.
    realtime_chat_model: str = Field(
        default="smollm2-135m-instruct", description="The chat model of a /v1/realtime "
        "session when the client names none, or names one of OpenAI's realtime models "
        "(gpt-realtime, gpt-4o-realtime-preview, ...) that is not served here; also the "
        "default chat model of /v1/dialogue and /v1/generate.")
    realtime_transcription_model: str = Field(
        default="whisper-base", description="The model that hears a realtime session's audio "
        "(its voice activity detection and transcripts); also the default of /v1/dialogue "
        "and /v1/speech-to-text.")
    realtime_speech_model: str = Field(
        default="piper-joe-medium", description="The model that speaks a realtime session's "
        "answers in audio mode; also the default of /v1/dialogue and /v1/text-to-speech.")
    realtime_max_output_tokens: int = Field(
        default=1024, ge=1, description="The most tokens one realtime (or /v1/dialogue) answer "
        "may have when the request asks for no limit (\"inf\"): small models can ramble "
        "until their context is full.")
    realtime_temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature of realtime answers (the "
        "GA Realtime API has no such field), and of /v1/dialogue answers that name none; "
        "None: the chat model's default.")
    realtime_idle_timeout_s: float | None = Field(
        default=300.0, gt=0, description="Close a realtime session that has sent nothing for "
        "this long while no answer is being made (an error event, then close code 1000). "
        "None: never.")
    # -- images ------------------------------------------------------------------------------
    image_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="Largest image accepted, base64 or "
        "fetched (400 past it; a fetch is cut off at this size).")
    image_max_pixels: int = Field(
        default=40_000_000, ge=1, description="Largest canvas (width x height) an image may "
        "declare: a small file declaring a huge one is a decompression bomb (400).")
    image_max_per_request: int = Field(
        default=16, ge=1, description="Images one request may hold, all messages together.")
    image_fetch_enabled: bool = Field(
        default=False, description="Fetch http(s) image URLs. Off: only base64 data: URLs "
        "are taken (400 otherwise). On: image_fetch_allowed_hosts is required, and only "
        "public addresses are ever contacted (docs/vision.md).")
    image_fetch_allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts image URLs may name, exactly, or every "
        "subdomain with `*.example.com`. Loopback and private addresses stay refused even "
        "when their host is listed.")
    image_fetch_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest one image fetch may take, redirects "
        "included.")
    image_fetch_max_redirects: int = Field(
        default=3, ge=0, description="Redirects one image fetch may follow (each re-checked).")
    vision_model: str | None = Field(
        default=None, description="The model of /v1/images/describe when a request names "
        "none; default: the first served model that sees images.")
    image_describe_max_batch: int = Field(
        default=16, ge=1, description="Images one /v1/images/describe/batch request may hold.")

    @model_validator(mode="after")
    def _fetch_needs_allowlist(self) -> Settings:
        if self.image_fetch_enabled and not self.image_fetch_allowed_hosts:
            raise ValueError("image_fetch_enabled needs image_fetch_allowed_hosts: the hosts "
                             "image URLs may name")
        return self

    # -- live speech (/ws/stt, /ws/tts) ---------------------------------------------------
    live_max_message_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest message a /ws/stt or /ws/tts client "
        "may send (an audio frame or a JSON event); a larger one is answered with an error "
        "event and dropped, and the session goes on.")
    live_idle_timeout_s: float | None = Field(
        default=300.0, gt=0, description="Close a /ws/stt or /ws/tts session that has sent "
        "nothing for this long while nothing it asked for is being worked on (an error event, "
        "then close code 1000). None: never.")
    live_max_session_s: float | None = Field(
        default=3600.0, gt=0, description="The longest a /ws/stt or /ws/tts session may last "
        "(an error event, then close code 1000). None: no limit.")

    # -- dialogue (/v1/dialogue) ------------------------------------------------------------
    dialogue_max_sessions: int = Field(
        default=1000, ge=1, description="/v1/dialogue sessions kept in memory at once; a new "
        "one past it evicts the session used longest ago.")
    dialogue_max_turns: int = Field(
        default=20, ge=1, description="Turns (question and answer) a dialogue session "
        "remembers; older ones are dropped first.")
    dialogue_max_history_tokens: int = Field(
        default=2048, ge=64, description="Tokens of history a dialogue session sends the chat "
        "model at most (estimated at 4 characters a token); older turns are dropped first, "
        "the latest is always kept.")
    dialogue_idle_ttl_s: float | None = Field(
        default=1800.0, gt=0, description="A dialogue session unused this long (seconds) is "
        "forgotten. None: only the count bounds them.")

    def policy(self, spec: ModelSpec) -> ModelPolicy:
        """The policy written for this model's id or one of its aliases, else the default."""
        for name in (spec.id, *spec.aliases):
            if name in self.model_policies:
                return self.model_policies[name]
        return ModelPolicy()

    def all_api_keys(self) -> list[str]:
        """Keys from the list and the file together; blank lines and comments skipped."""
        keys = [k for k in self.api_keys if k]
        if self.api_keys_file is not None:
            for line in self.api_keys_file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.append(line)
        return keys

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls, init_settings))


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by the `config_file` override or POCKETSERVE_CONFIG_FILE."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        kwargs = init.init_kwargs if isinstance(init, InitSettingsSource) else {}
        path = kwargs.get("config_file") or os.environ.get("POCKETSERVE_CONFIG_FILE")
        self._data: dict[str, Any] = {}
        if path:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"config file {path} must hold a mapping of settings")
            self._data = loaded or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)
