// Voice: a conversation over /v1/realtime (OpenAI's GA Realtime events). The microphone goes
// in as 24 kHz PCM16 through an AudioWorklet, server VAD finds the turns, answers come back
// as PCM16 and are played in order; speaking over an answer stops it here and on the server.

import { $, apiJson, el, fillSelect, getKey, showError } from "./api.js";

const RATE = 24000;

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes.buffer;
}

export function initVoice(served) {
  let ws = null;
  let ctx = null;
  let mic = null; // { stream, node }
  let micOn = false;
  let playing = [];
  let playAt = 0;
  let answer = null; // the assistant bubble being written
  let heard = 0; // seconds of the answer's audio received
  const log = $("voice-log");

  served.onChange(async (models) => {
    fillSelect($("voice-model"), served.of("chat").map((m) => m.id), "smollm2-135m-instruct");
    if (!models.some((m) => m.capability === "speech")) return;
    try {
      const voices = await apiJson("/v1/audio/voices");
      fillSelect($("voice-voice"), [...new Set(voices.data.map((v) => v.id))], "alloy");
    } catch {
      // the speech panel shows this error; the session then uses its default voice
    }
  });

  const state = (text) => { $("voice-state").textContent = text; };
  const send = (event) => ws?.readyState === WebSocket.OPEN && ws.send(JSON.stringify(event));

  function line(role, text) {
    const body = el("div", { class: "body", text });
    const node = el("div", { class: `msg ${role}` }, el("div", { class: "who", text: role }), body);
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return body;
  }

  function stopPlayback() {
    for (const source of playing) {
      try { source.stop(); } catch { /* already ended */ }
    }
    playing = [];
    playAt = 0;
  }

  function play(base64) {
    const pcm = new Int16Array(fromBase64(base64));
    if (!pcm.length || !ctx) return;
    const buffer = ctx.createBuffer(1, pcm.length, RATE);
    const samples = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    playAt = Math.max(playAt, ctx.currentTime + 0.05);
    source.start(playAt);
    playAt += buffer.duration;
    playing.push(source);
    heard += buffer.duration;
    source.addEventListener("ended", () => { playing = playing.filter((s) => s !== source); });
  }

  function setMic(on) {
    micOn = on && Boolean(mic);
    $("voice-mic").setAttribute("aria-pressed", String(micOn));
    $("voice-mic").textContent = micOn ? "Microphone on" : "Microphone off";
    if (!micOn) $("voice-level").value = 0;
  }

  async function startMic() {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
      await ctx.audioWorklet.addModule("/playground/pcm-worklet.js");
      const node = new AudioWorkletNode(ctx, "pcm16-capture");
      node.port.onmessage = ({ data }) => {
        if (!micOn) return;
        $("voice-level").value = Math.min(1, data.level * 4);
        send({ type: "input_audio_buffer.append", audio: toBase64(data.pcm) });
      };
      ctx.createMediaStreamSource(stream).connect(node);
      mic = { stream, node };
      $("voice-mic").disabled = false;
      setMic(true);
    } catch (error) {
      showError($("voice-error"), new Error(`Microphone: ${error.message}. You can still type.`));
    }
  }

  function handle(event) {
    switch (event.type) {
      case "session.created":
        state("Connected");
        break;
      case "session.updated":
        state(micOn ? "Listening — speak" : "Connected — type a message");
        break;
      case "input_audio_buffer.speech_started":
        stopPlayback(); // the server cancels the answer it was giving
        state("Hearing you…");
        break;
      case "input_audio_buffer.speech_stopped":
        state("Thinking…");
        break;
      case "conversation.item.input_audio_transcription.completed":
        line("user", event.transcript);
        break;
      case "response.created":
        answer = line("assistant", "");
        heard = 0;
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        if (!answer) answer = line("assistant", "");
        answer.textContent += event.delta;
        log.scrollTop = log.scrollHeight;
        break;
      case "response.output_audio.delta":
        play(event.delta);
        break;
      case "response.done": {
        const r = event.response;
        const notes = [r.status === "completed" ? "" : (r.status_details?.reason || r.status),
          heard ? `${heard.toFixed(1)} s of audio` : ""].filter(Boolean);
        if (answer && notes.length) {
          answer.after(el("div", { class: "meta", text: notes.join(" · ") }));
        }
        answer = null;
        state(micOn ? "Listening — speak" : "Connected");
        break;
      }
      case "error":
        showError($("voice-error"), new Error(event.error?.message || "error"));
        break;
      default:
        break;
    }
  }

  function connected(on) {
    $("voice-connect").disabled = on;
    $("voice-hangup").disabled = !on;
    $("voice-text").disabled = !on;
    $("voice-send").disabled = !on;
    if (!on) $("voice-mic").disabled = true;
  }

  async function connect() {
    showError($("voice-error"), null);
    connected(true);
    try {
      await apiJson("/v1/models"); // asks for a key first when the server wants one
    } catch (error) {
      showError($("voice-error"), error);
      connected(false);
      return;
    }
    ctx = new AudioContext();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const model = encodeURIComponent($("voice-model").value);
    const key = getKey();
    const protocols = ["realtime", ...(key ? [`openai-insecure-api-key.${key}`] : [])];
    let opened = false;
    state("Connecting…");
    const socket = new WebSocket(`${scheme}://${location.host}/v1/realtime?model=${model}`,
      protocols);
    ws = socket;
    socket.addEventListener("open", () => {
      opened = true;
      const spoken = $("voice-modality").value === "audio";
      send({ type: "session.update", session: {
        type: "realtime",
        instructions: $("voice-instructions").value,
        output_modalities: [spoken ? "audio" : "text"],
        audio: {
          input: { format: { type: "audio/pcm", rate: RATE },
            turn_detection: { type: "server_vad", create_response: true, interrupt_response: true } },
          output: { format: { type: "audio/pcm", rate: RATE }, voice: $("voice-voice").value || "alloy" },
        },
      } });
      startMic();
    });
    socket.addEventListener("message", ({ data }) => {
      if (socket !== ws) return;
      try {
        handle(JSON.parse(data));
      } catch (error) {
        showError($("voice-error"), error);
      }
    });
    socket.addEventListener("close", (event) => {
      if (socket !== ws) return; // ended here: hangup() has tidied up already
      const why = event.reason || (opened ? `closed (${event.code})`
        : "could not connect (the key, the server's log, or its WebSocket limits)");
      state(`Not connected: ${why}`);
      hangup(false);
    });
  }

  function hangup(closeSocket = true) {
    if (closeSocket && ws) ws.close(1000, "bye");
    ws = null;
    stopPlayback();
    if (mic) {
      for (const track of mic.stream.getTracks()) track.stop();
      mic.node.disconnect();
      mic = null;
    }
    setMic(false);
    ctx?.close();
    ctx = null;
    answer = null;
    connected(false);
  }

  $("voice-connect").addEventListener("click", connect);
  $("voice-hangup").addEventListener("click", () => { hangup(); state("Not connected"); });
  $("voice-mic").addEventListener("click", () => setMic(!micOn));
  $("voice-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("voice-text").value.trim();
    if (!text) return;
    $("voice-text").value = "";
    line("user", text);
    stopPlayback();
    send({ type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] } });
    send({ type: "response.create" });
  });
  return {};
}
