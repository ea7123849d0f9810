// The page's only way to the server: the public API, with the user's key when there is one.
// A 401 opens the key dialog and the call is tried again with the key typed there.

const KEY_NAME = "pocketserve.apiKey";

export const $ = (id) => document.getElementById(id);

export function getKey() {
  return localStorage.getItem(KEY_NAME) || "";
}

function setKey(key) {
  if (key) localStorage.setItem(KEY_NAME, key);
  else localStorage.removeItem(KEY_NAME);
  document.dispatchEvent(new CustomEvent("keychange"));
}

/** An answer that was not 2xx, with the message of OpenAI's error envelope when it has one. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let pending = null; // one dialog at a time; concurrent 401s wait on the same answer

/** Ask for a key; resolves true when one was saved. */
export function askKey(reason) {
  if (pending) return pending;
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason || "This server asks for an API key.";
  $("key-input").value = getKey();
  pending = new Promise((resolve) => {
    const done = (saved) => {
      $("key-form").removeEventListener("submit", onSave);
      $("key-cancel").removeEventListener("click", onCancel);
      $("key-forget").removeEventListener("click", onForget);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      pending = null;
      resolve(saved);
    };
    const onSave = (event) => {
      event.preventDefault();
      setKey($("key-input").value.trim());
      done(Boolean(getKey()));
    };
    const onCancel = (event) => { event.preventDefault(); done(false); };
    const onForget = () => { setKey(""); done(false); };
    $("key-form").addEventListener("submit", onSave);
    $("key-cancel").addEventListener("click", onCancel);
    $("key-forget").addEventListener("click", onForget);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    $("key-input").focus();
  });
  return pending;
}

async function errorOf(response) {
  const text = await response.text();
  let body = null;
  let message = text || `${response.status} ${response.statusText}`;
  try {
    body = JSON.parse(text);
    const error = body.error ?? body;
    if (typeof error === "string") message = error;
    else if (error && error.message) message = error.message;
  } catch {
    // not JSON: the text itself is the message
  }
  return new ApiError(response.status, `${response.status}: ${message}`, body);
}

/**
 * fetch() against this server: `json` is sent as a JSON body; a 401 asks for a key and tries
 * again; any other non-2xx answer throws an ApiError carrying the server's own message.
 */
export async function api(path, { method, json, body, signal, headers } = {}) {
  for (;;) {
    const sent = new Headers(headers);
    const key = getKey();
    if (key) sent.set("Authorization", `Bearer ${key}`);
    let payload = body;
    if (json !== undefined) {
      sent.set("Content-Type", "application/json");
      payload = JSON.stringify(json);
    }
    const response = await fetch(path, {
      method: method || (payload === undefined ? "GET" : "POST"),
      headers: sent, body: payload, signal, cache: "no-store",
    });
    if (response.ok) return response;
    const error = await errorOf(response);
    if (response.status === 401 && (await askKey(error.message))) continue;
    throw error;
  }
}

export async function apiJson(path, options) {
  return (await api(path, options)).json();
}

/** The events of a server-sent-event answer: parsed JSON of each `data:` line, or "[DONE]". */
export async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      yield data === "[DONE]" ? data : JSON.parse(data);
    }
  }
}

/** Show an error (or hide the element when `error` is null). */
export function showError(element, error) {
  element.hidden = !error;
  element.textContent = error ? (error.message || String(error)) : "";
}

/** Fill a <select> with model ids, keeping the choice when it is still there. */
export function fillSelect(select, values, preferred) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  const pick = [keep, preferred].find((v) => v && values.includes(v));
  if (pick) select.value = pick;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}
