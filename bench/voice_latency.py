"""Voice latency through /v1/realtime: end of speech to the first audio of the answer.

A question spoken by espeak-ng is streamed at real-time pace (100 ms chunks, then silence at
the same pace) into a session with server VAD on the default chat and speech models. Timed from
the moment the last chunk holding speech was sent: `speech_stopped`, the transcript, the first
answer audio. Then `response.cancel` in the middle of an answer: time until the last audio
delta arrives and until `response.done`. Then `--concurrent` sessions at once.
Targets on 2 cores: first audio p50 <= 1.0 s, p95 <= 1.5 s; audio stops <= 200 ms after cancel.

    .venv/bin/python bench/voice_latency.py [--stt whisper-base|whisper-tiny.en] [--turns 6]
                                            [--concurrent 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import start_server, stop_server

RATE = 24_000
CHUNK = RATE // 10 * 2  # 100 ms of PCM16
QUESTION = "What is the capital of France?"


def question_pcm() -> tuple[bytes, int]:
    """The question at 24 kHz after 0.5 s of silence; and where its speech ends (bytes)."""
    import subprocess

    import av

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "q.wav"
        subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), QUESTION], check=True)
        with av.open(str(wav)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            frames = [o for f in container.decode(audio=0) for o in resampler.resample(f)]
            frames += resampler.resample(None)
    speech = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
    lead = bytes(RATE)  # 0.5 s
    return lead + speech, len(lead) + len(speech)


def events_until(ws: ClientConnection, kind: str, timeout: float = 120) -> list[dict[str, Any]]:
    out = []
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        event["_t"] = time.perf_counter()
        out.append(event)
        if event["type"] == "error":
            raise RuntimeError(event["error"])
        if event["type"] == kind:
            return out


def open_session(url: str, instructions: str, max_tokens: int | str) -> ClientConnection:
    ws = connect(url, max_size=None)
    events_until(ws, "session.created")
    ws.send(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "output_modalities": ["audio"], "instructions": instructions,
        "max_output_tokens": max_tokens,
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE},
                            "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                               "prefix_padding_ms": 300,
                                               "silence_duration_ms": 500}},
                  "output": {"voice": "alloy"}}}}))
    events_until(ws, "session.updated")
    return ws


def speak(ws: ClientConnection, pcm: bytes, speech_end: int, stop: threading.Event) -> float:
    """Send the audio at real-time pace, then silence until `stop`; returns when the speech
    ended (perf_counter)."""
    ended = 0.0
    start = time.perf_counter()
    sent = 0
    while not stop.is_set():
        chunk = pcm[sent:sent + CHUNK] if sent < len(pcm) else bytes(CHUNK)
        ws.send(json.dumps({"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(chunk).decode()}))
        sent += CHUNK
        if not ended and sent >= speech_end:
            ended = time.perf_counter()
        time.sleep(max(0.0, start + sent / 2 / RATE - time.perf_counter()))
    return ended


def one_turn(url: str, pcm: bytes, speech_end: int) -> dict[str, float]:
    ws = open_session(url, "You are a helpful assistant. Answer in one short sentence.", 60)
    stop = threading.Event()
    ended: list[float] = []
    sender = threading.Thread(target=lambda: ended.append(speak(ws, pcm, speech_end, stop)))
    sender.start()
    try:
        events = events_until(ws, "response.output_audio.delta")
    finally:
        stop.set()
        sender.join()
    events += events_until(ws, "response.done")
    ws.close()
    at = {e["type"]: e["_t"] for e in reversed(events)}  # the first of each kind
    end = ended[0]
    return {"stopped": at["input_audio_buffer.speech_stopped"] - end,
            "transcript": at["conversation.item.input_audio_transcription.completed"] - end,
            "first_audio": at["response.output_audio.delta"] - end}


def cancel_turn(url: str) -> dict[str, float]:
    ws = open_session(url, "Whatever you are asked, tell a long story about a dragon.", "inf")
    ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Tell me a story."}]}}))
    events_until(ws, "conversation.item.done")
    ws.send(json.dumps({"type": "response.create"}))
    deltas = [e for e in events_until(ws, "response.output_audio.delta")]
    for _ in range(3):
        deltas += events_until(ws, "response.output_audio.delta")
    sent = time.perf_counter()
    ws.send(json.dumps({"type": "response.cancel"}))
    after = events_until(ws, "response.done")
    ws.close()
    audio = [e["_t"] for e in after if e["type"] == "response.output_audio.delta"]
    status = after[-1]["response"]["status"]
    assert status == "cancelled", status
    return {"last_audio": (max(audio) - sent) if audio else 0.0,
            "done": after[-1]["_t"] - sent}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(title: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{title} ({len(rows)}), seconds after the end of speech:")
    print("| | p50 | p95 | max |\n|---|---:|---:|---:|")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"| {key} | {statistics.median(values):.2f} | {pct(values, 0.95):.2f} | "
              f"{max(values):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stt", default="whisper-base")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()
    # Sessions stay open across calls here, not inside one `with` block.
    warnings.filterwarnings("ignore", message="connect\\(\\) must be used")
    pcm, speech_end = question_pcm()
    server = start_server(["smollm2-135m-instruct", args.stt, "piper-joe-medium"],
                          env={"POCKETSERVE_REALTIME_TRANSCRIPTION_MODEL": args.stt},
                          timeout_s=600)
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=smollm2-135m-instruct"
    try:
        one_turn(url, pcm, speech_end)  # warm-up: first loads, caches
        report(f"one session at a time, {args.stt}",
               [one_turn(url, pcm, speech_end) for _ in range(args.turns)])
        cancels = [cancel_turn(url) for _ in range(3)]
        print("\nresponse.cancel mid-answer (3), seconds after it was sent:")
        for key in cancels[0]:
            print(f"  {key}: " + ", ".join(f"{c[key]:.3f}" for c in cancels))
        results: list[dict[str, float]] = []
        threads = [threading.Thread(target=lambda: results.append(
            one_turn(url, pcm, speech_end))) for _ in range(args.concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(results) == args.concurrent:
            report(f"{args.concurrent} sessions at once, all completed", results)
        else:
            print(f"\n{args.concurrent} sessions at once: only {len(results)} completed")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
