"""A request's model must serve the capability its route offers; otherwise a 400 names it."""

from __future__ import annotations

from pocketserve.catalog import sees, takes_tools
from pocketserve.config import ModelSpec
from pocketserve.errors import InvalidRequest
from pocketserve.images.inputs import ImageInputs
from pocketserve.ops.chat import ChatRequest, TokenizeRequest
from pocketserve.serving.registry import ModelRegistry


def model_for(registry: ModelRegistry, name: str, capability: str, doing: str) -> ModelSpec:
    """The served spec for `name`, or InvalidRequest when it cannot do `doing`."""
    spec = registry.spec(name)
    if spec.capability != capability:
        raise InvalidRequest(f"The model {spec.id!r} does not {doing} (it serves "
                             f"{spec.capability}).", param="model")
    return spec


def check_tools(spec: ModelSpec, request: ChatRequest | TokenizeRequest) -> None:
    """Tools reach only models whose backend can call functions."""
    if request.tools and not takes_tools(spec):
        raise InvalidRequest(f"The model {spec.id!r} cannot take tools: its backend cannot "
                             "call functions.", param="tools")


def check_images(spec: ModelSpec, images: ImageInputs) -> None:
    """Images reach only models that see; the 400 names the first image, before any fetch."""
    if images and not sees(spec):
        raise InvalidRequest(f"The model {spec.id!r} cannot see images: {images.params[0]} is "
                             "an image. Use a model whose /v1/models entry lists \"image\" "
                             "in input_modalities.", param=images.params[0],
                             code="image_not_supported")
