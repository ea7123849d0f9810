"""create_app(settings): the whole server is built here, and nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pocketserve import __version__
from pocketserve.api.errors import install_error_handlers
from pocketserve.api.limits import BodySizeLimit
from pocketserve.api.routes import embeddings, models, rerank, text
from pocketserve.catalog import Catalog
from pocketserve.config import Settings
from pocketserve.serving.registry import ModelRegistry


def create_app(settings: Settings) -> FastAPI:
    registry = ModelRegistry(settings, Catalog(settings.extra_models))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        try:
            yield
        finally:
            await registry.stop()

    app = FastAPI(title="pocketserve", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    install_error_handlers(app)
    app.include_router(text.router)
    app.include_router(models.router)
    app.include_router(embeddings.router)
    app.include_router(rerank.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
