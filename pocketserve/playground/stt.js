// Speech to text: a file or a microphone recording to /v1/audio/transcriptions (verbose_json),
// the text with segment timestamps, and the same segments as .srt and .vtt files.

import { $, api, el, fillSelect, showError } from "./api.js";

function stamp(seconds, comma) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const text = `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:`
    + `${pad(Math.floor(ms / 1000) % 60)}.${pad(ms % 1000, 3)}`;
  return comma ? text.replace(".", ",") : text;
}

export function toSrt(segments) {
  return segments.map((s, i) =>
    `${i + 1}\n${stamp(s.start, true)} --> ${stamp(s.end, true)}\n${s.text.trim()}\n`).join("\n");
}

export function toVtt(segments) {
  return "WEBVTT\n\n" + segments.map((s) =>
    `${stamp(s.start)} --> ${stamp(s.end)}\n${s.text.trim()}\n`).join("\n");
}

function download(anchor, text, type) {
  if (anchor.href) URL.revokeObjectURL(anchor.href);
  anchor.href = URL.createObjectURL(new Blob([text], { type }));
}

export function initStt(served) {
  let recorded = null; // a Blob from the microphone, used when no file is chosen after it
  let recorder = null;

  served.onChange(() => fillSelect($("stt-model"),
    served.of("transcription").map((m) => m.id), "whisper-base"));

  $("stt-file").addEventListener("change", () => {
    recorded = null;
    const file = $("stt-file").files[0];
    $("stt-source").textContent = file ? `File: ${file.name}` : "";
  });

  $("stt-record").addEventListener("click", async () => {
    if (recorder) {
      recorder.stop();
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
      recorder.addEventListener("stop", () => {
        for (const track of stream.getTracks()) track.stop();
        recorded = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
        recorder = null;
        $("stt-file").value = "";
        $("stt-record").textContent = "Record";
        $("stt-source").textContent = `Recording: ${(recorded.size / 1024).toFixed(0)} KiB`;
      });
      recorder.start();
      $("stt-record").textContent = "Stop recording";
      $("stt-source").textContent = "Recording…";
      showError($("stt-error"), null);
    } catch (error) {
      showError($("stt-error"), new Error(`Microphone: ${error.message}`));
    }
  });

  $("stt-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("stt-file").files[0];
    const audio = file || recorded;
    if (!audio) {
      showError($("stt-error"), new Error("Choose an audio file or record something first."));
      return;
    }
    const form = new FormData();
    form.append("file", audio, file ? file.name : "recording.webm");
    form.append("model", $("stt-model").value);
    form.append("response_format", "verbose_json");
    form.append("timestamp_granularities[]", "segment");
    const language = $("stt-language").value.trim();
    if (language) form.append("language", language);
    $("stt-send").disabled = true;
    $("stt-send").textContent = "Transcribing…";
    showError($("stt-error"), null);
    const started = performance.now();
    try {
      const result = await (await api("/v1/audio/transcriptions", { body: form })).json();
      const segments = result.segments || [];
      $("stt-text").textContent = result.text;
      const took = (performance.now() - started) / 1000;
      $("stt-meta").textContent = [result.language && `language: ${result.language}`,
        result.duration && `${result.duration.toFixed(1)} s of audio`, `${took.toFixed(1)} s to transcribe`]
        .filter(Boolean).join(" · ");
      $("stt-segments").querySelector("tbody").replaceChildren(...segments.map((s) =>
        el("tr", {}, el("td", { text: stamp(s.start) }), el("td", { text: stamp(s.end) }),
          el("td", { text: s.text.trim() }))));
      download($("stt-srt"), toSrt(segments), "application/x-subrip");
      download($("stt-vtt"), toVtt(segments), "text/vtt");
      $("stt-result").hidden = false;
    } catch (error) {
      showError($("stt-error"), error);
    } finally {
      $("stt-send").disabled = false;
      $("stt-send").textContent = "Transcribe";
    }
  });
  return {};
}
