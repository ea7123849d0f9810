// Text to speech: /v1/audio/speech. mp3 plays while it streams (Media Source Extensions);
// the other formats play once they have arrived. Every answer can be downloaded.

import { $, api, apiJson, fillSelect, showError } from "./api.js";

const TYPES = { mp3: "audio/mpeg", opus: "audio/ogg", aac: "audio/aac", flac: "audio/flac",
  wav: "audio/wav", pcm: "audio/pcm" };
const PCM_RATE = 24000; // every format leaves the server at 24 kHz mono

/** A WAV header in front of raw PCM16, so the browser can play `pcm` answers. */
function wavOf(pcm) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + pcm.size, true);
  text(8, "WAVEfmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true);
  header.setUint16(22, 1, true);
  header.setUint32(24, PCM_RATE, true);
  header.setUint32(28, PCM_RATE * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, pcm.size, true);
  return new Blob([header, pcm], { type: "audio/wav" });
}

/** Feed a streamed answer into a MediaSource as it comes; resolves with every chunk. */
async function streamInto(audio, response, type) {
  const source = new MediaSource();
  audio.src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer(type);
  const reader = response.body.getReader();
  const chunks = [];
  let playing = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    buffer.appendBuffer(value);
    await new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
    if (!playing) {
      playing = true;
      audio.play().catch(() => {}); // the user presses play where autoplay is refused
    }
  }
  source.endOfStream();
  return chunks;
}

export function initTts(served) {
  const audio = $("tts-audio");

  async function loadVoices() {
    const model = $("tts-model").value;
    if (!model) return;
    try {
      const voices = await apiJson(`/v1/audio/voices?model=${encodeURIComponent(model)}`);
      fillSelect($("tts-voice"), [...new Set(voices.data.map((v) => v.id))], "alloy");
    } catch (error) {
      showError($("tts-error"), error);
    }
  }

  served.onChange(() => {
    const ready = served.of("speech");
    fillSelect($("tts-model"), ready.map((m) => m.id), "piper-joe-medium");
    loadVoices();
  });
  $("tts-model").addEventListener("change", loadVoices);

  $("tts-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const format = $("tts-format").value;
    const request = { model: $("tts-model").value, input: $("tts-input").value,
      voice: $("tts-voice").value, response_format: format, speed: Number($("tts-speed").value) };
    $("tts-send").disabled = true;
    $("tts-download").hidden = true;
    showError($("tts-error"), null);
    $("tts-stats").textContent = "Speaking…";
    const started = performance.now();
    try {
      const response = await api("/v1/audio/speech", { json: request });
      let blob;
      if (format === "mp3" && window.MediaSource?.isTypeSupported("audio/mpeg")) {
        blob = new Blob(await streamInto(audio, response, "audio/mpeg"), { type: TYPES.mp3 });
      } else {
        blob = await response.blob();
        audio.src = URL.createObjectURL(format === "pcm" ? wavOf(blob) : blob);
        audio.play().catch(() => {});
      }
      const link = $("tts-download");
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(new Blob([blob], { type: TYPES[format] }));
      link.download = `speech.${format}`;
      link.textContent = `Download .${format} (${(blob.size / 1024).toFixed(0)} KiB)`;
      link.hidden = false;
      $("tts-stats").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    } catch (error) {
      showError($("tts-error"), error);
      $("tts-stats").textContent = "";
    } finally {
      $("tts-send").disabled = false;
    }
  });
  return {};
}
