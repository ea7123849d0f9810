"""The playground in a real browser: Debian's Chromium driven by Playwright, against a real
server with API keys and small models. Screenshots go to the test run's temporary folder."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.conftest import RunningServer, start_server, stop_server
from tests.stt_helpers import espeak, wer

KEY = "sk-playground-test"
CHROMIUM = "/usr/bin/chromium"
# Offline and as root: no sandbox, no GPU, nothing that reaches out to the network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODELS = ["smollm2-135m-instruct", "whisper-tiny.en", "piper-joe-medium", "all-minilm-l6-v2",
          "minilm-cosine-reranker"]
SPOKEN = ("Scientists have discovered a new species of frog in the rainforest. The small animal "
          "lives high in the trees and sings loudly at night.")
QUESTION = "What is the capital of France?"
STORY = "Please tell me a very long story about a dragon."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(MODELS, "--threads", "1", env={
        "POCKETSERVE_API_KEYS": json.dumps([KEY]),
        "POCKETSERVE_REALTIME_TRANSCRIPTION_MODEL": "whisper-tiny.en",
        "POCKETSERVE_REALTIME_TEMPERATURE": "0"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: run `make test` (it installs Debian's chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nplayground screenshots: {folder}")
    return folder


def open_browser(playwright: Playwright, folder: Path, *extra: str) -> BrowserContext:
    """A fresh profile each time (its own --user-data-dir): no key kept from another test."""
    return playwright.chromium.launch_persistent_context(
        str(folder), executable_path=CHROMIUM, headless=True, args=[*FLAGS, *extra],
        viewport={"width": 1280, "height": 900})


class Watched:
    """A page and every console error or uncaught exception it had."""

    def __init__(self, page: Page):
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


@pytest.fixture
def page(playwright: Playwright, server: RunningServer,
         tmp_path: Path) -> Iterator[Watched]:
    """A page that knows the key already (as after a first visit), on the models tab."""
    context = open_browser(playwright, tmp_path / "profile")
    context.add_init_script(f"localStorage.setItem('pocketserve.apiKey', {json.dumps(KEY)})")
    watched = Watched(context.pages[0] if context.pages else context.new_page())
    watched.page.goto(server.base_url + "/")
    yield watched
    context.close()


def ready_rows(page: Page) -> None:
    rows = page.locator("#models-table tbody tr")
    expect(rows).to_have_count(len(MODELS), timeout=30_000)
    expect(page.locator("#models-table .state.ready")).to_have_count(len(MODELS))


def test_the_page_loads_with_no_console_errors(page: Watched, server: RunningServer,
                                               shots: Path) -> None:
    ready_rows(page.page)
    # Live figures: two samples of /metrics make a rate.
    expect(page.page.locator("#fig-tps")).to_have_text(re.compile(r"^\d+\.\d$"), timeout=15_000)
    expect(page.page.locator("#fig-total")).to_have_text(re.compile(r"^\d+$"))
    expect(page.page.locator("#models-table tbody")).to_contain_text("MB")
    page.page.screenshot(path=shots / "models.png", full_page=True)
    assert page.errors == []
    # The page is served with a strict policy, and needs no key to load.
    reply = httpx.get(server.base_url + "/", timeout=10)
    assert reply.status_code == 200 and "text/html" in reply.headers["content-type"]
    csp = reply.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(server.base_url + "/playground/app.js").headers[
        "content-security-policy"] == csp
    assert httpx.get(server.base_url + "/v1/models").status_code == 401


def test_tabs_work_from_the_keyboard_and_fit_a_phone(page: Watched, shots: Path) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-models").focus()
    p.keyboard.press("ArrowRight")
    expect(p.locator("#panel-chat")).to_be_visible()
    expect(p.locator("#tab-chat")).to_be_focused()
    p.keyboard.press("End")
    expect(p.locator("#panel-rank")).to_be_visible()
    p.keyboard.press("ArrowRight")  # wraps around
    expect(p.locator("#panel-models")).to_be_visible()
    # Every control has a label a screen reader reads.
    unlabelled = p.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((c) => !c.labels?.length && !c.getAttribute('aria-label')).map((c) => c.id)""")
    assert unlabelled == []
    p.set_viewport_size({"width": 390, "height": 844})
    for tab in ("models", "chat", "stt", "tts", "voice", "rank"):
        p.locator(f"#tab-{tab}").click()
        overflow = p.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (tab, overflow)
    p.locator("#tab-chat").click()
    p.screenshot(path=shots / "phone-chat.png", full_page=True)
    assert page.errors == []


def test_answers_render_as_markdown_and_never_as_html(page: Watched) -> None:
    html = page.page.evaluate("""async () => (await import('/playground/markdown.js'))
        .renderMarkdown('**Hi** <img src=x onerror=alert(1)>\\n\\n```py\\nprint("<b>")\\n```\\n'
                        + '- [ok](https://example.org) [bad](javascript:evil)\\n- `a<b`')""")
    assert html == ('<p><strong>Hi</strong> &lt;img src=x onerror=alert(1)&gt;</p>'
                    '<pre data-lang="py"><code>print(&quot;&lt;b&gt;&quot;)</code></pre>'
                    '<ul><li><a href="https://example.org" rel="noopener noreferrer" '
                    'target="_blank">ok</a> bad</li><li><code>a&lt;b</code></li></ul>')


def test_with_keys_set_the_page_asks_for_one_and_then_works(
        playwright: Playwright, server: RunningServer, tmp_path: Path, shots: Path) -> None:
    context = open_browser(playwright, tmp_path / "profile")
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(server.base_url + "/")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible(timeout=15_000)
        expect(page.locator("#key-reason")).to_contain_text("API key")
        page.locator("#key-input").fill("sk-wrong")
        page.keyboard.press("Enter")
        # A wrong key is refused by the server, and the page asks again with its message.
        expect(page.locator("#key-reason")).to_contain_text("Incorrect API key", timeout=15_000)
        page.screenshot(path=shots / "key.png")
        page.locator("#key-input").fill(KEY)
        page.locator("#key-save").click()
        expect(dialog).to_be_hidden()
        ready_rows(page)
        assert page.evaluate("localStorage.getItem('pocketserve.apiKey')") == KEY
    finally:
        context.close()


def test_a_typed_question_streams_an_answer(page: Watched, shots: Path) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-chat").click()
    expect(p.locator("#chat-model")).to_have_value("smollm2-135m-instruct")
    p.locator("#chat-temperature").fill("0")
    p.locator("#chat-max-tokens").fill("60")
    p.locator("#chat-input").fill("Write a short poem about the sea.")
    p.locator("#chat-input").press("Enter")
    answer = p.locator(".msg.assistant").last
    # Text shows while the answer is still streaming, and the stop button is live meanwhile.
    p.wait_for_function("""() => {
        const m = document.querySelector('.msg.assistant.streaming .body');
        return m && m.textContent.trim().length > 0; }""", timeout=60_000)
    expect(p.locator("#chat-stop")).to_be_enabled()
    expect(p.locator("#chat-stats")).to_contain_text("completion tokens", timeout=90_000)
    expect(p.locator("#chat-stats")).to_contain_text("tokens/s")
    assert answer.locator(".body").inner_text().strip()
    expect(p.locator("#chat-stop")).to_be_disabled()
    p.screenshot(path=shots / "chat.png", full_page=True)
    assert page.errors == []


def test_tool_calls_show_when_they_happen(page: Watched) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-chat").click()
    p.locator("#chat-temperature").fill("0")
    p.locator("#chat-tools").select_option("required")  # SmolLM2 rarely calls on "auto"
    p.locator("#chat-input").fill("What is the weather in Paris right now?")
    p.locator("#chat-send").click()
    call = p.locator(".msg.assistant .tool-call")
    expect(call).to_contain_text("Tool call: get_weather(", timeout=90_000)
    expect(call).to_contain_text("Paris")
    expect(p.locator("#chat-stats")).to_contain_text("finish: tool_calls", timeout=30_000)
    assert page.errors == []


def test_stop_ends_a_long_answer(page: Watched) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-chat").click()
    p.locator("#chat-max-tokens").fill("2000")
    p.locator("#chat-input").fill("Tell a very long story about a dragon.")
    p.locator("#chat-send").click()
    p.wait_for_function("""() => {
        const m = document.querySelector('.msg.assistant.streaming .body');
        return m && m.textContent.trim().length > 20; }""", timeout=60_000)
    p.locator("#chat-stop").click()
    expect(p.locator("#chat-stats")).to_contain_text("stopped", timeout=10_000)
    expect(p.locator(".msg.assistant.streaming")).to_have_count(0)
    assert page.errors == []


def test_speech_plays(page: Watched, shots: Path) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-tts").click()
    expect(p.locator("#tts-voice option")).not_to_have_count(0)
    p.locator("#tts-input").fill("Hello from the playground.")
    p.locator("#tts-send").click()
    expect(p.locator("#tts-download")).to_be_visible(timeout=60_000)
    duration = p.wait_for_function("""() => {
        const d = document.getElementById('tts-audio').duration;
        return Number.isFinite(d) && d > 0 ? d : null; }""", timeout=30_000).json_value()
    assert 0.5 < duration < 10
    href = p.locator("#tts-download").get_attribute("href")
    assert href and href.startswith("blob:")
    # Another format: wav arrives whole and plays too.
    p.locator("#tts-format").select_option("wav")
    p.locator("#tts-send").click()
    expect(p.locator("#tts-download")).to_contain_text(".wav", timeout=60_000)
    p.wait_for_function("""() => {
        const a = document.getElementById('tts-audio');
        return a.src.startsWith('blob:') && Number.isFinite(a.duration) && a.duration > 0; }""",
                        timeout=30_000)
    p.screenshot(path=shots / "speech.png", full_page=True)
    assert page.errors == []


def test_an_uploaded_recording_is_transcribed(page: Watched, tmp_path: Path,
                                              shots: Path) -> None:
    p = page.page
    ready_rows(p)
    recording = espeak(SPOKEN, tmp_path / "frog.wav")
    p.locator("#tab-stt").click()
    expect(p.locator("#stt-model")).to_have_value("whisper-tiny.en")
    p.locator("#stt-file").set_input_files(str(recording))
    p.locator("#stt-send").click()
    expect(p.locator("#stt-result")).to_be_visible(timeout=60_000)
    heard = p.locator("#stt-text").inner_text()
    assert wer(SPOKEN, heard) <= 0.3, heard
    rows = p.locator("#stt-segments tbody tr")
    expect(rows).not_to_have_count(0)
    assert rows.first.locator("td").first.inner_text().startswith("00:00:0")
    srt, vtt = (_download(p, f"#stt-{kind}") for kind in ("srt", "vtt"))
    assert srt.startswith("1\n00:00:0") and " --> " in srt and "frog" in srt.lower()
    assert vtt.startswith("WEBVTT\n\n00:00:0") and "frog" in vtt.lower()
    p.screenshot(path=shots / "transcription.png", full_page=True)
    assert page.errors == []


def _download(p: Page, selector: str) -> str:
    """Click a download link as a user would; the text of the file it saves."""
    with p.expect_download() as download:
        p.locator(selector).click()
    return Path(download.value.path()).read_text()


def _scores(p: Page) -> list[tuple[float, str]]:
    items = p.locator("#rank-results li")
    expect(items).to_have_count(4, timeout=30_000)
    return [(float(li.locator(".score").inner_text()), li.locator(".doc").inner_text())
            for li in items.all()]


def test_rerank_shows_ordered_scores(page: Watched, shots: Path) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-rank").click()
    p.locator("#rank-model").select_option("minilm-cosine-reranker")
    p.locator("#rank-send").click()
    ranked = _scores(p)
    assert [s for s, _ in ranked] == sorted((s for s, _ in ranked), reverse=True)
    assert ranked[0][1] == "The Eiffel Tower is in Paris."
    assert ranked[-1][1] == "Bananas are rich in potassium."
    p.screenshot(path=shots / "rerank.png", full_page=True)
    # The embeddings model ranks by cosine similarity of its vectors, the same way.
    p.locator("#rank-model").select_option("all-minilm-l6-v2")
    p.locator("#rank-send").click()
    expect(p.locator("#rank-stats")).to_contain_text("384 dimensions", timeout=30_000)
    by_cosine = _scores(p)
    assert by_cosine[0][1] == "The Eiffel Tower is in Paris."
    assert [s for s, _ in by_cosine] == sorted((s for s, _ in by_cosine), reverse=True)
    assert page.errors == []


def test_an_api_error_is_shown_as_the_server_wrote_it(page: Watched) -> None:
    p = page.page
    ready_rows(p)
    p.locator("#tab-rank").click()
    p.locator("#rank-docs").fill("")
    p.locator("#rank-send").click()
    expect(p.locator("#rank-error")).to_have_text(
        "400: 'documents' must not be an empty list.", timeout=15_000)


def _question_wav(tmp: Path, question: str, pause_s: float) -> Path:
    """The question with a second of silence before and `pause_s` after, at 24 kHz. Chromium
    loops the fake microphone's file: the question comes again after each pause."""
    import av

    spoken = espeak(question, tmp / "q.wav")
    with av.open(str(spoken)) as source:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=24_000)
        pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for frame in source.decode(audio=0)
                       for f in resampler.resample(frame))
    silence = lambda s: b"\0\0" * int(24_000 * s)  # noqa: E731
    out = tmp / "mic.wav"
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(silence(1.0) + pcm + silence(pause_s))
    out.write_bytes(buffer.getvalue())
    return out


@contextlib.contextmanager
def voice_page(playwright: Playwright, server: RunningServer, tmp: Path, question: str,
               pause_s: float) -> Iterator[Watched]:
    """The voice tab in a browser whose microphone keeps asking `question`."""
    mic = _question_wav(tmp, question, pause_s)
    context = open_browser(playwright, tmp / "profile", "--use-fake-ui-for-media-stream",
                           "--use-fake-device-for-media-stream",
                           f"--use-file-for-fake-audio-capture={mic}",
                           "--autoplay-policy=no-user-gesture-required")
    context.add_init_script(f"localStorage.setItem('pocketserve.apiKey', {json.dumps(KEY)})")
    try:
        watched = Watched(context.pages[0] if context.pages else context.new_page())
        watched.page.goto(server.base_url + "/#voice")
        expect(watched.page.locator("#voice-model")).to_have_value("smollm2-135m-instruct",
                                                                   timeout=30_000)
        yield watched
    finally:
        context.close()


def test_a_spoken_conversation_through_realtime(playwright: Playwright, server: RunningServer,
                                                tmp_path: Path, shots: Path) -> None:
    # Twenty seconds of silence after the question: the answer ends before it is asked again.
    with voice_page(playwright, server, tmp_path, QUESTION, pause_s=20.0) as watched:
        page = watched.page
        page.locator("#voice-connect").click()
        expect(page.locator("#voice-mic")).to_have_attribute("aria-pressed", "true",
                                                             timeout=15_000)
        user = page.locator("#voice-log .msg.user .body").first
        expect(user).to_contain_text("capital", timeout=90_000)
        assert wer(QUESTION, user.inner_text()) <= 0.35, user.inner_text()
        answer = page.locator("#voice-log .msg.assistant .body").first
        expect(answer).not_to_have_text("", timeout=90_000)
        # The spoken answer's audio reached the page (the bubble says how much it played).
        meta = page.locator("#voice-log .msg.assistant .meta").first
        expect(meta).to_have_text(re.compile(r"^\d+\.\d s of audio$"), timeout=90_000)
        assert float(meta.inner_text().split()[0]) > 0.3
        page.screenshot(path=shots / "voice.png", full_page=True)
        page.locator("#voice-hangup").click()
        expect(page.locator("#voice-state")).to_have_text("Not connected")
        assert watched.errors == []


def test_speaking_over_an_answer_interrupts_it(playwright: Playwright, server: RunningServer,
                                               tmp_path: Path) -> None:
    # Two seconds after the request it is made again, over the long answer it asked for.
    with voice_page(playwright, server, tmp_path, STORY, pause_s=2.0) as watched:
        page = watched.page
        page.locator("#voice-instructions").fill("Tell long stories, with many details.")
        page.locator("#voice-connect").click()
        meta = page.locator("#voice-log .msg.assistant .meta").first
        try:
            expect(meta).to_contain_text("turn_detected", timeout=90_000)
        except AssertionError:
            print(page.locator("#voice-log").inner_text())
            raise
        # The next turn is heard after the interruption.
        expect(page.locator("#voice-log .msg.user")).not_to_have_count(1, timeout=60_000)
        page.locator("#voice-hangup").click()
        assert watched.errors == []
