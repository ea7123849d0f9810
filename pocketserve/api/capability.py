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


def vision_model(registry: ModelRegistry, name: str | None, default: str | None) -> ModelSpec:
    """The model that describes images: the one named, else the `vision_model` setting, else
    the first served model that sees; a 400 naming `model` when it cannot see."""
    name = name or default
    if name is not None:
        spec = model_for(registry, name, "chat", "describe images")
        if not sees(spec):
            raise InvalidRequest(f"The model {spec.id!r} cannot see images.", param="model",
                                 code="image_not_supported")
        return spec
    for status in registry.statuses():
        spec = registry.spec(status.id)
        if sees(spec):
            return spec
    raise InvalidRequest("No served model can see images: serve one (a llama.cpp model with "
                         "an `mmproj` option, a transformers vision model) and name it in "
                         "`model` or the vision_model setting.", param="model",
                         code="image_not_supported")
