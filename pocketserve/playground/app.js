// The playground's entry: tabs, the list of served models every panel picks from, the key.

import { $, apiJson, askKey, getKey } from "./api.js";
import { initChat } from "./chat.js";
import { initModels } from "./models.js";
import { initRank } from "./rank.js";
import { initStt } from "./stt.js";
import { initTts } from "./tts.js";
import { initVoice } from "./voice.js";

const TABS = ["models", "chat", "stt", "tts", "voice", "rank"];
const panels = {};

/** Everything /v1/models lists; each panel is told when it changes. */
const served = {
  models: [],
  listeners: [],
  of(capability) {
    return this.models.filter((m) => m.capability === capability);
  },
  onChange(listener) {
    this.listeners.push(listener);
  },
  async refresh() {
    const status = $("server-status");
    try {
      this.models = (await apiJson("/v1/models")).data;
      const ready = this.models.filter((m) => m.state === "ready").length;
      status.textContent = `${ready} of ${this.models.length} models ready`
        + (getKey() ? " · key set" : "");
      status.classList.remove("bad");
    } catch (error) {
      status.textContent = error.message;
      status.classList.add("bad");
    }
    for (const listener of this.listeners) listener(this.models);
  },
};

function showTab(name, focus = false) {
  if (!TABS.includes(name)) name = "models";
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const selected = tab === name;
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
    panels[tab]?.visible?.(selected);
  }
  if (focus) $(`tab-${name}`).focus();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

function initTabs() {
  for (const tab of TABS) {
    $(`tab-${tab}`).addEventListener("click", () => showTab(tab));
    // Arrow keys move between tabs, as in any tab list.
    $(`tab-${tab}`).addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      const edge = { Home: 0, End: TABS.length - 1 }[event.key];
      if (step === undefined && edge === undefined) return;
      event.preventDefault();
      const index = edge ?? (TABS.indexOf(tab) + step + TABS.length) % TABS.length;
      showTab(TABS[index], true);
    });
  }
  window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
}

function main() {
  initTabs();
  panels.models = initModels(served);
  panels.chat = initChat(served);
  panels.stt = initStt(served);
  panels.tts = initTts(served);
  panels.voice = initVoice(served);
  panels.rank = initRank(served);
  $("key-button").addEventListener("click",
    () => askKey("Set the API key this page sends with every call."));
  document.addEventListener("keychange", () => served.refresh());
  showTab(location.hash.slice(1) || "models");
  served.refresh();
}

main();
