// The ask page: posts to /ask and /feedback on the same origin. Every string from the server or the user is put
// into the page with textContent or as an attribute, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { queryId: null, busy: false, rating: null };
// Timestamps for the browser test (first answer visible after submit), in performance.now() milliseconds.
window.tqaTimings = { submitted: 0, shown: 0 };

function setStatus(el, text, kind) {
  el.textContent = text;
  el.className = el.className.replace(/\b(ok|error)\b/g, "").trim();
  if (kind) el.classList.add(kind);
}

async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const message = (data && (data.error || data.detail)) || `The server answered ${response.status}.`;
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return data;
}

function safeUrl(url) {
  return typeof url === "string" && /^https:\/\/[^\s]+$/.test(url) ? url : null;
}

function sourceLabel(s) {
  if (s.kind === "commit" || s.kind === "diff") return `commit ${String(s.commit).slice(0, 10)}${s.path ? " " + s.path : ""}`;
  if (s.kind === "pr" && s.pr != null) return `PR #${s.pr}`;
  if (s.kind === "issue" && s.issue != null) return `issue #${s.issue}`;
  return s.start_line ? `${s.path}:${s.start_line}-${s.end_line}` : s.path;
}

function renderAnswer(el, text, count) {
  // "[3]" in the answer becomes a link to source 3; everything else stays text.
  el.replaceChildren();
  const parts = String(text).split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    if (m && Number(m[1]) >= 1 && Number(m[1]) <= count) {
      const a = document.createElement("a");
      a.href = `#source-${m[1]}`;
      a.className = "cite";
      a.textContent = `[${m[1]}]`;
      a.addEventListener("click", (ev) => { ev.preventDefault(); openSource(Number(m[1])); });
      el.append(a);
    } else if (part) {
      el.append(document.createTextNode(part));
    }
  }
}

function renderSources(list, sources, excerpts) {
  list.replaceChildren();
  for (const s of sources) {
    const li = document.createElement("li");
    li.id = `source-${s.n}`;
    const head = document.createElement("div");
    head.className = "src-head";
    const n = document.createElement("span");
    n.className = "src-n";
    n.textContent = `[${s.n}]`;
    const kind = document.createElement("span");
    kind.className = "src-kind";
    kind.textContent = s.kind;
    const url = safeUrl(s.url);
    const link = document.createElement(url ? "a" : "span");
    link.className = "src-link";
    link.textContent = sourceLabel(s);
    if (url) { link.href = url; link.target = "_blank"; link.rel = "noopener noreferrer"; }
    head.append(n, kind, link);
    if (s.symbol) {
      const sym = document.createElement("span");
      sym.className = "src-symbol";
      sym.textContent = s.symbol;
      head.append(sym);
    }
    li.append(head);
    const text = excerpts && excerpts[String(s.n)];
    if (text) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = "Show cited text";
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = text;
      pre.append(code);
      details.append(summary, pre);
      li.append(details);
    }
    list.append(li);
  }
}

function openSource(n) {
  const li = $(`source-${n}`);
  if (!li) return;
  const details = li.querySelector("details");
  if (details) details.open = true;
  li.classList.add("flash");
  setTimeout(() => li.classList.remove("flash"), 1200);
  li.scrollIntoView({ block: "nearest" });
  (li.querySelector("summary") || li.querySelector("a") || li).focus();
}

async function ask(question) {
  if (state.busy) return;
  const text = question.trim();
  if (!text) { setStatus($("status"), "Type a question first.", "error"); return; }
  state.busy = true;
  $("ask-button").disabled = true;
  window.tqaTimings = { submitted: performance.now(), shown: 0 };
  setStatus($("status"), "Searching the repository…");
  try {
    const data = await postJSON("/ask", { question: text, k: 5, excerpts: true });
    show(data);
    window.tqaTimings.shown = performance.now();
    setStatus($("status"), "");
  } catch (err) {
    setStatus($("status"), err.message, "error");
  } finally {
    state.busy = false;
    $("ask-button").disabled = false;
  }
}

function show(data) {
  state.queryId = data.query_id;
  state.rating = null;
  const result = $("result");
  result.hidden = false;
  result.classList.toggle("is-abstained", Boolean(data.abstained));
  result.dataset.queryId = data.query_id;
  $("abstained").hidden = !data.abstained;
  renderAnswer($("answer"), data.answer, data.sources.length);
  const ms = data.timings_ms && data.timings_ms.total_ms;
  const bits = [`confidence ${Number(data.confidence).toFixed(2)}`, `answered by ${data.answerer}`];
  if (data.fallback) bits.push(`fallback: ${data.fallback}`);
  if (ms) bits.push(`${Math.round(ms)} ms`);
  $("meta").textContent = bits.join(" · ");
  $("sources-title").hidden = data.sources.length === 0;
  renderSources($("sources"), data.sources, data.excerpts || {});
  $("correction-form").hidden = true;
  $("comment").value = "";
  $("correction").value = "";
  $("thumb-up").setAttribute("aria-pressed", "false");
  $("thumb-down").setAttribute("aria-pressed", "false");
  setStatus($("feedback-status"), "");
}

async function sendFeedback(rating) {
  if (!state.queryId) return;
  const body = { query_id: state.queryId, rating };
  if (rating === "down") {
    const comment = $("comment").value.trim();
    const correction = $("correction").value.trim();
    if (comment) body.comment = comment;
    if (correction) body.correction = correction;
  }
  setStatus($("feedback-status"), "Saving…");
  try {
    const saved = await postJSON("/feedback", body);
    state.rating = rating;
    $("thumb-up").setAttribute("aria-pressed", String(rating === "up"));
    $("thumb-down").setAttribute("aria-pressed", String(rating === "down"));
    const review = saved.review === "pending" ? " Your correction is waiting for review." : "";
    setStatus($("feedback-status"), `Recorded, thank you.${review}`, "ok");
    $("correction-form").hidden = true;
  } catch (err) {
    setStatus($("feedback-status"), err.message, "error");
  }
}

function thumbDown() {
  if (!state.queryId) return;
  $("thumb-down").setAttribute("aria-pressed", "true");
  $("thumb-up").setAttribute("aria-pressed", "false");
  $("correction-form").hidden = false;
  setStatus($("feedback-status"), "Tell us what was wrong, or just send.");
  $("comment").focus();
}

function typing(el) {
  return el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT" || el.isContentEditable);
}

document.addEventListener("DOMContentLoaded", () => {
  const q = $("question");
  $("ask-form").addEventListener("submit", (ev) => { ev.preventDefault(); ask(q.value); });
  q.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); ask(q.value); }
  });
  $("thumb-up").addEventListener("click", () => sendFeedback("up"));
  $("thumb-down").addEventListener("click", thumbDown);
  $("correction-form").addEventListener("submit", (ev) => { ev.preventDefault(); sendFeedback("down"); });
  $("correction-form").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); sendFeedback("down"); }
    if (ev.key === "Escape") { $("correction-form").hidden = true; $("thumb-down").focus(); }
  });
  document.addEventListener("keydown", (ev) => {
    if (typing(document.activeElement) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "/") { ev.preventDefault(); q.focus(); q.select(); }
    else if (ev.key === "+" && state.queryId) { ev.preventDefault(); sendFeedback("up"); }
    else if (ev.key === "-" && state.queryId) { ev.preventDefault(); thumbDown(); }
    else if (/^[1-9]$/.test(ev.key) && state.queryId) { openSource(Number(ev.key)); }
  });
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) { q.value = initial; ask(initial); } else { q.focus(); }
});
