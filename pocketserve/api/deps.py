"""Typed dependencies: the app's settings and model registry, from `app.state`.

They are `async def` on purpose: FastAPI runs a plain `def` dependency on its thread pool, a
thread hop per request that costs milliseconds when the model's threads keep the cores busy.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from pocketserve.config import Settings
from pocketserve.images.inputs import ImageLoader
from pocketserve.serving.registry import ModelRegistry
from pocketserve.store.responses import ResponseStore
from pocketserve.voice.sessions import DialogueStore


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_registry(request: Request) -> ModelRegistry:
    return cast(ModelRegistry, request.app.state.registry)


async def get_response_store(request: Request) -> ResponseStore:
    return cast(ResponseStore, request.app.state.responses)


async def get_dialogue_store(request: Request) -> DialogueStore:
    return cast(DialogueStore, request.app.state.dialogues)


async def get_image_loader(request: Request) -> ImageLoader:
    return cast(ImageLoader, request.app.state.images)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
ResponseStoreDep = Annotated[ResponseStore, Depends(get_response_store)]
DialogueStoreDep = Annotated[DialogueStore, Depends(get_dialogue_store)]
ImageLoaderDep = Annotated[ImageLoader, Depends(get_image_loader)]
