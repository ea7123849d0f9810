"""Pieces shared by the text-generation request schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from pocketserve.api.protocol.wire import check_integers
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import SamplingParams


class Request(BaseModel):
    """Unknown fields are ignored, as most OpenAI-compatible servers do, so newer SDKs work.

    Types are strict, as OpenAI's and Anthropic's are: `"temperature": true` or `"n": "2"` is a
    400 naming the field, never read as 1.0 or 2 (an integer still counts as a number)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class Body(Request):
    """A route's whole request body: checked once for integers the worker socket cannot carry
    (nested models are checked with it, so the error names the full path)."""

    @model_validator(mode="after")
    def _integers_fit(self) -> Body:
        check_integers(self.model_dump(by_alias=True))
        return self


def examples(*bodies: JsonDict) -> ConfigDict:
    """A request model's config with worked examples for /openapi.json (and /docs). Each is
    sent to a real server by tests/e2e/test_openapi_examples.py, which also checks the
    documented answers."""
    return ConfigDict(extra="ignore", populate_by_name=True, strict=True,
                      json_schema_extra={"examples": list(bodies)})


class StreamOptions(Request):
    include_usage: bool = False


class JsonSchemaFormat(Request):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _is_valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return checked_schema(schema)


def checked_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` if it is a valid JSON schema (by its own draft's metaschema), else ValueError,
    which the API answers as a 400 naming the field."""
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from exc
    return schema


class ResponseFormat(Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


Temperature = Annotated[float | None, Field(default=None, ge=0, le=2)]
Penalty = Annotated[float | None, Field(default=None, ge=-2, le=2)]


class SamplingKnobs(Body):
    """The sampling parameters every text-generation API takes (chat, completions, responses),
    and their one conversion to the engine's parameters."""

    temperature: Temperature = None
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    repetition_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: str | list[str] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > 16:
            raise ValueError("at most 16 stop sequences")
        return stop

    def sampling_params(self, *, max_tokens: int | None, n: int = 1, logprobs: bool = False,
                        top_logprobs: int = 0, response_format: ResponseFormat | None = None,
                        format_param: str = "response_format") -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        params = SamplingParams(
            max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, min_p=self.min_p, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty, repetition_penalty=self.repetition_penalty,
            seed=self.seed, stop=[s for s in stop if s], n=n, logprobs=logprobs,
            top_logprobs=top_logprobs,
        )
        if response_format is not None and response_format.type == "json_schema":
            if response_format.json_schema is None:
                raise InvalidRequest(f"{format_param} of type json_schema needs `json_schema`",
                                     param=f"{format_param}.json_schema")
            params.json_schema = response_format.json_schema.schema_
        elif response_format is not None and response_format.type == "json_object":
            params.json_object = True
        return params


class SamplingFields(SamplingKnobs):
    """The request fields chat and completions share."""

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=64)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling(self, *, max_tokens: int | None, logprobs: bool, top_logprobs: int,
                 response_format: ResponseFormat | None = None) -> SamplingParams:
        return self.sampling_params(max_tokens=max_tokens, n=self.n, logprobs=logprobs,
                                    top_logprobs=top_logprobs, response_format=response_format)
