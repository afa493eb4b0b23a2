// The web chat: streams answers from /v1/chat/completions (server-sent events), with PAD's parameters in the
// request's "pad" object; compares PAD with vanilla side by side; the token view colours each token by the
// reward PAD gave it (pad.diagnostics) and shows, on hover, the candidates it was chosen from.
//
// URL parameters fill the form, and autorun=1 sends the prompt on load (for links and the browser test):
//   /?prompt=Tell+me+about+owls&principles=humorous,concise&compare=1&tokens=1&max_tokens=32&autorun=1
// document.body.dataset.state goes loading -> ready -> running -> done (or error).
"use strict";

const PRESETS = ["humorous", "concise", "harmless", "positive", "brief", "safe", "cheerful"];
const $ = (id) => document.getElementById(id);
const state = { model: null, history: [], controller: null };

function setState(name) { document.body.dataset.state = name; }

function requestHeaders() {
  const headers = { "Content-Type": "application/json" };
  const token = $("api-token").value.trim();
  if (token) headers.Authorization = "Bearer " + token;
  return headers;
}

async function errorMessage(response) {
  const body = await response.json().catch(() => null);
  return body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: requestHeaders() });
  if (!response.ok) throw new Error(await errorMessage(response));
  const model = (await response.json()).data[0];
  state.model = model.id;
  $("model").textContent = model.id;
  const select = $("reward-model");
  select.replaceChildren();
  for (const prm of model.pad.reward_models) {
    const option = document.createElement("option");
    option.value = prm.name;
    option.textContent = prm.adapter ? prm.name : `${prm.name} (no adapter)`;
    select.append(option);
  }
  $("top-k").max = model.pad.limits.max_top_k;
  $("max-tokens").max = model.pad.limits.max_new_tokens;
}

// --- The preference panel ----------------------------------------------------------------------------------

function addPrinciple(text = "", weight = "") {
  const row = document.createElement("div");
  row.className = "principle";
  const textInput = Object.assign(document.createElement("input"), { type: "text", value: text,
    placeholder: "a principle, e.g. humorous" });
  const weightInput = Object.assign(document.createElement("input"), { type: "number", step: "0.1",
    value: weight, placeholder: "w", title: "weight (weighted composition)" });
  const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "×",
    title: "remove" });
  remove.onclick = () => row.remove();
  row.append(textInput, weightInput, remove);
  $("principles").append(row);
}

function principles() {
  return [...document.querySelectorAll(".principle")]
    .map((row) => ({ text: row.children[0].value.trim(), weight: row.children[1].value }))
    .filter((p) => p.text);
}

function padParameters(mode) {
  const pad = { mode, top_k: Number($("top-k").value), diagnostics: $("token-view").checked };
  if (mode === "vanilla") return pad;
  const list = principles();
  pad.principles = list.map((p) => p.text);
  pad.composition = $("composition").value;
  if (pad.composition === "weighted" && list.some((p) => p.weight !== "")) {
    pad.weights = list.map((p) => (p.weight === "" ? 1 : Number(p.weight)));
  }
  if (mode === "pad") {
    pad.beta = Number($("beta").value);
    pad.reward_model = $("reward-model").value;
  }
  return pad;
}

function label(mode) {
  const names = principles().map((p) => p.text).join(", ");
  if (mode === "vanilla") return "Vanilla";
  return `${mode === "pad" ? "PAD" : "Preference prompt"} (${names || "no principles"})`;
}

// --- Streaming ---------------------------------------------------------------------------------------------

async function streamAnswer(messages, mode, view, signal) {
  const body = { model: state.model, messages, stream: true, stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value), temperature: Number($("temperature").value),
    frequency_penalty: Number($("frequency-penalty").value), pad: padParameters(mode) };
  const response = await fetch("/v1/chat/completions", { method: "POST", headers: requestHeaders(),
    body: JSON.stringify(body), signal });
  if (!response.ok) throw new Error(await errorMessage(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice("data: ".length);
      if (data === "[DONE]") return text;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) view.usage(chunk.usage);
      for (const choice of chunk.choices) {
        const delta = choice.delta.content || "";
        text += delta;
        view.append(delta, chunk.pad ? chunk.pad.tokens : null);
        if (choice.finish_reason) view.finish(choice.finish_reason);
      }
    }
  }
}

// --- Rendering ---------------------------------------------------------------------------------------------

function messageElement(parent, role, who) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  const header = Object.assign(document.createElement("span"), { className: "who", textContent: who });
  const content = Object.assign(document.createElement("span"), { className: "content" });
  const stats = Object.assign(document.createElement("span"), { className: "stats" });
  element.append(header, content, stats);
  parent.append(element);
  return { element, content, stats };
}

function tokenSpan(token) {
  const span = document.createElement("span");
  span.className = "tok" + (token.changed_top_choice ? " changed" : "");
  span.textContent = token.text;
  const strength = Math.min(1, Math.abs(token.reward) / 2) * 0.55;
  if (token.reward > 0.01) span.style.background = `rgba(22, 163, 74, ${strength})`;
  if (token.reward < -0.01) span.style.background = `rgba(220, 38, 38, ${strength})`;
  span.addEventListener("mouseenter", (event) => showCandidates(event, token));
  span.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  return span;
}

function answerView(parent, mode) {
  const who = label(mode);
  const { content, stats } = messageElement(parent, "assistant", who);
  const started = performance.now();
  let firstToken = null;
  let reason = "";
  let tokens = 0;
  let changed = 0;
  const scroll = () => { $("conversation").scrollTop = $("conversation").scrollHeight; };
  return {
    append(delta, diagnostics) {
      if (firstToken === null) firstToken = performance.now();
      if (diagnostics) {
        for (const token of diagnostics) {
          content.append(tokenSpan(token));
          tokens += 1;
          changed += token.changed_top_choice ? 1 : 0;
        }
      } else if (delta) {
        content.append(document.createTextNode(delta));
      }
      scroll();
    },
    finish(finishReason) { reason = finishReason; },
    usage(usage) {
      const seconds = (performance.now() - (firstToken || started)) / 1000;
      const parts = [`${usage.completion_tokens} tokens`, `${(usage.completion_tokens / Math.max(seconds, 1e-3)).toFixed(1)} tokens/s`,
        `first token ${((firstToken || started) - started).toFixed(0)} ms`, `finish: ${reason}`];
      if (tokens && mode === "pad") parts.push(`PAD changed ${changed} of ${tokens} top choices`);
      stats.textContent = parts.join(" · ");
    },
    fail(message) {
      content.append(Object.assign(document.createElement("span"), { className: "error", textContent: ` [${message}]` }));
    },
  };
}

function showCandidates(event, token) {
  if (!token.candidates) return;
  const tooltip = $("tooltip");
  const rows = token.candidates.map((id, i) => ({ id, text: token.candidate_texts[i], logit: token.policy_logits[i],
    reward: token.rewards[i], score: token.scores[i], rank: i }));
  rows.sort((a, b) => b.score - a.score);
  const table = document.createElement("table");
  const head = table.insertRow();
  for (const name of ["candidate", "policy rank", "logit", "reward", "score"]) {
    head.append(Object.assign(document.createElement("th"), { textContent: name }));
  }
  for (const row of rows) {
    const tr = table.insertRow();
    if (row.id === token.id) tr.className = "chosen";
    for (const value of [JSON.stringify(row.text), row.rank + 1, row.logit.toFixed(2), row.reward.toFixed(3),
      row.score.toFixed(2)]) {
      tr.insertCell().textContent = value;
    }
  }
  tooltip.replaceChildren(table);
  tooltip.hidden = false;
  const x = Math.min(event.clientX + 12, window.innerWidth - tooltip.offsetWidth - 8);
  const y = event.clientY + 16 + tooltip.offsetHeight > window.innerHeight ? event.clientY - tooltip.offsetHeight - 8
    : event.clientY + 16;
  tooltip.style.left = `${x}px`;
  tooltip.style.top = `${y}px`;
}

// --- Sending -----------------------------------------------------------------------------------------------

async function send(text) {
  if (!text.trim() || state.controller) return;
  setState("running");
  state.history.push({ role: "user", content: text });
  const turn = document.createElement("div");
  turn.className = "turn";
  messageElement(turn, "user", "You").content.textContent = text;
  $("conversation").append(turn);

  const mode = $("mode").value;
  const modes = $("compare").checked ? ["vanilla", mode] : [mode];
  const answers = document.createElement("div");
  answers.className = "turn" + (modes.length > 1 ? " compare" : "");
  $("conversation").append(answers);
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  $("status").textContent = "";
  const messages = state.history.slice();
  const results = await Promise.allSettled(modes.map((m) => {
    const view = answerView(answers, m);
    return streamAnswer(messages, m, view, state.controller.signal).catch((error) => {
      view.fail(error.name === "AbortError" ? "stopped" : error.message);
      throw error;
    });
  }));
  // The conversation goes on from the last answer (PAD's when comparing).
  const last = results[results.length - 1];
  if (last.status === "fulfilled") {
    state.history.push({ role: "assistant", content: last.value });
  } else {
    state.history.pop();
  }
  state.controller = null;
  $("send").disabled = false;
  $("stop").disabled = true;
  setState(results.every((r) => r.status === "fulfilled") ? "done" : "error");
}

// --- Start -------------------------------------------------------------------------------------------------

function applyUrlParameters(params) {
  for (const text of (params.get("principles") || "").split(",").filter(Boolean)) addPrinciple(text.trim());
  const fields = { mode: "mode", composition: "composition", beta: "beta", top_k: "top-k",
    temperature: "temperature", frequency_penalty: "frequency-penalty", max_tokens: "max-tokens",
    token: "api-token", reward_model: "reward-model" };
  for (const [name, id] of Object.entries(fields)) {
    if (params.has(name)) $(id).value = params.get(name);
  }
  if (params.has("compare")) $("compare").checked = params.get("compare") === "1";
  if (params.has("tokens")) $("token-view").checked = params.get("tokens") === "1";
  if (params.has("prompt")) $("input").value = params.get("prompt");
}

async function start() {
  for (const preset of PRESETS) {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: preset });
    button.onclick = () => addPrinciple(preset);
    $("presets").append(button);
  }
  $("add-principle").onclick = () => addPrinciple();
  $("beta").oninput = () => { $("beta-value").textContent = Number($("beta").value).toFixed(1); };
  $("composer").onsubmit = (event) => {
    event.preventDefault();
    const text = $("input").value;
    $("input").value = "";
    send(text);
  };
  $("input").onkeydown = (event) => {
    if (event.key === "Enter" && !event.shiftKey) $("composer").requestSubmit();
  };
  $("stop").onclick = () => state.controller && state.controller.abort();
  $("clear").onclick = () => { state.history = []; $("conversation").replaceChildren(); };
  $("api-token").value = localStorage.getItem("pad-api-token") || "";
  $("api-token").onchange = () => {
    localStorage.setItem("pad-api-token", $("api-token").value.trim());
    loadModels().catch((error) => { $("model").textContent = error.message; });
  };

  const params = new URLSearchParams(location.search);
  const rewardModel = params.get("reward_model");
  params.delete("reward_model");  // applied once the models are listed
  applyUrlParameters(params);
  if (!document.querySelector(".principle")) addPrinciple("humorous");
  $("beta-value").textContent = Number($("beta").value).toFixed(1);
  try {
    await loadModels();
  } catch (error) {
    $("model").textContent = `cannot list the models: ${error.message}`;
    setState("error");
    return;
  }
  if (rewardModel) $("reward-model").value = rewardModel;
  setState("ready");
  if (params.get("autorun") === "1") {
    const text = $("input").value;
    $("input").value = "";
    await send(text);
  }
}

start();
