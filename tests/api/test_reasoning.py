"""Thinking goes to `reasoning_content` (and the `reasoning_content` setting keeps it in the
content), and a model marked as unable to take tools refuses them. SmolLM2 is made a
"thinking" model by a chat template whose generation prompt opens a `<think>` block, as
DeepSeek-R1's and Qwen3's do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.api.tool_helpers import WEATHER
from tests.conftest import RunningServer, start_server, stop_server
from tests.e2e.helpers import smol_path, write_config

THINKING_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}")
SMALL = {"n_ctx": 2048, "n_parallel": 2}
ASK = [{"role": "user", "content": "What is the capital of France?"}]


def _server(tmp: Path, env: dict[str, str] | None = None) -> RunningServer:
    extra = [{"id": "smol-thinking", "capability": "chat", "backend": "llamacpp",
              "source": str(smol_path()),
              "options": {**SMALL, "chat_template": THINKING_TEMPLATE}},
             {"id": "smol-no-tools", "capability": "chat", "backend": "llamacpp",
              "source": str(smol_path()), "options": {**SMALL, "tools": False}}]
    config = write_config(tmp, {"models": ["smol-thinking", "smol-no-tools"], "threads": 1,
                                "extra_models": extra,
                                "model_policies": {"smol-no-tools": {"preload": False}}})
    return start_server([], "--config", str(config), env=env)


@pytest.fixture(scope="module")
def thinking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = _server(tmp_path_factory.mktemp("thinking"))
    yield server
    stop_server(server)


def ask(server: RunningServer, **kwargs: Any) -> Any:
    return server.client().chat.completions.create(
        model="smol-thinking", messages=ASK, max_tokens=24, temperature=0,
        **kwargs)  # type: ignore[arg-type]


def test_the_thought_is_reasoning_not_content(thinking: RunningServer) -> None:
    body = httpx.post(thinking.base_url + "/v1/chat/completions", json={
        "model": "smol-thinking", "messages": ASK, "max_tokens": 24, "temperature": 0}).json()
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] and message["reasoning"] == message["reasoning_content"]
    assert "<think>" not in message["reasoning_content"]
    assert not message["content"]  # SmolLM2 never closes the thought within 24 tokens
    chunks = list(ask(thinking, stream=True))
    streamed = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                       for c in chunks if c.choices)
    assert streamed == message["reasoning_content"]
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)


def test_a_model_that_cannot_take_tools_says_so(thinking: RunningServer) -> None:
    with pytest.raises(openai.BadRequestError, match="cannot take tools") as caught:
        thinking.client().chat.completions.create(
            model="smol-no-tools", messages=ASK, tools=[WEATHER])  # type: ignore[list-item]
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "tools"
    listed = httpx.get(thinking.base_url + "/v1/models").json()["data"]
    assert {m["id"]: m["tools"] for m in listed} == {"smol-thinking": True,
                                                    "smol-no-tools": False}


def test_the_setting_keeps_the_thought_in_the_content(tmp_path: Path,
                                                      thinking: RunningServer) -> None:
    split = ask(thinking).choices[0].message
    server = _server(tmp_path, env={"POCKETSERVE_REASONING_CONTENT": "false"})
    try:
        whole = ask(server).choices[0].message
    finally:
        stop_server(server)
    assert whole.content == getattr(split, "reasoning_content", None)
    assert getattr(whole, "reasoning_content", None) is None
