// The web chat: streams answers from /v1/chat/completions (server-sent events), with PAD's parameters in the
// request's "pad" object; compares PAD with vanilla side by side; the token view colours each token by the
// reward PAD gave it (pad.diagnostics) and shows, on hover, the candidates it was chosen from.
//
// URL parameters fill the form, and autorun=1 sends the prompt on load (for links and the browser test):
//   /?prompt=Tell+me+about+owls&principles=humorous,concise&compare=1&tokens=1&max_tokens=32&autorun=1
// document.body.dataset.state goes loading -> ready -> running -> done (or error, also when stopped).
// Answers are rendered as Markdown; each answer's element keeps the text as the model wrote it in data-text.
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
    option.textContent = prm.has_adapter ? prm.name : `${prm.name} (no adapter)`;
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
  if (mode === "pad" || mode === "genarm") {
    pad.beta = Number($("beta").value);
    pad.reward_model = $("reward-model").value;
  }
  return pad;
}

function label(mode) {
  const names = principles().map((p) => p.text).join(", ");
  if (mode === "vanilla") return "Vanilla";
  const name = { pad: "PAD", genarm: "GenARM", preference_prompt: "Preference prompt" }[mode];
  return `${name} (${names || "no principles"})`;
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

// --- Markdown ----------------------------------------------------------------------------------------------
// A small, conservative subset: paragraphs and line breaks, **bold**, *italic*, `code`, fenced code blocks,
// bullet and numbered lists, headings (# to ###), --- rules and [links](https://...). Model text only ever
// becomes text nodes, never HTML, and a link only gets an http(s) address, so an answer cannot add elements,
// run scripts or link to javascript:. Every character shown is a slice source[start, end) that appendText
// adds, so the token view can wrap each slice in the spans of the tokens it came from.

const FENCE = /^([ \t]*)(`{3,}|~{3,})/;
const HEADING = /^[ \t]{0,3}(#{1,3})[ \t]+/;
const RULE = /^[ \t]{0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const LIST_ITEM = /^([ \t]*)([-*+]|(\d{1,9})[.)])[ \t]+/;
const WORD_CHAR = /[\p{L}\p{N}]/u;

function webAddress(url) {
  if (!/^https?:\/\//i.test(url)) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function renderMarkdown(parent, source, appendText = (into, start, end) => into.append(source.slice(start, end))) {
  const lines = [];
  for (let start = 0; ;) {
    const end = source.indexOf("\n", start);
    lines.push({ start, text: source.slice(start, end < 0 ? source.length : end) });
    if (end < 0) break;
    start = end + 1;
  }
  let paragraph = null;  // the element that the next plain line continues, after a line break
  const lists = [];      // the open lists, outermost first: { element, indent, ordered }
  const add = (into, tag) => into.appendChild(document.createElement(tag));
  // A block indented under an open list's item goes into that item; any other closes the lists.
  const containerFor = (indent) => {
    while (lists.length && indent <= lists[lists.length - 1].indent) lists.pop();
    return lists.length ? lists[lists.length - 1].element.lastElementChild : parent;
  };
  const lineText = (into, line, from) => {
    const trimmed = line.text.trimEnd();
    const skip = from + /^[ \t]*/.exec(trimmed.slice(from))[0].length;
    inline(into, line.start + skip, line.start + trimmed.length);
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.text.trim()) {
      paragraph = null;
      continue;
    }
    const indent = /^[ \t]*/.exec(line.text)[0].length;
    let match;
    if ((match = FENCE.exec(line.text))) {
      const marker = match[2];
      const closing = new RegExp(`^[ \\t]*${marker[0] === "`" ? "`" : "~"}{${marker.length},}[ \\t]*$`);
      let close = i + 1;
      while (close < lines.length && !closing.test(lines[close].text)) close++;
      // Unclosed (still streaming): the block runs to the end.
      const start = i + 1 < lines.length ? lines[i + 1].start : source.length;
      const end = close < lines.length ? lines[close].start - 1 : source.length;
      const code = add(add(containerFor(indent), "pre"), "code");
      if (end > start) appendText(code, start, end);
      paragraph = null;
      i = close;
    } else if ((match = HEADING.exec(line.text))) {
      lists.length = 0;
      lineText(add(parent, `h${match[1].length + 2}`), line, match[0].length);  // # is h3: below the page's own
      paragraph = null;
    } else if (RULE.test(line.text)) {
      lists.length = 0;
      add(parent, "hr");
      paragraph = null;
    } else if ((match = LIST_ITEM.exec(line.text))) {
      const ordered = match[3] !== undefined;
      let list = lists[lists.length - 1];
      while (list && (indent < list.indent || (indent === list.indent && list.ordered !== ordered))) {
        lists.pop();
        list = lists[lists.length - 1];
      }
      if (!list || indent > list.indent) {
        const element = add(list ? list.element.lastElementChild : parent, ordered ? "ol" : "ul");
        if (ordered && Number(match[3]) !== 1) element.start = Number(match[3]);
        lists.push(list = { element, indent, ordered });
      }
      paragraph = add(list.element, "li");
      lineText(paragraph, line, match[0].length);
    } else if (paragraph) {
      paragraph.append(document.createElement("br"));
      lineText(paragraph, line, 0);
    } else {
      paragraph = add(containerFor(indent), "p");
      lineText(paragraph, line, 0);
    }
  }

  // Spans within one line: code first (nothing inside it is Markdown), then emphasis and links.
  function runLength(at, end) {
    let run = 1;
    while (at + run < end && source[at + run] === source[at]) run++;
    return run;
  }

  function codeSpan(at, end) {
    const run = runLength(at, end);
    for (let k = at + run; k < end;) {
      if (source[k] !== "`") { k++; continue; }
      const closing = runLength(k, end);
      if (closing === run) {
        const code = document.createElement("code");
        appendText(code, at + run, k);
        return { node: code, end: k + run };
      }
      k += closing;
    }
    return { node: null, end: at + run };  // unmatched backticks are text
  }

  function emphasis(at, end) {
    const char = source[at];
    const run = runLength(at, end);
    const opens = run <= 3 && at + run < end && !/\s/.test(source[at + run])
      && (char === "*" || at === 0 || !WORD_CHAR.test(source[at - 1]));  // snake_case is not emphasis
    for (let k = at + run; opens && k < end;) {
      if (source[k] === "`") { k = codeSpan(k, end).end; continue; }
      if (source[k] !== char) { k++; continue; }
      const closing = runLength(k, end);
      if (closing === run && !/\s/.test(source[k - 1]) && (char === "*" || !WORD_CHAR.test(source[k + run] || ""))) {
        const outer = document.createElement(run === 1 ? "em" : "strong");
        const inner = run === 3 ? outer.appendChild(document.createElement("em")) : outer;
        inline(inner, at + run, k);
        return { node: outer, end: k + run };
      }
      k += closing;
    }
    return { node: null, end: at + run };
  }

  function link(at, end) {
    const labelEnd = source.indexOf("]", at + 1);
    if (labelEnd < 0 || labelEnd + 1 >= end || source[labelEnd + 1] !== "(") return null;
    const urlEnd = source.indexOf(")", labelEnd + 2);
    if (urlEnd < 0 || urlEnd >= end) return null;
    const url = source.slice(labelEnd + 2, urlEnd);
    const href = /\s/.test(url) ? null : webAddress(url);
    if (!href) return null;  // shown as the text it is
    const anchor = Object.assign(document.createElement("a"), { href, target: "_blank", rel: "noopener noreferrer" });
    inline(anchor, at + 1, labelEnd);
    return { node: anchor, end: urlEnd + 1 };
  }

  function inline(into, start, end) {
    let plain = start;  // where the text not yet added begins
    for (let at = start; at < end;) {
      const char = source[at];
      const span = char === "`" ? codeSpan(at, end) : char === "*" || char === "_" ? emphasis(at, end)
        : char === "[" ? link(at, end) : null;
      if (!span || !span.node) {
        at = span ? span.end : at + 1;
        continue;
      }
      if (at > plain) appendText(into, plain, at);
      into.append(span.node);
      at = plain = span.end;
    }
    if (end > plain) appendText(into, plain, end);
  }
}

// --- Rendering ---------------------------------------------------------------------------------------------

function messageElement(parent, role, who) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  const header = Object.assign(document.createElement("span"), { className: "who", textContent: who });
  const content = Object.assign(document.createElement("div"), { className: "content" });
  const stats = Object.assign(document.createElement("span"), { className: "stats" });
  element.append(header, content, stats);
  parent.append(element);
  return { element, content, stats };
}

// `text`: the part of the token's text shown here (Markdown markers are not, and a token can span lines).
function tokenSpan(token, text) {
  const span = document.createElement("span");
  span.className = "tok" + (token.changed_top_choice ? " changed" : "");
  span.textContent = text;
  const strength = Math.min(1, Math.abs(token.reward) / 2) * 0.55;
  if (token.reward > 0.01) span.style.background = `rgba(22, 163, 74, ${strength})`;
  if (token.reward < -0.01) span.style.background = `rgba(220, 38, 38, ${strength})`;
  span.addEventListener("mouseenter", (event) => showCandidates(event, token));
  span.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  return span;
}

function answerView(parent, mode) {
  const who = label(mode);
  const { element, content, stats } = messageElement(parent, "assistant", who);
  // From send to the first token, so that a slow start does not look like nothing is happening.
  const thinking = Object.assign(document.createElement("div"), { className: "thinking", textContent: "Thinking…" });
  thinking.setAttribute("role", "status");
  thinking.setAttribute("aria-live", "polite");
  content.before(thinking);
  element.setAttribute("aria-busy", "true");
  const started = performance.now();
  let firstToken = null;
  let reason = "";
  let tokens = 0;
  let changed = 0;
  let text = "";
  const tokenRanges = [];  // the token view's tokens, each with where its text lies in `text`: { token, start, end }
  let renderTimer = null;
  const scroll = () => { $("conversation").scrollTop = $("conversation").scrollHeight; };

  // Wraps text[start, end) in the spans of the tokens it came from.
  const appendTokens = (into, start, end) => {
    let low = 0;
    let high = tokenRanges.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (tokenRanges[middle].end <= start) low = middle + 1; else high = middle;
    }
    let at = start;
    for (let i = low; i < tokenRanges.length && tokenRanges[i].start < end; i++) {
      const from = Math.max(tokenRanges[i].start, start);
      const to = Math.min(tokenRanges[i].end, end);
      if (from > at) into.append(text.slice(at, from));
      if (to > from) into.append(tokenSpan(tokenRanges[i].token, text.slice(from, to)));
      at = Math.max(at, to);
    }
    if (end > at) into.append(text.slice(at, end));
  };
  // The whole answer again, as its Markdown can change with every token (a list, the end of **bold**).
  const render = () => {
    clearTimeout(renderTimer);
    renderTimer = null;
    content.replaceChildren();
    renderMarkdown(content, text, tokenRanges.length ? appendTokens : undefined);
    element.dataset.text = text;
    scroll();
  };

  return {
    get text() { return text; },
    append(delta, diagnostics) {
      if (diagnostics) {
        let at = text.length;
        for (const token of diagnostics) {
          const end = Math.min(at + token.text.length, text.length + delta.length);
          tokenRanges.push({ token, start: at, end });
          at = end;
          tokens += 1;
          changed += token.changed_top_choice ? 1 : 0;
        }
      }
      text += delta;
      if (!delta && !(diagnostics && diagnostics.length)) return;
      if (firstToken === null) {
        firstToken = performance.now();
        thinking.remove();
      }
      // At most one render per 50 ms: each is of the whole answer.
      if (renderTimer === null) renderTimer = setTimeout(render, 50);
    },
    finish(finishReason) { reason = finishReason; },
    usage(usage) {
      const seconds = (performance.now() - (firstToken || started)) / 1000;
      const parts = [`${usage.completion_tokens} tokens`, `${(usage.completion_tokens / Math.max(seconds, 1e-3)).toFixed(1)} tokens/s`,
        `first token ${((firstToken || started) - started).toFixed(0)} ms`, `finish: ${reason}`];
      if (tokens && (mode === "pad" || mode === "genarm")) {
        parts.push(`${mode === "pad" ? "PAD" : "GenARM"} changed ${changed} of ${tokens} top choices`);
      }
      stats.textContent = parts.join(" · ");
    },
    // The answer has ended: rendered in full, and marked if it was stopped or failed (error: what threw).
    close(error) {
      thinking.remove();
      element.removeAttribute("aria-busy");
      render();
      if (!error) return;
      const stopped = error.name === "AbortError";
      const mark = Object.assign(document.createElement("div"), { className: stopped ? "mark" : "mark error",
        textContent: stopped ? "(stopped)" : `(error: ${error.message})` });
      stats.before(mark);
    },
    // A failed turn that the next requests will not carry: said so, as it stays on the page.
    leaveOut() {
      element.querySelector(".mark").textContent += " — left out of the conversation";
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
  const views = modes.map((m) => answerView(answers, m));
  const results = await Promise.allSettled(views.map((view, i) => streamAnswer(messages, modes[i], view,
    state.controller.signal)));
  results.forEach((result, i) => views[i].close(result.status === "rejected" ? result.reason : null));
  // The conversation goes on from the last answer (PAD's when comparing). A stopped answer stays in it as far as
  // it got, as in other chat UIs, so the next request carries what the page shows. A failed turn is left out:
  // the model never answered it, and the user is likely to send it again.
  const last = results[results.length - 1];
  const lastView = views[views.length - 1];
  if (last.status === "fulfilled") {
    state.history.push({ role: "assistant", content: last.value });
  } else if (last.reason.name === "AbortError") {
    if (lastView.text) state.history.push({ role: "assistant", content: lastView.text });
  } else {
    state.history.pop();
    lastView.leaveOut();
    turn.classList.add("left-out");
    answers.classList.add("left-out");
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
    // While an answer streams, Enter leaves the text in the box, unsent, for the user to send once it has ended.
    if (state.controller || !text.trim()) return;
    $("input").value = "";
    send(text);
  };
  $("input").onkeydown = (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();  // else the newline lands in the box just emptied, and starts the next prompt
    $("composer").requestSubmit();
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
