"""Speech to text through the official OpenAI SDK against a real server and real Whisper models.

Known sentences are spoken by espeak-ng; the transcripts are judged by word error rate.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.conftest import RunningServer, start_server, stop_server
from tests.stt_helpers import FORMATS, encode, espeak, wer

MAX_BYTES = 1_500_000
MAX_SECONDS = 20

SENTENCES = [
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with "
    "a single step. Every morning the baker opens his shop before sunrise.",
    "Scientists have discovered a new species of frog in the rainforest. The small animal "
    "lives high in the trees and sings loudly at night.",
    "Please remember to turn off the lights when you leave the office. The meeting has been "
    "moved to Thursday afternoon. Bring your laptop and the quarterly report.",
    "The library will be closed for renovations during the summer. Students can borrow books "
    "from the city library instead.",
]
SHORT = "Please call Stella. Ask her to bring these things with her from the store."


@pytest.fixture(scope="module")
def stt_server() -> Iterator[RunningServer]:
    server = start_server(["whisper-base", "whisper-tiny.en"], env={
        "POCKETSERVE_AUDIO_MAX_BYTES": str(MAX_BYTES),
        "POCKETSERVE_AUDIO_MAX_SECONDS": str(MAX_SECONDS)})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def stt(stt_server: RunningServer) -> OpenAI:
    return stt_server.client(timeout=120)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    made = {f"s{i}": espeak(text, folder / f"s{i}.wav") for i, text in enumerate(SENTENCES)}
    made["short"] = espeak(SHORT, folder / "short.wav")
    made["spanish"] = espeak("Hola, me llamo Pedro. Vivo en Madrid y me gusta mucho el café.",
                             folder / "es.wav", voice="es", speed=140)
    return made


def _duration(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def _file(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "audio/wav")


def test_concurrent_transcriptions_meet_the_word_error_rate(stt: OpenAI,
                                                            clips: dict[str, Path]) -> None:
    """Four requests at once (batched in the worker), each given its own transcript back."""
    def transcribe(i: int) -> str:
        result = stt.audio.transcriptions.create(model="whisper-base",
                                                 file=_file(clips[f"s{i}"]), language="en")
        return result.text

    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(transcribe, range(4)))
    total = wer(" ".join(SENTENCES), " ".join(texts))
    assert total <= 0.12, (total, texts)
    for i, text in enumerate(texts):  # nothing crossed over between concurrent requests
        assert min(range(4), key=lambda j: wer(SENTENCES[j], text)) == i


def test_whisper_1_alias_and_json_usage(stt_server: RunningServer,
                                        clips: dict[str, Path]) -> None:
    reply = httpx.post(stt_server.base_url + "/v1/audio/transcriptions",
                       data={"model": "whisper-1"}, files={"file": _file(clips["short"])},
                       timeout=120)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert wer(SHORT, body["text"]) <= 0.2, body
    assert body["usage"] == {"type": "duration",
                             "seconds": int(np.ceil(_duration(clips["short"])))}


_SRT_TIME = r"(\d\d):(\d\d):(\d\d){sep}(\d\d\d)"


def _parse_cues(text: str, sep: str, numbered: bool) -> list[tuple[float, float, str]]:
    time = _SRT_TIME.format(sep=re.escape(sep))
    cues = []
    for n, block in enumerate(text.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        if numbered:
            assert lines.pop(0) == str(n)
        match = re.fullmatch(f"{time} --> {time}", lines[0])
        assert match, lines[0]
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in match.groups())
        start = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000
        end = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert lines[1:] and all(line.strip() for line in lines[1:])
        cues.append((start, end, " ".join(lines[1:])))
    return cues


def _check_times(cues: list[tuple[float, float, str]], duration: float) -> None:
    assert cues
    for (start, end, _), (next_start, _, _) in zip(cues, [*cues[1:], (1e9, 0, "")],
                                                    strict=True):
        assert 0 <= start < end <= duration + 0.5
        assert start <= next_start


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse_with_increasing_times(stt: OpenAI, clips: dict[str, Path],
                                               fmt: str) -> None:
    text = stt.audio.transcriptions.create(model="whisper-tiny.en", file=_file(clips["s0"]),
                                           response_format=fmt)  # type: ignore[call-overload]
    assert isinstance(text, str)
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
        text = text.removeprefix("WEBVTT\n\n")
    cues = _parse_cues(text, "," if fmt == "srt" else ".", numbered=fmt == "srt")
    _check_times(cues, _duration(clips["s0"]))
    assert wer(SENTENCES[0], " ".join(c[2] for c in cues)) <= 0.3


def test_text_format(stt: OpenAI, clips: dict[str, Path]) -> None:
    text = stt.audio.transcriptions.create(model="whisper-tiny.en", file=_file(clips["short"]),
                                           response_format="text")
    assert isinstance(text, str) and wer(SHORT, text) <= 0.3


def test_word_timestamps_lie_within_the_audio(stt: OpenAI, clips: dict[str, Path]) -> None:
    result = stt.audio.transcriptions.create(
        model="whisper-tiny.en", file=_file(clips["s2"]), response_format="verbose_json",
        timestamp_granularities=["word", "segment"])
    duration = _duration(clips["s2"])
    assert result.language == "english" and abs(result.duration - duration) < 0.1
    assert result.words and result.segments
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    for w in result.words:
        assert 0 <= w.start <= w.end <= duration + 0.1, w
    assert wer(result.text, " ".join(w.word for w in result.words)) == 0
    assert [s.id for s in result.segments] == list(range(len(result.segments)))


def test_stream_sends_deltas_then_the_whole_text(stt: OpenAI, clips: dict[str, Path]) -> None:
    events = list(stt.audio.transcriptions.create(model="whisper-base",
                                                  file=_file(clips["s1"]), stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    assert len(kinds) >= 3  # one delta per decoded segment: this clip has two sentences
    done = events[-1].text  # type: ignore[union-attr]
    assert "".join(e.delta for e in events[:-1]) == done  # type: ignore[union-attr]
    assert wer(SENTENCES[1], done) <= 0.2


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK's own marker
def test_translation_and_language(stt: OpenAI, clips: dict[str, Path]) -> None:
    english = stt.audio.translations.create(model="whisper-base", file=_file(clips["spanish"]))
    assert {"live", "madrid"} <= set(english.text.lower().replace(".", " ").split()), english
    spanish = stt.audio.transcriptions.create(
        model="whisper-base", file=_file(clips["spanish"]), language="es",
        response_format="verbose_json")
    assert spanish.language == "spanish" and "madrid" in spanish.text.lower()


def _as(kind: str, path: Path) -> bytes:
    with wave.open(str(path)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    target = FORMATS[kind][2]
    t = np.arange(int(pcm.size * target / rate)) / target
    samples = np.interp(t, np.arange(pcm.size) / rate, pcm / 32768).astype(np.float32)
    return encode(samples[None, :], target, kind)


@pytest.mark.parametrize("kind", ["mp3", "m4a", "flac", "ogg", "webm"])
def test_compressed_uploads(stt: OpenAI, clips: dict[str, Path], kind: str) -> None:
    upload = (f"short.{kind}", _as(kind, clips["short"]), "application/octet-stream")
    text = stt.audio.transcriptions.create(model="whisper-tiny.en", file=upload).text
    assert wer(SHORT, text) <= 0.3, text


def test_vad_drops_silence(stt: OpenAI, clips: dict[str, Path]) -> None:
    """Without VAD, Whisper tends to hear words in silence; `chunking_strategy` turns VAD on."""
    silence = encode(np.zeros((1, 48_000 * 3), np.float32), 48_000, "ogg")
    result = stt.audio.transcriptions.create(model="whisper-tiny.en", file=("quiet.ogg", silence),
                                             chunking_strategy="auto")
    assert result.text == ""
    speech = stt.audio.transcriptions.create(
        model="whisper-tiny.en", file=_file(clips["short"]),
        chunking_strategy={"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500})
    assert wer(SHORT, speech.text) <= 0.3


BAD_FILES = {
    "empty": b"",
    "text": b"this is a text file, not audio\n" * 50,
    "random": np.random.default_rng(1).bytes(20_000),
    "image": b"\x89PNG\r\n\x1a\n" + b"\x00" * 500,
}


def _error(call: object) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        call()  # type: ignore[operator]
    return info.value


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_bad_inputs_are_4xx_and_the_server_stays_healthy(
        stt_server: RunningServer, stt: OpenAI, clips: dict[str, Path]) -> None:
    create = stt.audio.transcriptions.create
    for name, data in BAD_FILES.items():
        err = _error(lambda d=data, n=name: create(model="whisper-base", file=(n, d)))
        assert (err.status_code, err.param) == (400, "file"), (name, err)
    silence = encode(np.zeros((1, 48_000 * (MAX_SECONDS + 5)), np.float32), 48_000, "ogg")
    err = _error(lambda: create(model="whisper-base", file=("long.ogg", silence)))
    assert err.status_code == 400 and f"{MAX_SECONDS} seconds" in err.message
    big = b"RIFF" + b"\x00" * MAX_BYTES
    err = _error(lambda: create(model="whisper-base", file=("big.wav", big)))
    assert (err.status_code, err.param) == (413, "file")
    wav = _file(clips["short"])
    cases = [
        (dict(model="whisper-base", language="xx"), 400, "language"),
        (dict(model="whisper-tiny.en", language="fr"), 400, "language"),
        (dict(model="whisper-base", temperature=1.5), 400, "temperature"),
        (dict(model="whisper-base", response_format="mp3"), 400, "response_format"),
        (dict(model="no-such-model"), 404, "model"),
    ]
    for kwargs, status, param in cases:
        err = _error(lambda k=kwargs: create(file=wav, **k))  # type: ignore[arg-type]
        assert (err.status_code, err.param) == (status, param), (kwargs, err)
    err = _error(lambda: stt.audio.translations.create(model="whisper-tiny.en", file=wav))
    assert (err.status_code, err.param) == (400, "model")
    assert httpx.get(stt_server.base_url + "/health").status_code == 200
    assert wer(SHORT, create(model="whisper-tiny.en", file=wav).text) <= 0.3


def test_a_chat_model_cannot_transcribe(client: OpenAI, clips: dict[str, Path]) -> None:
    err = _error(lambda: client.audio.transcriptions.create(model="smollm2-135m-instruct",
                                                            file=_file(clips["short"])))
    assert (err.status_code, err.param) == (400, "model")
