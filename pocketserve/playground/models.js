// Models panel: what is served (/v1/models with /admin/models' memory and load), load and
// unload by hand, and live figures read from /metrics every two seconds while it is shown.

import { $, api, apiJson, el, showError } from "./api.js";

const POLL_MS = 2000;
const HISTORY = 60; // points on the chart: two minutes

/** Prometheus text: the sum of every sample of `name`, whatever its labels, but those
 * containing `unless` (so this page's own polls of /metrics are not counted as traffic). */
function total(text, name, unless) {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (unless && line.includes(unless)) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

function drawChart(canvas, points) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const style = getComputedStyle(canvas);
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = style.getPropertyValue("--grid").trim() || "#ccc";
  ctx.lineWidth = 1;
  for (let y = 0; y <= 4; y++) {
    ctx.beginPath();
    ctx.moveTo(0, (y * (height - 1)) / 4 + 0.5);
    ctx.lineTo(width, (y * (height - 1)) / 4 + 0.5);
    ctx.stroke();
  }
  const series = [
    ["tps", style.getPropertyValue("--tps").trim() || "#06c"],
    ["busy", style.getPropertyValue("--queue").trim() || "#c60"],
  ];
  ctx.font = "12px system-ui, sans-serif";
  series.forEach(([key, color], n) => {
    const top = Math.max(1, ...points.map((p) => p[key]));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = (i / (HISTORY - 1)) * width;
      const y = height - 4 - (p[key] / top) * (height - 20);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.fillText(`max ${top.toFixed(key === "tps" ? 1 : 0)}`, 6 + n * 90, 14);
  });
}

export function initModels(served) {
  const tbody = $("models-table").querySelector("tbody");
  let timer = null;
  let last = null;
  let polls = 0;
  const points = [];

  async function render(models) {
    let admin = {};
    try {
      const states = await apiJson("/admin/models");
      admin = Object.fromEntries(states.data.map((s) => [s.id, s]));
      showError($("models-error"), null);
    } catch (error) {
      showError($("models-error"), error);
    }
    tbody.replaceChildren(...models.map((m) => {
      const state = admin[m.id] || {};
      const busy = state.in_flight === undefined ? "–"
        : `${state.in_flight} running, ${state.queued} queued`;
      const action = el("button", { type: "button", class: "secondary small" });
      const loaded = m.state === "ready" || m.state === "loading";
      action.textContent = loaded ? "Unload" : "Load";
      action.setAttribute("aria-label", `${action.textContent} ${m.id}`);
      action.addEventListener("click", async () => {
        action.disabled = true;
        try {
          await api(`/admin/models/${encodeURIComponent(m.id)}/${loaded ? "unload" : "load"}`,
            { method: "POST" });
        } catch (error) {
          showError($("models-error"), error);
        }
        served.refresh();
      });
      const name = el("td", {}, el("strong", { text: m.id }));
      if (m.aliases?.length) name.append(el("div", { class: "aliases", text: m.aliases.join(", ") }));
      const stateCell = el("td", {}, el("span", { class: `state ${m.state}`, text: m.state }));
      if (m.error) stateCell.append(el("div", { class: "error", text: m.error }));
      const memory = state.memory_mb ? `${state.memory_mb.toFixed(0)} MB` : "–";
      const extra = [m.capability, m.tools ? "tools" : "", m.dimensions ? `${m.dimensions} dims` : ""]
        .filter(Boolean).join(" · ");
      return el("tr", {}, name, el("td", { text: extra }), stateCell,
        el("td", { text: memory }), el("td", { text: busy }),
        el("td", { text: m.context_length ? String(m.context_length) : "–" }),
        el("td", {}, action));
    }));
  }

  async function poll() {
    polls += 1;
    if (polls % 5 === 0) served.refresh(); // states and memory change too: every 10 s
    try {
      const text = await (await api("/metrics")).text();
      const now = performance.now();
      const sample = {
        t: now,
        tokens: total(text, "pocketserve_output_tokens_total"),
        requests: total(text, "pocketserve_requests_total", 'route="/metrics"'),
        queue: total(text, "pocketserve_queue_depth"),
        inflight: total(text, "pocketserve_in_flight"),
      };
      if (last) {
        const dt = (now - last.t) / 1000;
        const tps = Math.max(0, (sample.tokens - last.tokens) / dt);
        const rps = Math.max(0, (sample.requests - last.requests) / dt);
        points.push({ tps, busy: sample.queue + sample.inflight });
        if (points.length > HISTORY) points.shift();
        $("fig-tps").textContent = tps.toFixed(1);
        $("fig-rps").textContent = rps.toFixed(2);
        drawChart($("metrics-chart"), points);
      }
      $("fig-inflight").textContent = String(sample.inflight);
      $("fig-queue").textContent = String(sample.queue);
      $("fig-total").textContent = String(sample.requests);
      last = sample;
      showError($("metrics-error"), null);
    } catch (error) {
      showError($("metrics-error"), error);
    }
  }

  served.onChange(render);
  $("models-refresh").addEventListener("click", () => served.refresh());
  return {
    visible(shown) {
      clearInterval(timer);
      timer = null;
      if (shown) {
        poll();
        timer = setInterval(poll, POLL_MS);
      }
    },
  };
}
