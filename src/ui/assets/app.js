// faultline web page. Every piece of span content is untrusted: it is only ever put in
// the page as text (textContent / attribute values set through the DOM), never as HTML.
"use strict";

const main = document.getElementById("main");
const statusEl = document.getElementById("status");

// ---- DOM helpers -------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "onclick") el.addEventListener("click", v);
    else if (k === "onchange") el.addEventListener("change", v);
    // Styles go through the CSSOM, which the Content-Security-Policy allows, unlike
    // style attributes.
    else if (k === "style") for (const [prop, val] of Object.entries(v)) el.style.setProperty(prop, val);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function setMain(...nodes) {
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function fmtPct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (x === 0) return "0%";
  return (100 * x).toFixed(Math.abs(x) < 0.1 ? 2 : 1) + "%";
}

// A duration as a person writes it: "0.42 ms", "8.5 ms", "850 ms", "2.3 s", "36.7 s",
// "2 min 5 s", "1 h 4 min".
function fmtDur(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return "–";
  ms = Math.max(0, Number(ms));
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 10) return ms.toFixed(1) + " ms";
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = ms / 1000;
  if (s < 60) return (Number.isInteger(s) ? String(s) : s.toFixed(1)) + " s";
  const m = Math.floor(s / 60);
  const rest = Math.round(s - 60 * m);
  if (m < 60) return m + " min" + (rest ? " " + rest + " s" : "");
  return Math.floor(m / 60) + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
}

function fmtMs(ns) {
  return fmtDur(Number(ns) / 1e6);
}

function nanosToMs(ns) {
  return Number(BigInt(ns) / 1000000n);
}

function fmtTime(ns) {
  if (!ns) return "–";
  const d = new Date(nanosToMs(ns));
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

const pad2 = (n) => String(n).padStart(2, "0");

// A wall-clock time (ms) in the browser's time zone, to the second.
function fmtLocal(ms) {
  const d = new Date(ms);
  return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
    pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
}

// Both clocks, for hover text: "2026-12-07 11:05:00 local · 2026-12-07 10:05:00 UTC".
function fmtBoth(ms) {
  return fmtLocal(ms) + " local · " + new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "") + " UTC";
}

// A tick label of a time axis, in local time: minutes for spans over two minutes.
function fmtTick(ms, spanMs) {
  const d = new Date(ms);
  const hm = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
  return spanMs > 120e3 ? hm : hm + ":" + pad2(d.getSeconds());
}

// Tick positions: about `n` round steps over [lo, hi].
function niceStep(range, n) {
  const raw = range / Math.max(n, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// Round time steps (ms) for a wall-clock axis.
const TIME_STEPS = [1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 3 * 3600e3, 6 * 3600e3];
function timeTicks(from, to, n) {
  const step = TIME_STEPS.find((s) => (to - from) / s <= n) || TIME_STEPS[TIME_STEPS.length - 1];
  // Aligned in local time, so labels read 11:00, 11:15, ...
  const offset = new Date(from).getTimezoneOffset() * 60e3;
  const ticks = [];
  for (let t = Math.ceil((from - offset) / step) * step + offset; t <= to; t += step) ticks.push(t);
  return ticks;
}

// ---- one colour per step, the same in every view ------------------------------------

// The single palette: built-in steps get fixed colours, distinct from each other on the
// dark background; custom steps get one of the extra colours by a hash of their name.
const STEP_COLORS = {
  agent: "#9ca3af", planner: "#c084fc", retriever: "#38bdf8", reranker: "#2dd4bf",
  embedding: "#a3e635", generator: "#818cf8", critic: "#fb923c", tool: "#facc15",
  guardrail: "#f472b6", router: "#4ade80", memory: "#d6a77a", chain: "#e5e7eb",
};
const EXTRA_COLORS = ["#fca5a5", "#67e8f9", "#bef264", "#fdba74", "#f9a8d4", "#a5b4fc", "#fde68a", "#86efac"];

function stepColor(step) {
  if (STEP_COLORS[step]) return STEP_COLORS[step];
  let hash = 0;
  for (const c of String(step)) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return EXTRA_COLORS[hash % EXTRA_COLORS.length];
}

// A step name with its colour swatch.
function stepLabel(step, extra) {
  return h("span", { class: "step-label" },
    h("span", { class: "swatch", style: { background: stepColor(step) } }), step, extra || null);
}

function outcomeBadge(o) {
  return h("span", { class: "badge outcome-" + o }, o);
}

// ---- routing: the whole view state lives in the URL hash ---------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = (path || "overview").split("/").map(decodeURIComponent);
  return { view: parts[0] || "overview", arg: parts[1], params: new URLSearchParams(query || "") };
}

function go(view, arg, params) {
  let hash = "#/" + encodeURIComponent(view);
  if (arg) hash += "/" + encodeURIComponent(arg);
  const q = params ? params.toString() : "";
  if (q) hash += "?" + q;
  if (location.hash !== hash) location.hash = hash;
  else render();
}

async function api(path) {
  const resp = await fetch(path, { headers: { accept: "application/json" } });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : resp.status + " " + resp.statusText;
    throw new Error(msg);
  }
  return body;
}

function showError(e) {
  setMain(h("p", { class: "error" }, "Error: " + e.message));
}

const views = {};

async function render() {
  const route = parseHash();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === route.view ||
      (route.view === "trajectory" && a.dataset.view === "trajectories"));
  }
  const view = views[route.view] || views.overview;
  try {
    await view(route);
  } catch (e) {
    showError(e);
  }
}

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", render);

// ---- trajectories ------------------------------------------------------------------

const LIST_FILTERS = ["outcome", "step", "finding_kind", "root_cause_step", "q", "service", "session_id"];

views.trajectories = async (route) => {
  const params = new URLSearchParams(route.params);
  if (!params.has("limit")) params.set("limit", "50");
  const data = await api("/api/v1/trajectories?" + params.toString());
  const controls = h("div", { class: "controls" });
  const inputs = {};
  for (const f of LIST_FILTERS) {
    let input;
    if (f === "outcome") {
      input = h("select", { "aria-label": f },
        h("option", { value: "" }, "any outcome"),
        ...["failed", "recovered", "success"].map((o) => h("option", { value: o }, o)));
      input.value = route.params.get(f) || "";
    } else {
      input = h("input", { placeholder: f.replace(/_/g, " "), size: 14, "aria-label": f });
      input.value = route.params.get(f) || "";
    }
    inputs[f] = input;
    controls.appendChild(input);
  }
  controls.appendChild(h("button", {
    onclick: () => {
      const p = new URLSearchParams();
      for (const [k, el] of Object.entries(inputs)) if (el.value) p.set(k, el.value);
      go("trajectories", null, p);
    },
  }, "Filter"));
  // The CLI's `faultline trajectories` shows the same columns in the same order, sorted
  // the same way: by end time, newest first (the API's default), or as `sort` / `order`
  // say; the sorted column is marked ↓ (descending) or ↑. A click on the end or duration
  // header sorts by it (descending first, then the other way).
  const sort = params.get("sort") === "duration" ? "duration" : "end";
  const order = params.get("order") === "asc" ? "asc" : "desc";
  const sortHead = (column, label, cls) => {
    const active = column === sort;
    const next = new URLSearchParams(route.params);
    next.set("sort", column);
    next.set("order", active && order === "desc" ? "asc" : "desc");
    next.delete("cursor");
    return h("th", { class: cls || "", "data-sort": column, "aria-sort": active ? (order === "asc" ? "ascending" : "descending") : "none" },
      h("a", { href: "#/trajectories?" + next.toString() }, label + (active ? (order === "asc" ? " ↑" : " ↓") : "")));
  };
  const rows = (data.trajectories || []).map((t) =>
    h("tr", { class: "link", onclick: () => go("trajectory", t.trace_id), "data-trace": t.trace_id },
      h("td", { class: "mono", title: t.trace_id }, h("a", { href: "#/trajectory/" + encodeURIComponent(t.trace_id) }, t.trace_id.slice(0, 12) + "…")),
      h("td", { class: "nowrap", title: fmtBoth(nanosToMs(t.end_unix_nano)) }, fmtTime(t.end_unix_nano)),
      h("td", { class: "num nowrap" }, fmtMs(t.end_unix_nano - t.start_unix_nano)),
      h("td", {}, h("div", { class: "badges" }, outcomeBadge(t.outcome),
        t.complete === false ? h("span", { class: "badge muted", title: "released before it was known to be complete" }, "incomplete") : null,
        t.pending ? h("span", { class: "badge pending", title: "inside the late-data grace: listed here, counted on the overview once the grace ends" }, "pending") : null)),
      h("td", { title: t.root_cause_step ? t.root_cause_step + " · " + t.root_cause_kind : "" }, h("div", { class: "clip wide" },
        t.root_cause_step ? stepLabel(t.root_cause_step, h("span", { class: "muted" }, " · " + t.root_cause_kind)) : "–")),
      h("td", { class: "reason", title: t.root_cause_reason || "" }, h("div", { class: "clip reason" }, t.root_cause_reason || "–")),
      h("td", { title: t.model || "" }, h("div", { class: "clip" }, t.model || "–")),
      h("td", { class: "num" }, t.span_count),
      h("td", { class: "num" }, t.finding_count),
      h("td", { title: t.service || "" }, h("div", { class: "clip" }, t.service || "–"))));
  const table = h("table", { id: "trajectory-list" },
    h("thead", {}, h("tr", {},
      h("th", {}, "trace id"), sortHead("end", "end"), sortHead("duration", "duration", "num"), h("th", {}, "outcome"),
      h("th", {}, "root cause"), h("th", {}, "reason"), h("th", {}, "model"),
      h("th", { class: "num" }, "spans"), h("th", { class: "num" }, "findings"), h("th", {}, "service"))),
    h("tbody", {}, rows));
  const pager = h("div", { class: "pager" });
  if (data.next_cursor) {
    pager.appendChild(h("button", {
      onclick: () => { const p = new URLSearchParams(route.params); p.set("cursor", data.next_cursor); go("trajectories", null, p); },
    }, "Older →"));
  }
  setMain(h("h1", {}, "Trajectories"), controls,
    h("p", { class: "muted" }, "Newest first by end time (event time, UTC; hover a time for local time)."),
    rows.length ? h("div", { class: "panel" }, table) : h("p", { class: "muted" }, "No trajectories match."),
    pager);
};

// ---- one trajectory ------------------------------------------------------------------

// What each blame rule means, in words (src/attribute/RULES.md).
const RULE_WHY = {
  empty_retrieval_before_bad_answer: "the answer was judged bad and this retriever had returned nothing before it, so the bad answer is traced back here",
  irrelevant_retrieval_before_bad_answer: "the answer was judged bad and the context retrieved before it was judged irrelevant",
  misrouted_before_rejection: "the answer was rejected and this routing call had sent the request the wrong way before it",
  truncated_before_failure: "this step's output was cut off and a later step failed on it",
  invalid_tool_args_blame_planner: "a tool was called with invalid arguments, and this is the planner call that issued the tool call",
  unknown_tool_blames_planner: "a tool that does not exist was called, and this is the planner call that issued it",
  loop_blames_planner: "the run repeated the same action in a loop, and this is the planner call that issued the repeated action",
  tool_own_failure: "the tool failed on its own: no failing step below it explains the error",
  guardrail_tripped_blames_generator: "a guardrail tripped on the answer this generator produced",
  empty_retrieval: "this retriever returned no documents",
  failing_llm_call: "the model call serving this step failed",
  agent_deadline_blames_the_step_that_used_it: "the agent hit its deadline and this step used up the time budget",
  run_deadline_blames_the_step_that_used_it: "the run hit its deadline and this step used up the time budget",
  step_error: "this step raised the earliest error that no failing step below it explains",
  rejection_blames_generator: "a critic or guardrail rejected the answer this generator produced",
  failed_evaluation: "an evaluation of this step's output failed",
  slow_step_before_run_failure: "the run failed with nothing else to explain it, and this step was abnormally slow before it",
  task_failure_blames_generator: "the task's evaluation failed and this generator produced the answer",
  run_failed: "the run failed and no step below explains it",
  any_signal: "no specific rule matched; this is the earliest sign of trouble in data-flow order",
};

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"], v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

// "Why this span" from the attribution evidence: the rule in words, which of several
// look-alike calls it is, and the finding that points at it.
function whyThisSpan(rc, steps) {
  const span = steps.find((s) => s.span_id === rc.span_id);
  const parts = [];
  parts.push((RULE_WHY[rc.rule] || "rule " + rc.rule + " picked it") + ".");
  if (span) {
    const alike = steps.filter((s) => s.name === span.name && s.step === span.step)
      .sort((a, b) => (BigInt(a.start_unix_nano) < BigInt(b.start_unix_nano) ? -1 : 1));
    if (alike.length > 1) {
      const k = alike.findIndex((s) => s.span_id === span.span_id) + 1;
      const own = (rc.evidence || []).find((e) => e.span_id === span.span_id);
      parts.push("It is the " + ordinal(k) + " of " + alike.length + " " + span.step + " calls named “" + span.name + "”" +
        (own ? "; the finding is on this one: " + own.kind + " — " + own.reason + "." :
          "; it is the one the evidence leads to (the earliest unrecovered origin in data-flow order)."));
    }
  }
  const others = (rc.evidence || []).filter((e) => !span || e.span_id !== span.span_id);
  if (others.length) {
    parts.push("Evidence elsewhere: " + others.map((e) => e.step + " " + e.kind).join(", ") + ".");
  }
  return parts.join(" ");
}

views.trajectory = async (route) => {
  const id = route.arg || "";
  const t = await api("/api/v1/trajectories/" + encodeURIComponent(id) + "?attributes=true");
  const steps = t.steps || [];
  const byId = new Map(steps.map((s) => [s.span_id, s]));
  const depth = new Map();
  const depthOf = (s) => {
    // Iterative walk up the parents, bounded by the span count (cycles are broken
    // server-side, but never trust input).
    let d = 0, cur = s, guard = 0;
    while (cur && cur.parent_span_id && byId.has(cur.parent_span_id) && guard++ < steps.length) {
      if (depth.has(cur.parent_span_id)) { d += depth.get(cur.parent_span_id) + 1; break; }
      d += 1; cur = byId.get(cur.parent_span_id);
    }
    return d;
  };
  // Tree order: parents before children, siblings by start time.
  const children = new Map();
  const roots = [];
  for (const s of steps) {
    if (s.parent_span_id && byId.has(s.parent_span_id)) {
      if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
      children.get(s.parent_span_id).push(s);
    } else roots.push(s);
  }
  const ordered = [];
  const stack = roots.slice().reverse().map((s) => [s, 0]);
  const seen = new Set();
  while (stack.length) {
    const [s, d] = stack.pop();
    if (seen.has(s.span_id)) continue;
    seen.add(s.span_id);
    depth.set(s.span_id, d);
    ordered.push(s);
    const kids = (children.get(s.span_id) || []).slice().sort((a, b) => (a.start_unix_nano > b.start_unix_nano ? 1 : -1));
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], d + 1]);
  }
  for (const s of steps) if (!seen.has(s.span_id)) { depth.set(s.span_id, depthOf(s)); ordered.push(s); }

  // A loop, not Math.min(...spread): a spread of 200 000 values overflows V8's stack.
  const start = steps.reduce((m, s) => Math.min(m, Number(s.start_unix_nano)), Infinity);
  const end = steps.reduce((m, s) => Math.max(m, Number(s.end_unix_nano)), -Infinity);
  const total = Math.max(end - start, 1);
  const blamed = t.root_cause ? t.root_cause.span_id : null;
  const detail = h("div", { class: "attrs panel" }, h("p", { class: "muted" }, "Click a span to see its attributes."));
  const findingsBySpan = new Map();
  for (const f of t.findings || []) {
    if (!findingsBySpan.has(f.span_id)) findingsBySpan.set(f.span_id, []);
    findingsBySpan.get(f.span_id).push(f);
  }
  const rowsEl = [];
  const showSpan = (s, row) => {
    for (const r of rowsEl) r.classList.remove("selected");
    row.classList.add("selected");
    const attrRows = Object.entries(s.attributes || {}).map(([k, v]) =>
      h("tr", {}, h("td", {}, k), h("td", {}, typeof v === "string" ? v : JSON.stringify(v))));
    const fs = (findingsBySpan.get(s.span_id) || []).map((f) =>
      h("li", {}, h("b", {}, f.kind), " ", f.propagated ? "(propagated) " : "", f.reason));
    detail.replaceChildren(
      h("h2", {}, s.name),
      h("p", { class: "mono muted" }, "span " + s.span_id + " · step " + s.step + " (" + s.step_source + ") · " +
        fmtMs(s.end_unix_nano - s.start_unix_nano) + " · status " + s.status +
        (s.status_message ? ": " + s.status_message : "")),
      fs.length ? h("ul", {}, fs) : null,
      attrRows.length ? h("table", {}, h("tbody", {}, attrRows)) : h("p", { class: "muted" }, "No attributes."));
  };
  // Time axis of the waterfall: offsets from the run's start; hover a tick for the
  // wall-clock time (local and UTC).
  const startMs = start / 1e6;
  const totalMs = total / 1e6;
  const tickStep = niceStep(totalMs, 6);
  const axis = h("div", { class: "span-row axis", "aria-hidden": "false" },
    h("div", { class: "muted" }, "time since start"), h("span", {}, ""),
    h("div", { class: "track axis-track", id: "waterfall-axis" },
      Array.from({ length: Math.floor(totalMs / tickStep) + 1 }, (_, k) => {
        const off = k * tickStep;
        return h("span", { class: "tick", title: fmtBoth(startMs + off), style: { left: ((100 * off) / totalMs).toFixed(3) + "%" } },
          k === 0 ? "0" : fmtDur(off));
      })),
    h("span", {}, ""));
  const waterfall = h("div", { class: "waterfall panel" }, axis,
    ordered.map((s) => {
      const left = (100 * (Number(s.start_unix_nano) - start)) / total;
      const width = Math.max((100 * (Number(s.end_unix_nano) - Number(s.start_unix_nano))) / total, 0.2);
      const isBlamed = s.span_id === blamed;
      const row = h("div", { class: "span-row" + (isBlamed ? " blamed" : ""), "data-span": s.span_id },
        h("div", { class: "name-cell", style: { "padding-left": Math.min(depth.get(s.span_id) || 0, 40) * 14 + "px" }, title: s.name },
          isBlamed ? h("span", { class: "blamed-tag" }, "blamed") : null, h("span", { class: "name" }, s.name)),
        stepLabel(s.step),
        h("div", { class: "track" }, h("span", {
          // Bars take their step's colour; an error is marked, not painted red, so the
          // blamed span stays the one highlighted thing.
          class: s.status === "error" ? "err" : "",
          title: s.name + " · " + s.step + " · " + fmtMs(s.end_unix_nano - s.start_unix_nano) +
            (s.status === "error" ? " · status error" : "") + " · starts " + fmtBoth(nanosToMs(s.start_unix_nano)),
          style: { left: left.toFixed(3) + "%", width: width.toFixed(3) + "%", background: stepColor(s.step) },
        })),
        h("span", { class: "num muted" }, (s.status === "error" ? "⚠ " : "") + fmtMs(s.end_unix_nano - s.start_unix_nano)));
      row.addEventListener("click", () => showSpan(s, row));
      rowsEl.push(row);
      return row;
    }));

  const anomalies = t.anomalies || [];
  const summary = h("div", { class: "row" },
    h("div", { class: "card" }, h("div", { class: "label" }, "outcome"), h("div", { class: "num" }, outcomeBadge(t.outcome))),
    h("div", { class: "card" }, h("div", { class: "label" }, "service"), h("div", {}, t.service || "–")),
    h("div", { class: "card" }, h("div", { class: "label" }, "session"), h("div", { class: "mono" }, t.session_id || "–")),
    h("div", { class: "card" }, h("div", { class: "label" }, "spans"), h("div", { class: "num" }, steps.length)),
    h("div", { class: "card" }, h("div", { class: "label" }, "duration"), h("div", { class: "num" }, fmtMs(end - start))),
    h("div", { class: "card" }, h("div", { class: "label" }, "started"), h("div", { title: fmtBoth(startMs) }, fmtLocal(startMs))),
    t.complete ? null : h("div", { class: "card" }, h("div", { class: "label" }, "incomplete"), h("div", { class: "error" }, t.incomplete_reason || "yes")));
  // Anomalies are objects ({kind, span_id, message, ...}); documents stored by older
  // versions hold strings.
  const anomalyPanel = anomalies.length ? h("div", { class: "panel", id: "anomalies" },
    h("h2", {}, "Anomalies in the telemetry"),
    h("ul", {}, anomalies.map((x) => typeof x === "string" ? h("li", {}, x) :
      h("li", { "data-kind": x.kind },
        h("b", {}, x.kind.replace(/_/g, " ")), " at span ", h("span", { class: "mono" }, x.span_id),
        x.agent ? " (agent " + x.agent + ")" : null, ": ", x.message)))) : null;

  let verdict;
  if (t.root_cause) {
    const rc = t.root_cause;
    verdict = h("div", { class: "panel", id: "root-cause" },
      h("h2", {}, "Root cause: ", h("span", { class: "badge blamed-badge", id: "blamed-step" }, rc.step), " ", rc.kind,
        rc.agent ? h("span", { class: "muted", id: "blamed-agent" }, " in agent ", h("b", {}, rc.agent)) : null),
      h("p", {}, rc.reason),
      h("p", { id: "why" }, h("b", {}, "Why this span: "), whyThisSpan(rc, steps)),
      h("p", { class: "muted" }, "confidence " + fmtPct(rc.confidence) + " · rule " + rc.rule),
      h("ol", { class: "evidence" }, (rc.evidence || []).map((e) =>
        h("li", {}, stepLabel(e.step), " ", h("b", {}, e.kind), " — ", e.reason))));
  } else {
    verdict = h("p", { class: "muted" }, t.outcome === "failed" ? "Failed, no root cause found." : "No failure to blame.");
  }
  const findings = (t.findings || []).map((f) =>
    h("tr", {}, h("td", {}, f.step), h("td", {}, f.kind), h("td", {}, f.reason),
      h("td", { class: "num" }, f.score === null || f.score === undefined ? "–" : f.score),
      h("td", {}, f.source), h("td", {}, f.propagated ? "propagated" : "origin")));
  setMain(
    h("h1", { class: "mono" }, "Trajectory " + t.trace_id),
    summary,
    anomalyPanel,
    h("h2", {}, "Verdict"), verdict,
    h("h2", {}, "Spans"), waterfall,
    detail,
    h("h2", {}, "Findings"),
    findings.length ? h("div", { class: "panel" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "step"), h("th", {}, "kind"), h("th", {}, "reason"),
        h("th", { class: "num" }, "score"), h("th", {}, "source"), h("th", {}, ""))),
      h("tbody", {}, findings))) : h("p", { class: "muted" }, "No findings."));
};

// ---- overview: per-step failure and root-cause rates, timeline, outcomes -------------

const WINDOWS = ["15m", "1h", "6h", "24h"];
const DIMENSIONS = ["", "service", "route", "model", "prompt_version", "user_segment", "environment"];
const WINDOW_MS = { "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3 };

function cohortLabel(c) {
  const parts = Object.entries(c || {}).map(([k, v]) => k + "=" + (v === null ? "∅" : v));
  return parts.length ? parts.join(" ") : "all";
}

// Two bars, failure rate over root-cause rate, scaled so the largest value in the
// table fills the bar (`scale` is that value).
function rateBar(fail, root, scale) {
  const w = (x) => Math.min(100, (100 * (x || 0)) / scale).toFixed(2) + "%";
  return h("div", { class: "bars", title: "failure rate " + fmtPct(fail) + ", root-cause rate " + fmtPct(root) },
    h("div", { class: "bar" }, h("span", { class: "fail", style: { width: w(fail) } })),
    h("div", { class: "bar" }, h("span", { class: "root", style: { width: w(root) } })));
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// An SVG line chart of the root-cause rate per step over event time, with a time axis
// (local time; hover a slice for local and UTC time and every step's rate).
function timeline(series, from, to, sliceMs) {
  const W = 1000, H = 220, L = 52, R = 12, T = 10, B = 34;
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", role: "img", id: "timeline",
    "aria-label": "root-cause rate per step over event time" });
  let max = 0;
  for (const pts of series.values()) for (const p of pts) max = Math.max(max, p.rate);
  const yStep = niceStep(max > 0 ? max : 0.01, 4);
  const yMax = Math.max(yStep, Math.ceil((max > 0 ? max : 0.01) / yStep) * yStep);
  const x = (t) => L + ((W - L - R) * (t - from)) / Math.max(to - from, 1);
  const y = (r) => H - B - ((H - B - T) * r) / yMax;
  // Y axis: rate gridlines.
  for (let v = 0; v <= yMax + 1e-12; v += yStep) {
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtPct(v)));
  }
  // X axis: event time, ticks in local time.
  const axis = svgEl("g", { class: "x-axis" });
  axis.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  for (const t of timeTicks(from, to, 8)) {
    axis.appendChild(svgEl("line", { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 5, class: "axis" }));
    const label = svgEl("text", { x: x(t), y: H - B + 18, "text-anchor": "middle", class: "tick" }, fmtTick(t, to - from));
    label.appendChild(svgEl("title", {}, fmtBoth(t)));
    axis.appendChild(label);
  }
  axis.appendChild(svgEl("text", { x: W - R, y: H - 2, "text-anchor": "end" }, "event time (local)"));
  svg.appendChild(axis);
  const legend = h("div", { class: "legend" });
  for (const [step, pts] of series) {
    const color = stepColor(step);
    svg.appendChild(svgEl("polyline", {
      points: pts.map((p) => x(p.t).toFixed(1) + "," + y(p.rate).toFixed(1)).join(" "),
      fill: "none", stroke: color, "stroke-width": 2, "data-step": step,
    }));
    legend.appendChild(stepLabel(step));
  }
  // Hover targets, one per slice.
  const slices = series.values().next().value || [];
  slices.forEach((p, k) => {
    const lines = [fmtBoth(p.t - sliceMs / 2) + " to " + fmtTick(p.t + sliceMs / 2, 0)];
    for (const [step, pts] of series) if (pts[k] && pts[k].rate > 0) lines.push(step + ": " + fmtPct(pts[k].rate));
    const rect = svgEl("rect", { x: x(p.t - sliceMs / 2), y: T, width: Math.max(x(p.t + sliceMs / 2) - x(p.t - sliceMs / 2), 1),
      height: H - B - T, class: "hover" });
    rect.appendChild(svgEl("title", {}, lines.join("\n")));
    svg.appendChild(rect);
  });
  return h("div", { class: "panel" }, svg, legend);
}

// Where and how to send a first trace, with this server's own OTLP addresses.
function firstTraceHelp(info) {
  const host = (addr, fallback) => {
    const a = addr || fallback;
    const [hostPart, port] = [a.slice(0, a.lastIndexOf(":")), a.slice(a.lastIndexOf(":") + 1)];
    const unspecified = ["0.0.0.0", "[::]", "::", ""].includes(hostPart);
    return (unspecified ? location.hostname : hostPart) + ":" + port;
  };
  const http = host(info && info.otlp_http_address, "127.0.0.1:4318");
  const grpc = host(info && info.otlp_grpc_address, "127.0.0.1:4317");
  const collector = [
    "receivers:",
    "  otlp:",
    "    protocols: { grpc: {}, http: {} }",
    "exporters:",
    "  otlphttp/faultline:",
    "    endpoint: http://" + http,
    "service:",
    "  pipelines:",
    "    traces:",
    "      receivers: [otlp]",
    "      exporters: [otlphttp/faultline]",
    "    logs:",
    "      receivers: [otlp]",
    "      exporters: [otlphttp/faultline]",
  ].join("\n");
  const python = [
    "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http",
    "export OTEL_EXPORTER_OTLP_ENDPOINT=http://" + http,
    "export OTEL_SERVICE_NAME=my-agent",
  ].join("\n");
  return h("div", { class: "panel", id: "empty-state" },
    h("h2", {}, "No data yet: send a first trace"),
    h("p", {}, "faultline takes OpenTelemetry traces over OTLP: HTTP at ", h("code", {}, "http://" + http),
      " (POST /v1/traces, /v1/logs) and gRPC at ", h("code", {}, grpc), "."),
    h("p", {}, "From an agent instrumented with the OpenTelemetry SDK (or OpenInference / OpenLLMetry), point the exporter here:"),
    h("pre", { id: "sdk-snippet" }, python),
    h("p", {}, "Or forward from an OpenTelemetry Collector:"),
    h("pre", { id: "collector-snippet" }, collector),
    h("p", { class: "muted" }, "Runs appear in Trajectories as soon as they complete; counts here follow once their late-data grace (" +
      fmtDur(1000 * ((info && info.late_grace_seconds) || 60)) + ") ends. No agent at hand? `faultline demo` starts a server fed with simulated traffic."));
}

const SIGNALS = { failure: "failure rate", root_cause: "root-cause rate" };
const ALERT_KINDS = { spike: "spike", sustained: "sustained shift" };

// Alerts, grouped by incident (firing alerts about one step and kind, notified together;
// alerts not yet firing are grouped by step). Each alert says its signal, kind, cohort,
// rate, start time and reason (the step's most frequent failure reason when it opened,
// from the API); each group its step, start and reason. Recently resolved ones are
// folded away below.
function alertsPanel(alerts) {
  const open = alerts.filter((a) => a.state === "firing" || a.state === "pending");
  const resolved = alerts.filter((a) => a.state === "resolved").slice(0, 20);
  if (!open.length && !resolved.length) return null;
  const reasonText = (r) => (r ? r : "none recorded");
  const grouped = (list) => {
    const groups = new Map();
    for (const a of list) {
      const key = a.incident !== null && a.incident !== undefined ? "incident " + a.incident : "not yet firing · " + a.step;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(a);
    }
    return [...groups.entries()].map(([key, items]) => {
      const first = Math.min(...items.map((a) => nanosToMs(a.started_unix_nano)));
      const reason = items.map((a) => a.reason).find((r) => r);
      return h("div", { class: "incident", "data-group": key },
        h("div", { class: "incident-head" }, key, " · ", stepLabel(items[0].step), " · since ",
          h("span", { title: fmtBoth(first) }, fmtLocal(first)),
          " · ", h("a", { href: "#/trajectories?" + new URLSearchParams({ step: items[0].step, outcome: "failed" }).toString() }, "failed runs")),
        h("div", { class: "muted small" }, "reason: ", h("span", { class: "incident-reason" }, reasonText(reason))),
        h("ul", {}, items.map(item)));
    });
  };
  const item = (a) => {
    const startMs = nanosToMs(a.started_unix_nano);
    return h("li", { class: "alert", "data-state": a.state, "data-signal": a.signal, "data-kind": a.kind },
      h("span", { class: "badge state-" + a.state }, a.state), " ",
      h("b", { class: "alert-signal" }, SIGNALS[a.signal] || a.signal), " ",
      h("span", { class: "alert-kind" }, ALERT_KINDS[a.kind] || a.kind),
      Object.keys(a.cohort || {}).length ? " for " + cohortLabel(a.cohort) : " (whole step)",
      ": ", fmtPct(a.rate), " vs baseline ", fmtPct(a.baseline), " (" + a.failures + "/" + a.runs + " runs)",
      h("span", { class: "muted" }, " · started ", h("span", { class: "alert-start", title: fmtBoth(startMs) }, fmtLocal(startMs)),
        a.resolved_unix_nano ? " · resolved " + fmtLocal(nanosToMs(a.resolved_unix_nano)) : ""),
      h("div", { class: "muted small" }, "reason: ", h("span", { class: "alert-reason" }, reasonText(a.reason))));
  };
  return h("div", { class: "panel", id: "alerts" },
    h("h2", {}, open.length ? "Alerts" : "No open alerts"),
    grouped(open),
    resolved.length ? h("details", { class: "resolved" }, h("summary", {}, resolved.length + " recently resolved"), grouped(resolved)) : null);
}

views.overview = async (route) => {
  const window = WINDOWS.includes(route.params.get("window")) ? route.params.get("window") : "1h";
  const by = route.params.get("by") || "";
  const q = new URLSearchParams({ window });
  if (by) q.set("by", by);
  const [data, alerts, info] = await Promise.all([
    api("/api/v1/breakdown?" + q.toString()),
    api("/api/v1/alerts").catch(() => null),
    api("/api/v1/info").catch(() => null),
  ]);

  const controls = h("div", { class: "controls" });
  const winSel = h("select", { "aria-label": "window" }, WINDOWS.map((w) => h("option", { value: w }, "last " + w)));
  winSel.value = window;
  const bySel = h("select", { "aria-label": "group by" }, DIMENSIONS.map((d) => h("option", { value: d }, d ? "by " + d : "all cohorts")));
  bySel.value = by;
  const apply = () => {
    const p = new URLSearchParams({ window: winSel.value });
    if (bySel.value) p.set("by", bySel.value);
    go("overview", null, p);
  };
  winSel.addEventListener("change", apply);
  bySel.addEventListener("change", apply);
  controls.append(winSel, bySel);

  const totals = data.totals || {};
  const pending = data.pending_trajectories || 0;
  const grace = fmtDur(1000 * ((info && info.late_grace_seconds) || 60));
  const cards = h("div", { class: "row", id: "totals" },
    ...[["trajectories", "trajectories"], ["failed", "failed"], ["recovered", "recovered"], ["success", "success"]].map(([k, label]) =>
      h("div", { class: "card", "data-total": k }, h("div", { class: "label" }, label), h("div", { class: "num" }, totals[k] ?? 0))),
    h("div", { class: "card" }, h("div", { class: "label" }, "failure rate"), h("div", { class: "num" }, fmtPct(totals.failure_rate))),
    h("div", { class: "card", id: "pending", title: "received and analysed, still inside the late-data grace (" + grace + "): counted here once it ends" },
      h("div", { class: "label" }, "pending"), h("div", { class: "num" }, pending),
      h("div", { class: "muted small" }, "counted after the " + grace + " grace")));

  const alertBox = alerts && Array.isArray(alerts.alerts) ? alertsPanel(alerts.alerts) : null;

  const stepRows = data.steps || [];
  const scale = Math.max(0.0001, ...stepRows.map((s) => Math.max(s.failure_rate || 0, s.root_cause_rate || 0)));
  const rows = stepRows.map((s) =>
    h("tr", { class: "link", "data-step": s.step, onclick: () => go("trajectories", null, new URLSearchParams({ step: s.step, outcome: "failed" })) },
      h("td", {}, stepLabel(s.step)),
      by ? h("td", {}, cohortLabel(s.cohort)) : null,
      h("td", { class: "num" }, s.runs),
      h("td", { class: "num", "data-col": "failures" }, s.failures),
      h("td", { class: "num", "data-col": "root_causes" }, s.root_causes),
      h("td", { class: "num", "data-col": "failure_rate" }, fmtPct(s.failure_rate)),
      h("td", { class: "num", "data-col": "root_cause_rate" }, fmtPct(s.root_cause_rate)),
      h("td", { class: "bars-cell" }, rateBar(s.failure_rate, s.root_cause_rate, scale)),
      h("td", { class: "num nowrap", "data-col": "p50" }, s.p50_ms === null ? "–" : fmtDur(s.p50_ms)),
      h("td", { class: "num nowrap", "data-col": "p99" }, s.p99_ms === null ? "–" : fmtDur(s.p99_ms))));
  const table = h("table", { id: "steps" },
    h("thead", {}, h("tr", {}, h("th", {}, "step"), by ? h("th", {}, by) : null, h("th", { class: "num" }, "runs"),
      h("th", { class: "num", title: "runs of this step with a finding of their own" }, "failures"),
      h("th", { class: "num", title: "failed runs blamed on this step" }, "root causes"),
      h("th", { class: "num" }, "failure rate"), h("th", { class: "num" }, "root-cause rate"),
      h("th", { id: "bar-scale" }, h("span", { class: "key fail" }, "failure"), " ", h("span", { class: "key root" }, "root cause"),
        h("span", { class: "muted" }, " · 0–" + fmtPct(scale))),
      h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p99"))),
    h("tbody", {}, rows));
  const explain = h("p", { class: "muted", id: "explain-root-causes" },
    "Failures: runs of the step with a finding of their own (an error, an empty retrieval, a failed evaluation…). ",
    "Root causes: failed runs whose failure is blamed on the step. They differ because blame follows the evidence ",
    "upstream: a planner whose plan made a tool fail is the root cause without failing itself, and a step that failed ",
    "but was retried successfully, or whose failure is explained by another step, is not blamed. Rates are per run of the step.");

  // Timeline: root-cause rate per step in 24 slices of the window.
  const to = nanosToMs(data.window.to_unix_nano);
  const from = to - WINDOW_MS[window];
  const slices = 24;
  const sliceMs = (to - from) / slices;
  const parts = await Promise.all(Array.from({ length: slices }, (_, k) => {
    const a = BigInt(Math.floor(from + k * sliceMs)) * 1000000n;
    const b = BigInt(Math.floor(from + (k + 1) * sliceMs)) * 1000000n;
    return api("/api/v1/breakdown?from=" + a + "&to=" + b).then((d) => [from + (k + 0.5) * sliceMs, d]).catch(() => null);
  }));
  // Every step that ran in the window gets a point in every slice (0 without runs), so
  // that each line spans the whole window.
  const series = new Map();
  for (const part of parts) {
    if (!part) continue;
    for (const s of part[1].steps || []) if (!series.has(s.step)) series.set(s.step, []);
  }
  for (const part of parts) {
    if (!part) continue;
    const [t, d] = part;
    const byStep = new Map((d.steps || []).map((s) => [s.step, s]));
    for (const [step, pts] of series) {
      const s = byStep.get(step);
      pts.push({ t, rate: s && s.runs ? s.root_causes / s.runs : 0 });
    }
  }

  let body;
  if (rows.length) {
    body = [h("h2", {}, "Steps"), h("div", { class: "panel" }, table, explain),
      h("h2", {}, "Root-cause rate per step over the window"),
      series.size ? timeline(series, from, to, sliceMs) : h("p", { class: "muted" }, "No data.")];
  } else if (pending > 0) {
    body = [h("div", { class: "panel", id: "pending-state" },
      h("p", {}, pending + (pending === 1 ? " trajectory has" : " trajectories have") + " arrived and " +
        (pending === 1 ? "is" : "are") + " listed under ", h("a", { href: "#/trajectories" }, "Trajectories"), "."),
      h("p", { class: "muted" }, "Counts here wait for each run's late-data grace (" + grace +
        ") to end, so that late spans and evaluations are counted once."))];
  } else if ((totals.trajectories || 0) === 0) {
    body = [firstTraceHelp(info)];
  } else {
    body = [h("p", { class: "muted" }, "No step runs in this window.")];
  }
  setMain(h("h1", {}, "Per-step failures"), controls, alertBox, cards, body);
};

// ---- reasons: recurring failure patterns -----------------------------------------------

views.reasons = async (route) => {
  const window = WINDOWS.includes(route.params.get("window")) ? route.params.get("window") : "1h";
  const step = route.params.get("step") || "";
  const q = new URLSearchParams({ window, limit: "50" });
  if (step) q.set("step", step);
  const data = await api("/api/v1/reasons?" + q.toString());
  const winSel = h("select", { "aria-label": "window" }, WINDOWS.map((w) => h("option", { value: w }, "last " + w)));
  winSel.value = window;
  const stepIn = h("input", { placeholder: "step", size: 12, "aria-label": "step" });
  stepIn.value = step;
  const apply = () => {
    const p = new URLSearchParams({ window: winSel.value });
    if (stepIn.value) p.set("step", stepIn.value);
    go("reasons", null, p);
  };
  winSel.addEventListener("change", apply);
  const controls = h("div", { class: "controls" }, winSel, stepIn, h("button", { onclick: apply }, "Filter"));
  const rows = (data.reasons || []).map((r) =>
    h("tr", {},
      h("td", { class: "num" }, r.count),
      h("td", { class: "num nowrap", "data-col": "root_causes", title: "in " + fmtPct(r.root_cause_share) + " of its occurrences this reason was the failure's root cause" },
        r.root_causes ?? "–", h("div", { class: "muted" }, fmtPct(r.root_cause_share) + " of " + r.count)),
      h("td", {}, h("div", { class: "mono" }, r.template), h("div", { class: "muted" }, r.key)),
      h("td", {}, (r.steps || []).map((s) => h("div", { class: "nowrap" }, stepLabel(s.step, h("span", { class: "muted" }, " " + s.count))))),
      h("td", {}, (r.example_trace_ids || []).slice(0, 3).map((id) =>
        h("div", {}, h("a", { href: "#/trajectory/" + encodeURIComponent(id), class: "mono" }, id.slice(0, 12) + "…"))))));
  setMain(
    h("h1", {}, "Recurring failure reasons"),
    controls,
    rows.length ? h("div", { class: "panel" }, h("table", { id: "reasons" },
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "occurrences"),
        h("th", { class: "num", title: "occurrences that were the failure's root cause" }, "as root cause"),
        h("th", {}, "pattern"), h("th", {}, "steps"), h("th", {}, "examples"))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "No failure reasons in this window."));
};

// ---- cohorts -----------------------------------------------------------------------

const COHORT_WINDOWS = ["ring", "15m", "1h", "6h", "24h"];

function clauseText(c) {
  return c.key + " " + c.op + " " + c.value;
}

// A predicate as clauses joined by ∧, each clause kept whole on one line.
function predicate(clauses) {
  const out = h("div", { class: "predicate" });
  clauses.forEach((c, i) => {
    if (i) out.appendChild(h("span", { class: "and" }, " ∧ "));
    out.appendChild(h("span", { class: "clause mono" }, clauseText(c)));
  });
  return out;
}

function fmtNum(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toFixed(digits);
}

// A p- or q-value, short enough for a narrow column: "0.0123", "3e-5", "<1e-99".
function fmtP(p) {
  if (p === null || p === undefined || Number.isNaN(p)) return "–";
  if (p === 0 || p < 1e-99) return "<1e-99";
  if (p >= 1e-3) return Number(p).toFixed(p >= 0.01 ? 2 : 3);
  const [m, e] = Number(p).toExponential(0).split("e");
  return m + "e" + e;
}

const SIGNIFICANT = 0.05;

function diffCell(d) {
  const sig = d.p_value < SIGNIFICANT;
  const known = d.difference !== null && d.difference !== undefined && !Number.isNaN(d.difference);
  return h("td", { class: "num nowrap" + (sig ? " sig" : "") },
    (sig ? "● " : "") + (known && d.difference >= 0 ? "+" : "") + fmtPct(d.difference),
    h("div", { class: "muted" }, "[" + fmtPct(d.difference_ci[0]) + ", " + fmtPct(d.difference_ci[1]) + "] p " + fmtP(d.p_value)));
}

async function renderCompare(target, a, b) {
  const q = new URLSearchParams({ a, b });
  let data;
  try {
    data = await api("/api/v1/compare?" + q.toString());
  } catch (e) {
    target.replaceChildren(h("p", { class: "error" }, "Error: " + e.message));
    return;
  }
  const side = (s) => s.trajectories + " runs, " + fmtPct(s.failure_rate) + " failed";
  const rows = (data.steps || []).map((s) =>
    h("tr", { class: s.failure_rate.p_value < SIGNIFICANT || s.root_cause_rate.p_value < SIGNIFICANT ? "significant" : "",
      "data-step": s.step },
      h("td", {}, stepLabel(s.step)),
      h("td", { class: "num" }, fmtPct(s.a.failure_rate), h("div", { class: "muted" }, s.a.failures + "/" + s.a.runs)),
      h("td", { class: "num" }, fmtPct(s.b.failure_rate), h("div", { class: "muted" }, s.b.failures + "/" + s.b.runs)),
      diffCell(s.failure_rate),
      h("td", { class: "num" }, fmtPct(s.a.root_cause_rate)),
      h("td", { class: "num" }, fmtPct(s.b.root_cause_rate)),
      diffCell(s.root_cause_rate)));
  target.replaceChildren(
    h("p", {}, "A (" + (data.a.filter || "all") + "): " + side(data.a) + " · B (" + (data.b.filter || "all") + "): " + side(data.b)),
    h("p", {}, "Failure rate B − A: ", h("strong", {}, (data.overall.difference >= 0 ? "+" : "") + fmtPct(data.overall.difference)),
      " [" + fmtPct(data.overall.difference_ci[0]) + ", " + fmtPct(data.overall.difference_ci[1]) + "], p = " + fmtP(data.overall.p_value)),
    h("p", { class: "muted" }, "● marks a difference significant at p < 0.05 (two-proportion z-test); its row is highlighted. Brackets: 95% interval."),
    h("table", { id: "compare" },
      h("thead", {}, h("tr", {}, h("th", {}, "step"), h("th", { class: "num" }, "A fail"), h("th", { class: "num" }, "B fail"),
        h("th", { class: "num" }, "B − A"), h("th", { class: "num" }, "A root cause"), h("th", { class: "num" }, "B root cause"),
        h("th", { class: "num" }, "B − A"))),
      h("tbody", {}, rows)));
}

views.cohorts = async (route) => {
  const window = COHORT_WINDOWS.includes(route.params.get("window")) ? route.params.get("window") : "ring";
  const data = await api("/api/v1/cohorts?" + new URLSearchParams({ window, limit: "50" }).toString());
  const winSel = h("select", { "aria-label": "window" },
    COHORT_WINDOWS.map((w) => h("option", { value: w }, w === "ring" ? "recent runs (window)" : "last " + w)));
  winSel.value = window;
  winSel.addEventListener("change", () => go("cohorts", null, new URLSearchParams({ window: winSel.value })));
  const rows = (data.cohorts || []).map((c, i) =>
    h("tr", {},
      h("td", { class: "num" }, i + 1),
      h("td", {}, predicate(c.predicate),
        c.step ? h("span", { class: "badge measure", title: "this cohort's rate counts only failures blamed on " + c.step }, "counts failures blamed on " + c.step) : null,
        c.reason_pattern ? h("span", { class: "badge measure" }, "with reason pattern " + c.reason_pattern) : null),
      h("td", { class: "num" }, c.support),
      h("td", { class: "num nowrap" }, fmtPct(c.failure_rate), h("div", { class: "muted" }, "vs " + fmtPct(c.baseline_rate))),
      h("td", { class: "num nowrap" }, fmtNum(c.risk_ratio, 2), h("div", { class: "muted" }, "[" + fmtNum(c.risk_ratio_ci[0], 2) + ", " + fmtNum(c.risk_ratio_ci[1], 2) + "]")),
      h("td", { class: "num" }, fmtNum(c.excess_failures, 1)),
      h("td", { class: "num nowrap" }, fmtP(c.q_value)),
      h("td", { class: "nowrap" }, c.top_root_cause_step ? stepLabel(c.top_root_cause_step) : "–"),
      h("td", { class: "top-reasons" }, (c.top_reasons || []).map((r) => h("div", { title: r.template || r.pattern_id }, r.count + "× " + (r.template || r.pattern_id)))),
      h("td", {}, (c.example_trace_ids || []).slice(0, 3).map((id) =>
        h("div", {}, h("a", { href: "#/trajectory/" + encodeURIComponent(id), class: "mono" }, id.slice(0, 12) + "…"))))));
  const aIn = h("input", { placeholder: "A: prompt_version=v3", size: 28, "aria-label": "filter A" });
  const bIn = h("input", { placeholder: "B: prompt_version=v4", size: 28, "aria-label": "filter B" });
  aIn.value = route.params.get("a") || "";
  bIn.value = route.params.get("b") || "";
  const out = h("div", { class: "panel", id: "compare-out" });
  const run = () => {
    const p = new URLSearchParams({ window, a: aIn.value, b: bIn.value });
    go("cohorts", null, p);
  };
  setMain(
    h("h1", {}, "Failure cohorts"),
    h("div", { class: "controls" }, winSel),
    h("p", { class: "muted" },
      data.records + " runs in the window, " + data.failures + " failed; " + data.tests + " tests; " +
      data.pending + " cohorts awaiting confirmation (a cohort is listed after two consecutive significant runs)."),
    rows.length ? h("div", { class: "panel" }, h("table", { id: "cohorts" },
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "cohort"), h("th", { class: "num" }, "runs"),
        h("th", { class: "num" }, "failure rate"), h("th", { class: "num" }, "risk ratio [95% CI]"),
        h("th", { class: "num" }, "excess failures"), h("th", { class: "num", title: "false-discovery-adjusted p-value" }, "q"),
        h("th", { title: "the step most often blamed for this cohort's failures" }, "most blamed"),
        h("th", {}, "top reasons"), h("th", {}, "examples"))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "No cohort fails significantly more than the rest."),
    h("h2", {}, "Compare two cohorts"),
    h("p", { class: "muted" }, "Filters: key=value[,key=value], or input_tokens>=N / input_tokens<N (also output_tokens, steps, tool_calls, duration_ms)."),
    h("div", { class: "controls" }, aIn, bIn, h("button", { onclick: run }, "Compare")),
    route.params.has("a") || route.params.has("b") ? out : null);
  if (route.params.has("a") || route.params.has("b")) await renderCompare(out, aIn.value, bIn.value);
};
