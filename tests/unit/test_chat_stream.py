"""The streaming splitter of content, `<think>` reasoning and tool calls (no model runs)."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field

import pytest

from pocketserve.backends.chat_stream import ChoiceParser
from pocketserve.ops.chat import ReasoningDelta, TextDelta, TokenLogprob, ToolCallDelta


@dataclass
class Seen:
    content: str = ""
    reasoning: str = ""
    calls: list[dict[str, str]] = field(default_factory=list)
    finish: str | None = None


NAMES = ("get_weather", "get_time", "f")


def run(chunks: list[str], *, tools: bool = True, reasoning: bool = True,
        in_thought: bool = False, finish: str = "stop") -> Seen:
    ids = (f"call_{i}" for i in itertools.count())
    parser = ChoiceParser(0, reasoning=reasoning, tools=NAMES if tools else (),
                          in_thought=in_thought, new_id=lambda: next(ids))
    events = [e for c in chunks for e in parser.feed(c)] + parser.finish(finish)  # type: ignore[arg-type]
    seen = Seen()
    for e in events:
        if isinstance(e, ReasoningDelta):
            seen.reasoning += e.text
        elif isinstance(e, ToolCallDelta):
            if e.id is not None:  # the first delta of a call: id and name, no arguments yet
                assert e.call_index == len(seen.calls) and e.name and e.arguments == ""
                seen.calls.append({"id": e.id, "name": e.name, "arguments": ""})
            else:
                assert e.name is None and e.call_index == len(seen.calls) - 1
                seen.calls[-1]["arguments"] += e.arguments
        elif isinstance(e, TextDelta):
            assert seen.finish is None, "nothing after the finishing delta"
            seen.content += e.text
            seen.finish = e.finish_reason
    return seen


def splits(text: str) -> list[list[str]]:
    """The text whole, one character at a time, and in random pieces."""
    rng = random.Random(len(text))
    out = [[text], list(text)]
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, 6)))
        out.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)])
    return out


ARGS = '{"city": "Paris \\"}\\" x", "n": [1, {"a": 2}]}'
CALL = '<tool_call>\n{"name": "get_weather", "arguments": ' + ARGS + '}\n</tool_call>'


@pytest.mark.parametrize("chunks", splits(CALL))
def test_a_tagged_call_streams_its_arguments_exactly(chunks: list[str]) -> None:
    seen = run(chunks)
    assert seen.calls == [{"id": "call_0", "name": "get_weather", "arguments": ARGS}]
    assert seen.content == "" and seen.finish == "tool_calls"
    json.loads(seen.calls[0]["arguments"])


@pytest.mark.parametrize("chunks", splits(
    "<think>Paris, so weather.</think>\n\nLet me look.\n" + CALL + "\n" +
    CALL.replace("get_weather", "get_time")))
def test_thought_text_and_two_calls(chunks: list[str]) -> None:
    seen = run(chunks)
    assert seen.reasoning == "Paris, so weather."
    assert seen.content == "Let me look."
    assert [c["name"] for c in seen.calls] == ["get_weather", "get_time"]
    assert [c["id"] for c in seen.calls] == ["call_0", "call_1"]
    assert all(c["arguments"] == ARGS for c in seen.calls)


@pytest.mark.parametrize("chunks", splits('{"name": "f", "arguments": {"x": 1}}'))
def test_a_bare_call_object_as_the_whole_answer(chunks: list[str]) -> None:
    seen = run(chunks)
    assert seen.calls == [{"id": "call_0", "name": "f", "arguments": '{"x": 1}'}]
    assert seen.content == ""


@pytest.mark.parametrize("chunks", splits('```json\n{"name": "f", "arguments": {"x": [1]}}\n```'))
def test_a_fenced_call_object(chunks: list[str]) -> None:
    seen = run(chunks)
    assert seen.calls == [{"id": "call_0", "name": "f", "arguments": '{"x": [1]}'}]
    assert seen.content == "" and seen.finish == "tool_calls"


def test_keys_in_another_order_still_make_a_call() -> None:
    seen = run(['<tool_call>{"arguments": {"x": 1}, "name": "f"}</tool_call>'])
    assert seen.calls == [{"id": "call_0", "name": "f", "arguments": '{"x": 1}'}]


@pytest.mark.parametrize("text", [
    "Plain answer with a < sign and <b>tags</b>.", "  leading spaces stay", "{\"a\": 1}",
    "<thinking is not a tag", "x <tool_c", "\n\nHello", "```python\nprint(1)\n```",
    "``inline``", '```json\n{"a": 1}\n```', "{ \"nam\": 1}",
    '{"name": "Joke", "arguments": {"text": "an undeclared function is just text"}}',
    '```json\n{"name": "cat"}\n```',
])
def test_plain_text_passes_unchanged(text: str) -> None:
    for chunks in splits(text):
        seen = run(chunks)
        assert (seen.content, seen.reasoning, seen.calls, seen.finish) == (text, "", [], "stop")


def test_without_tools_tags_are_just_text() -> None:
    seen = run([CALL], tools=False)
    assert seen.content == CALL and seen.calls == [] and seen.finish == "stop"


def test_reasoning_off_keeps_the_thought_in_the_content() -> None:
    text = "<think>hmm</think>Answer"
    assert run([text], reasoning=False).content == text
    assert run([text]).content == "Answer"


def test_a_prompt_that_opened_the_thought() -> None:
    seen = run(["still thinking", "</think>", "Done."], in_thought=True)
    assert (seen.reasoning, seen.content) == ("still thinking", "Done.")


def test_an_unfinished_thought_is_reasoning() -> None:
    seen = run(["<think>and then", " more"], finish="length")
    assert (seen.reasoning, seen.content, seen.finish) == ("and then more", "", "length")


def test_a_call_cut_by_the_length_limit() -> None:
    seen = run(['<tool_call>\n{"name": "f", "arguments": {"x": "ab'], finish="length")
    assert seen.calls == [{"id": "call_0", "name": "f", "arguments": '{"x": "ab'}]
    assert seen.finish == "length"


def test_a_call_cut_before_its_name_leaves_no_markup() -> None:
    seen = run(['<tool_call>\n{"na'], finish="length")
    assert (seen.content, seen.calls) == ("", [])


def test_logprobs_go_with_the_content_they_belong_to() -> None:
    lp = [TokenLogprob("<", -0.1, None, [])]
    parser = ChoiceParser(0, reasoning=True)
    assert parser.feed("<", lp) == []  # might be <think>: held back
    out = parser.feed("b>", [TokenLogprob("b>", -0.2, None, [])])
    assert isinstance(out[0], TextDelta) and out[0].text == "<b>"
    assert [t.token for t in out[0].logprobs or []] == ["<", "b>"]
