"""create_app(settings): the whole server is built here, and nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pocketserve import __version__
from pocketserve.api.auth import ApiKeyAuth, ApiKeys
from pocketserve.api.errors import install_error_handlers
from pocketserve.api.limits import BodySizeLimit, ConnectionSlots, WebSocketConnectionLimit
from pocketserve.api.middleware import CancelOnDisconnect, RequestContextMiddleware
from pocketserve.api.openapi import DESCRIPTION, install_openapi
from pocketserve.api.routes import (
    admin,
    chat,
    dialogue,
    embeddings,
    images,
    live,
    messages,
    models,
    playground,
    realtime,
    rerank,
    responses,
    speech,
    transcription,
    voice_aliases,
)
from pocketserve.catalog import Catalog
from pocketserve.config import Settings
from pocketserve.images.inputs import ImageLoader
from pocketserve.serving.metrics import Metrics
from pocketserve.serving.ratelimit import RateLimiter
from pocketserve.serving.registry import ModelRegistry, WorkerFactory
from pocketserve.store.responses import ResponseStore
from pocketserve.voice.sessions import DialogueStore


def create_app(settings: Settings, worker_factory: WorkerFactory | None = None) -> FastAPI:
    """The whole server; `worker_factory` puts the models elsewhere (Ray Serve)."""
    metrics = Metrics()
    registry = ModelRegistry(settings, Catalog(settings.extra_models), metrics, worker_factory)
    days = settings.responses_max_age_days
    store = ResponseStore(settings.data_dir / "responses.sqlite3",
                          max_count=settings.responses_max_stored,
                          max_age_s=None if days is None else days * 86400)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        try:
            yield
        finally:
            await registry.stop()
            store.close()

    app = FastAPI(title="pocketserve", version=__version__, lifespan=lifespan,
                  description=DESCRIPTION)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.responses = store
    app.state.dialogues = DialogueStore(settings.dialogue_max_sessions,
                                        settings.dialogue_max_turns,
                                        settings.dialogue_max_history_tokens,
                                        settings.dialogue_idle_ttl_s)
    app.state.images = ImageLoader.from_settings(settings)
    install_error_handlers(app)
    install_openapi(app, settings)
    app.include_router(chat.router)
    app.include_router(messages.router)
    app.include_router(responses.router)
    app.include_router(models.router)
    app.include_router(admin.router)
    app.include_router(speech.router)
    app.include_router(transcription.router)
    app.include_router(embeddings.router)
    app.include_router(rerank.router)
    app.include_router(images.router)
    app.include_router(realtime.router)
    app.include_router(live.router)
    app.include_router(dialogue.router)
    app.include_router(voice_aliases.router)
    open_paths = list(settings.open_paths)
    if settings.playground:
        playground.install(app)
        open_paths += playground.OPEN_PATHS
    # Added innermost first: the request context wraps everything, so even a 401 or a 413
    # carries the request id and is counted. Every layer covers WebSocket handshakes too; the
    # connection limit sits inside auth, where the key is known.
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(WebSocketConnectionLimit, slots=ConnectionSlots(
        settings.max_websocket_connections, settings.max_websocket_connections_per_key))
    limiter = RateLimiter(settings.rate_limit_requests_per_min,
                          settings.rate_limit_tokens_per_min)
    app.add_middleware(ApiKeyAuth, keys=ApiKeys(settings.all_api_keys()),
                       open_paths=open_paths, limiter=limiter)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics,
                       timeout_s=settings.request_timeout_s, router=app.router)
    return app
