// The matcalc page: each button posts to the JSON API and shows the reply. No eval, no outside scripts.
"use strict";

const $ = (id) => document.getElementById(id);
let last = null; // the last successful /api/diff reply and its request

function request() {
  const where = $("where").value.trim();
  const body = { expr: $("expr").value, wrt: $("wrt").value.trim(), kind: $("kind").value };
  if (where) body.where = where;
  if (body.kind !== "hessian") body.layout = $("layout").value;
  return body;
}

async function post(endpoint, body) {
  document.body.dataset.busy = "true";
  try {
    const response = await fetch("/api/" + endpoint, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let payload;
    try { payload = await response.json(); } catch (e) {
      payload = { error: { type: "BadReply", summary: "the server's reply is not JSON (" + response.status + ")" } };
    }
    return { ok: response.ok, status: response.status, payload };
  } catch (e) {
    return { ok: false, status: 0, payload: { error: { type: "Network", summary: "the server cannot be reached" } } };
  } finally {
    document.body.dataset.busy = "false";
  }
}

function showError(error) {
  $("error").hidden = false;
  $("error-summary").textContent = error.summary || error.message || "error";
  $("error-caret").textContent = error.caret || "";
  $("error-caret").hidden = !error.caret;
  $("error-hint").textContent = error.hint || "";
  $("error-hint").hidden = !error.hint;
  $("error").scrollIntoView({ block: "nearest" });
}

function clearError() { $("error").hidden = true; }

function setMath(element, mathml, text) {
  // the MathML comes from the server's renderer, built from the parsed expression (names escaped)
  element.textContent = "";
  if (mathml) {
    const doc = new DOMParser().parseFromString(mathml, "application/xml");
    if (!doc.querySelector("parsererror")) {
      element.appendChild(document.importNode(doc.documentElement, true));
      return;
    }
  }
  const code = document.createElement("code");
  code.textContent = text;
  element.appendChild(code);
}

function showGraph(svg) {
  // the program's computation graph, drawn by the server (render/graph.py: names and lines escaped)
  const box = $("graph");
  box.textContent = "";
  box.hidden = !svg;
  $("graph-heading").hidden = !svg;
  if (!svg) return;
  const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
  if (!doc.querySelector("parsererror")) box.appendChild(document.importNode(doc.documentElement, true));
}

function one(payload) {
  // several variables: the reply has one record per gradient; the page shows the first one's forms
  return payload.gradients ? Object.values(payload.gradients)[0] : payload;
}

function showResult(payload) {
  $("output").hidden = false;
  const first = one(payload);
  setMath($("result"), payload.gradients ? payload.mathml : first.mathml, payload.text);
  showGraph(payload.graph || first.graph || "");
  $("result").dataset.kind = payload.kind || "";
  $("result-text").textContent = payload.text;
  const select = $("form");
  const forms = first.forms || {};
  const chosen = select.value;
  select.textContent = "";
  for (const name of Object.keys(forms)) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.appendChild(option);
  }
  if (chosen && forms[chosen]) select.value = chosen;
  showForm();
  showSteps(payload.steps || []);
}

function showForm() {
  const first = last && one(last.payload);
  const form = first && first.forms && first.forms[$("form").value];
  $("form-text").textContent = form ? form.text : "";
}

function showSteps(steps) {
  const list = $("steps");
  list.textContent = "";
  let section = null;
  for (const step of steps) {
    if (step.section && step.section !== section) {
      section = step.section;
      const head = document.createElement("li");
      head.className = "section";
      head.textContent = section;
      list.appendChild(head);
    }
    const item = document.createElement("li");
    item.className = "step";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = (step.section ? "" : step.title + ": ");
    const code = document.createElement("code");
    code.textContent = step.line || step.text;
    item.append(title, code);
    if (step.rules && step.rules.length) {
      const rules = document.createElement("div");
      rules.className = "rules";
      rules.textContent = "by " + step.rules.join(", ");
      item.appendChild(rules);
    }
    list.appendChild(item);
  }
}

async function differentiate() {
  const body = request();
  body.steps = $("steps-method").value;
  $("go").disabled = true;
  const reply = await post("diff", body);
  $("go").disabled = false;
  if (!reply.ok) {
    showError(reply.payload.error || {});
    $("output").hidden = true;
    last = null;
    return;
  }
  clearError();
  last = { request: body, payload: reply.payload };
  $("verdict").hidden = true;
  $("verification").hidden = true;
  showResult(reply.payload);
  await code();
}

async function steps() {
  if (!last) return;
  const body = { ...last.request, steps: $("steps-method").value };
  const reply = await post("diff", body);
  if (!reply.ok) { showError(reply.payload.error || {}); return; }
  clearError();
  last = { request: body, payload: reply.payload };
  showSteps(reply.payload.steps || []);
}

async function code() {
  if (!last) return;
  const body = { expr: last.request.expr, wrt: last.request.wrt, backend: $("code-backend").value };
  if (last.request.where) body.where = last.request.where;
  if (last.request.kind === "hessian") body.kind = "hessian";
  else if (last.request.layout) body.layout = last.request.layout;
  const reply = await post("code", body);
  $("code").textContent = reply.ok ? reply.payload.code : "# " + ((reply.payload.error || {}).summary || "no code");
  $("code").dataset.backend = body.backend;
}

// A proof's request with "stream": true: newline-delimited JSON, {"progress": "..."} while the proof works, then
// {"status": N, "reply": {...}}. A request refused before any work is a plain JSON error.
async function postStreamed(endpoint, body, onProgress) {
  document.body.dataset.busy = "true";
  try {
    const response = await fetch("/api/" + endpoint, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...body, stream: true }),
    });
    if (!(response.headers.get("content-type") || "").startsWith("application/x-ndjson")) {
      let payload;
      try { payload = await response.json(); } catch (e) {
        payload = { error: { type: "BadReply", summary: "the server's reply is not JSON (" + response.status + ")" } };
      }
      return { ok: response.ok, status: response.status, payload };
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffered += decoder.decode(value || new Uint8Array(), { stream: !done });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        if (line.progress !== undefined) onProgress(line.progress);
        else return { ok: line.status < 400, status: line.status, payload: line.reply };
      }
      if (done) break;
    }
    return { ok: false, status: 0, payload: { error: { type: "BadReply", summary: "the server's reply ended early" } } };
  } catch (e) {
    return { ok: false, status: 0, payload: { error: { type: "Network", summary: "the server cannot be reached" } } };
  } finally {
    document.body.dataset.busy = "false";
  }
}

function showProgress(element, text) {
  element.hidden = false;
  element.textContent = "proving: " + text;
  element.dataset.seen = String(Number(element.dataset.seen || 0) + 1); // how many it showed (kept for tests)
}

async function check() {
  if (!last) await differentiate();
  if (!last) return;
  const body = { expr: last.request.expr, wrt: last.request.wrt, candidate: $("candidate").value };
  if (last.request.where) body.where = last.request.where;
  if (last.request.kind === "hessian") body.hessian_of = true;
  else if (last.request.layout) body.layout = last.request.layout;
  $("check").disabled = true;
  const progress = $("check-progress");
  const reply = await postStreamed("check", body, (text) => showProgress(progress, text));
  progress.hidden = true;
  $("check").disabled = false;
  const verdict = $("verdict");
  verdict.hidden = false;
  verdict.textContent = "";
  if (!reply.ok) {
    verdict.className = "verdict error";
    verdict.dataset.verdict = "error";
    showErrorIn(verdict, reply.payload.error || {});
    return;
  }
  const result = reply.payload;
  verdict.className = "verdict " + result.verdict;
  verdict.dataset.verdict = result.verdict;
  const lines = result.message.split("\n");
  const head = document.createElement("p");
  head.id = "verdict-text";
  head.textContent = lines[0];
  verdict.appendChild(head);
  if (lines.length > 1) {
    const detail = document.createElement("pre");
    detail.id = "counterexample";
    detail.textContent = lines.slice(1).join("\n");
    verdict.appendChild(detail);
  }
}

function showErrorIn(element, error) {
  const summary = document.createElement("p");
  summary.textContent = error.summary || error.message || "error";
  element.appendChild(summary);
  if (error.caret) {
    const caret = document.createElement("pre");
    caret.textContent = error.caret;
    element.appendChild(caret);
  }
  if (error.hint) {
    const hint = document.createElement("p");
    hint.textContent = error.hint;
    element.appendChild(hint);
  }
}

async function verify() {
  if (!last) return;
  $("verify").disabled = true;
  const out = $("verification");
  out.hidden = false;
  out.textContent = "proving…";
  out.dataset.verified = "";
  const reply = await postStreamed("verify", { ...last.request }, (text) => showProgress($("proof-progress"), text));
  $("proof-progress").hidden = true;
  $("verify").disabled = false;
  if (!reply.ok) { out.textContent = (reply.payload.error || {}).summary || "error"; out.dataset.verified = "error"; return; }
  const p = reply.payload;
  const record = one(p);
  out.textContent = record.verification || (p.verified ? "verified" : "not verified");
  out.dataset.verified = String(p.verified !== undefined ? p.verified : record.verified);
}

async function copy() {
  const text = $("code").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) { // no clipboard permission (plain http, some browsers): select the text instead
    const range = document.createRange();
    range.selectNodeContents($("code"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { document.execCommand("copy"); } catch (ignored) { /* selected: the user can copy */ }
  }
  $("copy").textContent = "Copied";
  $("copy").dataset.copied = "true";
  setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  $("input").addEventListener("submit", (event) => { event.preventDefault(); differentiate(); });
  $("expr").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); differentiate(); }
  });
  $("form").addEventListener("change", showForm);
  $("steps-method").addEventListener("change", steps);
  $("code-backend").addEventListener("change", code);
  $("check").addEventListener("click", check);
  $("verify").addEventListener("click", verify);
  $("copy").addEventListener("click", copy);
  document.body.dataset.ready = "true";
});
