// Chat panel: streamed /v1/chat/completions, rendered as Markdown while it arrives, with a
// stop button, usage and speed, tool calls as they happen, and images for models that see.

import { $, api, el, fillSelect, sse } from "./api.js";
import { renderMarkdown } from "./markdown.js";

const SAMPLE_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city.",
    parameters: {
      type: "object",
      properties: { city: { type: "string", description: "The city, e.g. Paris" } },
      required: ["city"],
    },
  },
};

const sees = (model) => Boolean(model && (model.vision
  || (model.input_modalities || []).includes("image")));

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function initChat(served) {
  const log = $("chat-log");
  const history = []; // what is sent again with the next question
  let controller = null;

  function current() {
    return served.of("chat").find((m) => m.id === $("chat-model").value);
  }

  function modelChanged() {
    const model = current();
    $("chat-tools").disabled = !model?.tools;
    if (!model?.tools) $("chat-tools").value = "";
    $("chat-images").hidden = !sees(model);
  }

  served.onChange(() => {
    const chat = served.of("chat").map((m) => m.id);
    fillSelect($("chat-model"), chat, "smollm2-135m-instruct");
    modelChanged();
  });
  $("chat-model").addEventListener("change", modelChanged);

  function bubble(role, text) {
    const body = el("div", { class: "body" });
    const node = el("div", { class: `msg ${role}` }, el("div", { class: "who", text: role }), body);
    if (text !== undefined) body.textContent = text;
    log.append(node);
    log.scrollTop = log.scrollHeight;
    return { node, body };
  }

  async function userContent(text) {
    const files = sees(current()) ? [...$("chat-image").files] : [];
    if (!files.length) return text;
    const parts = [{ type: "text", text }];
    for (const file of files) {
      parts.push({ type: "image_url", image_url: { url: await readAsDataUrl(file) } });
    }
    return parts;
  }

  async function send() {
    const text = $("chat-input").value.trim();
    if (!text || controller) return;
    $("chat-input").value = "";
    const content = await userContent(text);
    history.push({ role: "user", content });
    const shown = bubble("user", text);
    if (Array.isArray(content)) {
      for (const part of content.slice(1)) {
        shown.body.append(el("img", { src: part.image_url.url, alt: "attached image", class: "thumb" }));
      }
      $("chat-image").value = "";
    }
    const answer = bubble("assistant");
    answer.node.classList.add("streaming");
    const system = $("chat-system").value.trim();
    const request = {
      model: $("chat-model").value,
      messages: [...(system ? [{ role: "system", content: system }] : []), ...history],
      stream: true,
      stream_options: { include_usage: true },
      temperature: Number($("chat-temperature").value),
      max_tokens: Number($("chat-max-tokens").value),
    };
    if ($("chat-tools").value) {
      request.tools = [SAMPLE_TOOL];
      request.tool_choice = $("chat-tools").value;
    }

    controller = new AbortController();
    $("chat-stop").disabled = false;
    $("chat-send").disabled = true;
    $("chat-stats").textContent = "";
    let textSoFar = "";
    let thinking = "";
    let thinkingNode = null;
    const calls = [];
    let usage = null;
    let finish = null;
    let frame = 0;
    const started = performance.now();
    let firstAt = null;
    const paint = () => {
      frame = 0;
      answer.body.innerHTML = renderMarkdown(textSoFar);
      log.scrollTop = log.scrollHeight;
    };
    try {
      const response = await api("/v1/chat/completions", { json: request, signal: controller.signal });
      for await (const event of sse(response)) {
        if (event === "[DONE]") break;
        if (event.error) throw new Error(event.error.message || JSON.stringify(event.error));
        if (event.usage) usage = event.usage;
        for (const choice of event.choices || []) {
          const delta = choice.delta || {};
          if (firstAt === null && (delta.content || delta.reasoning_content || delta.tool_calls)) {
            firstAt = performance.now();
          }
          if (delta.reasoning_content) {
            thinking += delta.reasoning_content;
            if (!thinkingNode) {
              thinkingNode = el("pre", { class: "thinking" });
              answer.node.insertBefore(el("details", {}, el("summary", { text: "Thinking" }), thinkingNode), answer.body);
            }
            thinkingNode.textContent = thinking;
          }
          if (delta.content) {
            textSoFar += delta.content;
            if (!frame) frame = requestAnimationFrame(paint);
          }
          for (const call of delta.tool_calls || []) {
            const slot = calls[call.index] ??= { id: "", name: "", arguments: "", node: null };
            if (call.id) slot.id = call.id;
            if (call.function?.name) slot.name += call.function.name;
            if (call.function?.arguments) slot.arguments += call.function.arguments;
            if (!slot.node) {
              slot.node = el("div", { class: "tool-call" });
              answer.node.append(slot.node);
            }
            slot.node.textContent = `Tool call: ${slot.name}(${slot.arguments})`;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    } catch (error) {
      if (error.name === "AbortError") finish = "stopped";
      else answer.node.append(el("div", { class: "error", role: "alert", text: error.message }));
    } finally {
      if (frame) cancelAnimationFrame(frame);
      paint();
      answer.node.classList.remove("streaming");
      controller = null;
      $("chat-stop").disabled = true;
      $("chat-send").disabled = false;
    }
    if (textSoFar || calls.length) {
      const message = { role: "assistant", content: textSoFar };
      history.push(message);
    }
    const ended = performance.now();
    const parts = [];
    if (finish) parts.push(finish === "stopped" ? "stopped" : `finish: ${finish}`);
    if (usage) {
      parts.push(`${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`);
      if (firstAt !== null && usage.completion_tokens > 1 && ended > firstAt) {
        parts.push(`${((usage.completion_tokens - 1) / ((ended - firstAt) / 1000)).toFixed(1)} tokens/s`);
      }
    }
    if (firstAt !== null) parts.push(`first token ${((firstAt - started) / 1000).toFixed(2)} s`);
    $("chat-stats").textContent = parts.join(" · ");
    answer.node.append(el("div", { class: "meta", text: parts.join(" · ") }));
  }

  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("chat-stop").addEventListener("click", () => controller?.abort());
  $("chat-clear").addEventListener("click", () => {
    controller?.abort();
    history.length = 0;
    log.replaceChildren();
    $("chat-stats").textContent = "";
  });
  return {};
}
