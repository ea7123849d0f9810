"""The vision engines on tiny random-weight Qwen2-VL models built in the test (no answer can
be judged for sense; what is checked is what the engines do with images): transformers and
llama.cpp with its projector, run as the worker runs them (tests/engine_helpers.run_op)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketserve.backends import load_engine
from pocketserve.catalog import sees, spec_for_path
from pocketserve.config import ModelSpec
from pocketserve.engines.base import Engine
from pocketserve.errors import InvalidRequest
from pocketserve.ops.chat import CHAT, COMPLETE, TOKENIZE, TextDelta
from pocketserve.ops.common import Usage
from tests.engine_helpers import run_op
from tests.vision_models import Built, cached_build, convert_script, png, torch_missing

# A 112 x 112 image is 16 image tokens on both sides (llama.cpp gives Qwen-VL at least 8 and
# ignores the processor's pixel limits, so only then do both see the same prompt).
PROMPT_TOKENS = 36  # the chat template's tokens around one such image and "Describe ..."
IMAGE_TOKENS = 16 + 2  # the image's tokens and its start and end markers

pytestmark = pytest.mark.skipif(torch_missing() is not None, reason=str(torch_missing()))


@pytest.fixture(scope="module")
def built() -> Built:
    return cached_build("qwen2_vl")


def _engine(spec: ModelSpec, path: Path) -> Iterator[Engine]:
    engine = load_engine(spec, path, 1, cache_dir=path.parent / "cache")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf(built: Built) -> Iterator[Engine]:
    spec = ModelSpec(id="tiny-vl", capability="chat", backend="transformers_vlm",
                     source=str(built.folder), options={"batch_window_ms": 50})
    yield from _engine(spec, built.folder)


def _gguf(built: Built, **options: Any) -> Iterator[Engine]:
    if built.gguf is None:
        pytest.skip(f"llama.cpp's converter is not here ({convert_script()}); "
                    "make test fetches it (tests/get_llama_convert.py)")
    spec = ModelSpec(id="tiny-vl-gguf", capability="chat", backend="llamacpp",
                     source=str(built.gguf), options={"n_ctx": 2048, "n_parallel": 4, **options})
    yield from _engine(spec, built.gguf)


@pytest.fixture(scope="module")
def gguf(built: Built) -> Iterator[Engine]:
    yield from _gguf(built, mmproj=str(built.mmproj))


@pytest.fixture(scope="module")
def blind(built: Built) -> Iterator[Engine]:
    yield from _gguf(built)


def image(seed: int = 0, size: int = 112, **extra: Any) -> dict[str, Any]:
    return {"type": "image", "data": png(size, size, seed), "media_type": "image/png", **extra}


def ask(*images: dict[str, Any], text: str = "Describe the picture.", max_tokens: int = 8,
        **sampling: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [*images, {"type": "text", "text": text}]}],
            "sampling": {"max_tokens": max_tokens, "temperature": 0, **sampling}}


def answer(engine: Engine, payload: dict[str, Any],
           cancelled: threading.Event | None = None) -> tuple[dict[int, str], Usage, list[Any]]:
    events = run_op(engine, CHAT, payload, cancelled)
    texts: dict[int, str] = {}
    for e in events:
        if isinstance(e, TextDelta):
            texts[e.index] = texts.get(e.index, "") + e.text
    usage = events[-1]
    assert isinstance(usage, Usage)
    return texts, usage, events


def test_transformers_answers_an_image(hf: Engine) -> None:
    texts, usage, events = answer(hf, ask(image()))
    assert texts[0]
    assert usage.prompt_tokens == PROMPT_TOKENS and usage.completion_tokens == 8
    assert events[-2].finish_reason == "length"
    assert answer(hf, ask(image()))[0] == texts  # greedy: the same again
    assert answer(hf, ask(image(seed=5)))[0] != texts  # another picture, another answer


def same_text(a: dict[int, str], b: dict[int, str]) -> bool:
    """Equal answers: random weights may end on part of a character's bytes, which
    transformers decodes as U+FFFD and llama.cpp leaves out."""
    return {k: v.rstrip("\ufffd") for k, v in a.items()} == {
        k: v.rstrip("\ufffd") for k, v in b.items()}


def test_same_greedy_tokens_through_llamacpp_and_transformers(hf: Engine, gguf: Engine) -> None:
    for seed in (0, 3):
        mine, theirs = answer(hf, ask(image(seed))), answer(gguf, ask(image(seed)))
        assert same_text(mine[0], theirs[0]) and len(mine[0][0].rstrip("\ufffd")) > 2
        assert mine[1].prompt_tokens == theirs[1].prompt_tokens == PROMPT_TOKENS
        assert mine[1].completion_tokens == theirs[1].completion_tokens


def test_several_images(hf: Engine, gguf: Engine) -> None:
    two = ask(image(1), image(2), text="Compare them.")
    for engine in (hf, gguf):
        texts, usage, _ = answer(engine, two)
        assert texts[0]
        one = answer(engine, ask(image(1), text="Compare them."))[1]
        assert usage.prompt_tokens == one.prompt_tokens + IMAGE_TOKENS
    assert same_text(answer(hf, two)[0], answer(gguf, two)[0])


def test_images_in_several_messages_and_text_only_turns(hf: Engine) -> None:
    payload = {"messages": [
        {"role": "system", "content": "You look at pictures."},
        {"role": "user", "content": [image(1), {"type": "text", "text": "And this?"}]},
        {"role": "assistant", "content": "Blocks."},
        {"role": "user", "content": [{"type": "text", "text": "Now this"}, image(2)]}],
        "sampling": {"max_tokens": 4, "temperature": 0}}
    texts, usage, _ = answer(hf, payload)
    assert texts[0] and usage.prompt_tokens > 2 * IMAGE_TOKENS
    assert answer(hf, {"messages": [{"role": "user", "content": "Just text."}],
                       "sampling": {"max_tokens": 3}})[0][0] is not None


def test_concurrent_requests_share_one_batch_and_keep_their_answers(hf: Engine) -> None:
    alone = {seed: answer(hf, ask(image(seed), max_tokens=3 + seed))[0][0] for seed in range(4)}
    backend: Any = hf.backend
    sizes: list[int] = []
    generate = backend.model.generate

    def spy(**kwargs: Any) -> Any:
        sizes.append(int(kwargs["input_ids"].shape[0]))
        return generate(**kwargs)

    backend.model.generate = spy
    try:
        together: dict[int, str] = {}

        def one(seed: int) -> None:
            together[seed] = answer(hf, ask(image(seed), max_tokens=3 + seed))[0][0]

        threads = [threading.Thread(target=one, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        backend.model.generate = generate
    assert together == alone
    assert max(sizes) > 1, sizes  # at least two of them were generated side by side


def test_n_stop_and_sampling(hf: Engine) -> None:
    texts, usage, _ = answer(hf, ask(image(), n=2, temperature=1.0, seed=7, max_tokens=6))
    assert set(texts) == {0, 1} and usage.completion_tokens == 12
    again = answer(hf, ask(image(), n=2, temperature=1.0, seed=7, max_tokens=6))[0]
    assert again == texts  # a seed repeats
    full = answer(hf, ask(image(), max_tokens=8))[0][0]
    stop = full[2:4]
    texts, _, events = answer(hf, ask(image(), max_tokens=8, stop=[stop]))
    assert texts[0] == full[:full.index(stop)]
    last = [e for e in events if isinstance(e, TextDelta)][-1]
    assert last.finish_reason == "stop" and last.stop_sequence == stop


def test_cancelled_before_it_runs(hf: Engine) -> None:
    cancelled = threading.Event()
    cancelled.set()
    served = {s.op.name: s for s in hf.operations()}["chat"]
    from pocketserve.engines.base import Call
    from pocketserve.ops.wire import encode

    events: list[Any] = []
    served.run(CHAT.decode_request(encode(ask(image()))), events.append,
               Call(cancelled=cancelled))
    assert events == []


def test_a_request_cancelled_mid_batch_leaves_it(hf: Engine) -> None:
    cancel = threading.Event()
    results: dict[str, Any] = {}

    def kept() -> None:
        results["kept"] = answer(hf, ask(image(1), max_tokens=30))

    def dropped() -> None:
        results["dropped"] = run_op(hf, CHAT, ask(image(2), max_tokens=30), cancel,
                                    emit=lambda e: cancel.set())  # after its first token

    threads = [threading.Thread(target=kept), threading.Thread(target=dropped)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts, usage, events = results["kept"]
    assert events[-2].finish_reason is not None
    alone = answer(hf, ask(image(1), max_tokens=30))
    assert (texts, usage) == alone[:2]  # the one kept is untouched by the other leaving
    assert not any(isinstance(e, Usage) for e in results["dropped"])
    assert 1 <= len(results["dropped"]) < 5


@pytest.mark.parametrize(("sampling", "param"), [
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
    ({"json_object": True}, "response_format"),
])
def test_transformers_refuses_what_it_cannot_do(hf: Engine, sampling: dict[str, Any],
                                                param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        run_op(hf, CHAT, ask(image(), **sampling))
    assert caught.value.param == param


def test_transformers_refuses_tools_and_bad_images(hf: Engine) -> None:
    tools = {**ask(image()), "tools": [{"name": "f", "parameters": {"type": "object"}}]}
    with pytest.raises(InvalidRequest) as caught:
        run_op(hf, CHAT, tools)
    assert caught.value.param == "tools"
    broken = {"type": "image", "data": b"not an image", "media_type": "image/png"}
    with pytest.raises(InvalidRequest) as caught:
        run_op(hf, CHAT, ask(broken))
    assert caught.value.param == "messages"


def test_completions_take_text_only(hf: Engine) -> None:
    events = run_op(hf, COMPLETE, {"prompt": "The cat", "sampling": {"max_tokens": 3}})
    assert isinstance(events[-1], Usage) and events[-1].completion_tokens <= 3
    with pytest.raises(InvalidRequest) as caught:
        run_op(hf, COMPLETE, {"prompt": [5, 6, 7], "sampling": {"max_tokens": 3}})
    assert caught.value.param == "prompt"


def test_tokenize_counts_the_image(hf: Engine) -> None:
    events = run_op(hf, TOKENIZE, {"messages": ask(image())["messages"]})
    assert len(events[0].tokens) == PROMPT_TOKENS


def test_low_detail_shrinks_a_big_image(gguf: Engine) -> None:
    """OpenAI's "low": the model sees at most 512 x 512 pixels (llama.cpp takes the pixels as
    they come; the tiny transformers model caps them lower itself)."""
    from PIL import Image

    from pocketserve.backends.images import with_detail
    from pocketserve.ops.chat import ImagePart

    part = ImagePart(data=png(700, 350), media_type="image/png", detail="low")
    shrunk = Image.open(io.BytesIO(with_detail(part).data))
    assert shrunk.size == (512, 256)
    small = ImagePart(data=png(300, 300), media_type="image/png", detail="low")
    assert with_detail(small) is small
    huge = answer(gguf, ask(image(size=700), max_tokens=1))[1].prompt_tokens
    low = answer(gguf, ask(image(size=700, detail="low"), max_tokens=1))[1].prompt_tokens
    assert low < huge * 0.6
    with pytest.raises(InvalidRequest):
        answer(gguf, ask(image(detail="medium"), max_tokens=1))


def test_llamacpp_without_projector_refuses_images(blind: Engine) -> None:
    with pytest.raises(InvalidRequest) as caught:
        run_op(blind, CHAT, ask(image()))
    assert caught.value.param == "messages"
    texts, _, _ = answer(blind, {"messages": [{"role": "user", "content": "Hello"}],
                                 "sampling": {"max_tokens": 2}})
    assert 0 in texts  # text still works


def test_a_vision_folder_is_recognised(built: Built) -> None:
    spec = spec_for_path(str(built.folder))
    assert (spec.backend, spec.capability) == ("transformers_vlm", "chat")
    assert sees(spec)
    if built.gguf is not None:
        plain = spec_for_path(str(built.gguf))
        assert plain.backend == "llamacpp" and not sees(plain)


@pytest.fixture(scope="module")
def smol() -> Iterator[Engine]:
    folder = cached_build("smolvlm", convert=False).folder
    spec = ModelSpec(id="tiny-smolvlm", capability="chat", backend="transformers_vlm",
                     source=str(folder), options={"batch_window_ms": 50})
    yield from _engine(spec, folder)


def test_smolvlm_answers_images_alone_and_batched(smol: Engine) -> None:
    texts, usage, _ = answer(smol, ask(image(0)))
    assert texts[0] and usage.completion_tokens == 8
    two = answer(smol, ask(image(0), image(1)))[1]
    assert two.prompt_tokens == usage.prompt_tokens + 16 + 3  # its tokens and their markers
    alone = {s: answer(smol, ask(image(s), max_tokens=3 + s))[0][0] for s in range(3)}
    together: dict[int, str] = {}
    threads = [threading.Thread(target=lambda s=s: together.__setitem__(
        s, answer(smol, ask(image(s), max_tokens=3 + s))[0][0])) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_smolvlm_answers_through_llamacpp_with_its_projector() -> None:
    built = cached_build("smolvlm")
    if built.gguf is None:
        pytest.skip("llama.cpp's converter is not here; make test fetches it")
    spec = ModelSpec(id="tiny-smolvlm-gguf", capability="chat", backend="llamacpp",
                     source=str(built.gguf), options={"mmproj": str(built.mmproj),
                                                      "n_ctx": 1024, "n_parallel": 2})
    for engine in _engine(spec, built.gguf):
        texts, usage, _ = answer(engine, ask(image(0)))
        assert texts[0] and usage.completion_tokens == 8
        # llama.cpp lays out Idefics3's image tokens its own way: no token-for-token match
        assert answer(engine, ask(image(0), image(1)))[1].prompt_tokens > usage.prompt_tokens
