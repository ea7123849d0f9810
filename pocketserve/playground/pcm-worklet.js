// AudioWorklet: the microphone, resampled to 24 kHz mono PCM16 (what /v1/realtime takes),
// posted to the page in 100 ms chunks together with their loudness.

const RATE = 24000;
const CHUNK = RATE / 10;

class Pcm16Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / RATE; // input samples per output sample
    this.t = 0; // position of the next output sample, in input samples of this block
    this.prev = 0; // the previous block's last sample, x[-1]
    this.out = new Int16Array(CHUNK);
    this.n = 0;
    this.energy = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input || !input.length) return true;
    const last = input.length - 1;
    let t = this.t;
    while (t < last) {
      const i = Math.floor(t);
      const a = i < 0 ? this.prev : input[i];
      const v = a + (input[i + 1] - a) * (t - i);
      const s = Math.max(-1, Math.min(1, v));
      this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      this.energy += s * s;
      if (this.n === CHUNK) {
        this.port.postMessage({ pcm: this.out.buffer, level: Math.sqrt(this.energy / CHUNK) },
          [this.out.buffer]);
        this.out = new Int16Array(CHUNK);
        this.n = 0;
        this.energy = 0;
      }
      t += this.step;
    }
    this.t = t - input.length;
    this.prev = input[last];
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
