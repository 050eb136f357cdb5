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
  return (100 * x).toFixed(x < 0.1 ? 2 : 1) + "%";
}

function fmtMs(ns) {
  const ms = ns / 1e6;
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

function fmtTime(ns) {
  if (!ns) return "–";
  const d = new Date(Number(BigInt(ns) / 1000000n));
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
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
  const rows = (data.trajectories || []).map((t) =>
    h("tr", { class: "link", onclick: () => go("trajectory", t.trace_id) },
      h("td", { class: "mono" }, t.trace_id),
      h("td", {}, fmtTime(t.end_unix_nano)),
      h("td", {}, t.service || "–"),
      h("td", {}, outcomeBadge(t.outcome)),
      h("td", {}, t.root_cause_step ? t.root_cause_step + " · " + t.root_cause_kind : "–"),
      h("td", { class: "num" }, t.span_count),
      h("td", { class: "num" }, fmtMs(t.end_unix_nano - t.start_unix_nano))));
  const table = h("table", { id: "trajectory-list" },
    h("thead", {}, h("tr", {},
      h("th", {}, "trace"), h("th", {}, "ended"), h("th", {}, "service"), h("th", {}, "outcome"),
      h("th", {}, "root cause"), h("th", { class: "num" }, "spans"), h("th", { class: "num" }, "duration"))),
    h("tbody", {}, rows));
  const pager = h("div", { class: "pager" });
  if (data.next_cursor) {
    pager.appendChild(h("button", {
      onclick: () => { const p = new URLSearchParams(route.params); p.set("cursor", data.next_cursor); go("trajectories", null, p); },
    }, "Older →"));
  }
  setMain(h("h1", {}, "Trajectories"), controls,
    rows.length ? h("div", { class: "panel" }, table) : h("p", { class: "muted" }, "No trajectories match."),
    pager);
};

// ---- one trajectory ------------------------------------------------------------------

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
  const waterfall = h("div", { class: "waterfall panel" },
    ordered.map((s) => {
      const left = (100 * (Number(s.start_unix_nano) - start)) / total;
      const width = Math.max((100 * (Number(s.end_unix_nano) - Number(s.start_unix_nano))) / total, 0.2);
      const row = h("div", { class: "span-row" + (s.span_id === blamed ? " blamed" : ""), "data-span": s.span_id },
        h("div", { class: "name", style: { "padding-left": Math.min(depth.get(s.span_id) || 0, 40) * 14 + "px" }, title: s.name }, s.name),
        h("span", { class: "step badge" }, s.step),
        h("div", { class: "track" }, h("span", {
          class: s.status === "error" ? "error" : "",
          style: { left: left.toFixed(3) + "%", width: width.toFixed(3) + "%" },
        })),
        h("span", { class: "num muted" }, fmtMs(s.end_unix_nano - s.start_unix_nano)));
      row.addEventListener("click", () => showSpan(s, row));
      rowsEl.push(row);
      return row;
    }));

  const summary = h("div", { class: "row" },
    h("div", { class: "card" }, h("div", { class: "label" }, "outcome"), h("div", { class: "num" }, outcomeBadge(t.outcome))),
    h("div", { class: "card" }, h("div", { class: "label" }, "service"), h("div", {}, t.service || "–")),
    h("div", { class: "card" }, h("div", { class: "label" }, "session"), h("div", { class: "mono" }, t.session_id || "–")),
    h("div", { class: "card" }, h("div", { class: "label" }, "spans"), h("div", { class: "num" }, steps.length)),
    h("div", { class: "card" }, h("div", { class: "label" }, "duration"), h("div", { class: "num" }, fmtMs(end - start))),
    t.complete ? null : h("div", { class: "card" }, h("div", { class: "label" }, "incomplete"), h("div", { class: "error" }, t.incomplete_reason || "yes")),
    (t.anomalies || []).length ? h("div", { class: "card", id: "anomalies" }, h("div", { class: "label" }, "anomalies"),
      h("div", {}, t.anomalies.join("; "))) : null);

  let verdict;
  if (t.root_cause) {
    const rc = t.root_cause;
    verdict = h("div", { class: "panel", id: "root-cause" },
      h("h2", {}, "Root cause: ", h("span", { class: "badge outcome-failed", id: "blamed-step" }, rc.step), " ", rc.kind,
        rc.agent ? h("span", { class: "muted", id: "blamed-agent" }, " in agent ", h("b", {}, rc.agent)) : null),
      h("p", {}, rc.reason),
      h("p", { class: "muted" }, "confidence " + fmtPct(rc.confidence) + " · rule " + rc.rule),
      h("ol", { class: "evidence" }, (rc.evidence || []).map((e) =>
        h("li", {}, h("span", { class: "badge" }, e.step), " ", h("b", {}, e.kind), " — ", e.reason))));
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

function rateBar(fail, root) {
  const bar = h("div", { class: "bar", title: "failure " + fmtPct(fail) + ", root cause " + fmtPct(root) });
  bar.appendChild(h("span", { class: "fail", style: { width: Math.min(100, 100 * (fail || 0)).toFixed(2) + "%" } }));
  bar.appendChild(h("span", { class: "root", style: { width: Math.min(100, 100 * (root || 0)).toFixed(2) + "%" } }));
  return bar;
}

// A small SVG line chart of root-cause rate per step over time.
function timeline(series, from, to) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 900, H = 160, P = 28;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  let max = 0;
  for (const pts of series.values()) for (const p of pts) max = Math.max(max, p.rate);
  max = max > 0 ? max : 0.01;
  const colors = ["#6cb6ff", "#ff6b6b", "#f0b429", "#4cc38a", "#c586ff", "#ff9f6b", "#7ee0d6", "#e0e07e"];
  const line = (x1, y1, x2, y2, color) => {
    const l = document.createElementNS(NS, "line");
    for (const [k, v] of Object.entries({ x1, y1, x2, y2 })) l.setAttribute(k, v);
    l.setAttribute("stroke", color);
    return l;
  };
  svg.appendChild(line(P, H - P, W - 4, H - P, "#262c36"));
  const label = (x, y, text) => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y);
    t.textContent = text;
    return t;
  };
  svg.appendChild(label(2, 12, fmtPct(max)));
  svg.appendChild(label(2, H - P, "0"));
  let i = 0;
  const legend = h("div", { class: "controls" });
  for (const [step, pts] of series) {
    const color = colors[i++ % colors.length];
    const path = document.createElementNS(NS, "polyline");
    const coords = pts.map((p) => {
      const x = P + ((W - P - 4) * (p.t - from)) / Math.max(to - from, 1);
      const y = H - P - ((H - P - 8) * p.rate) / max;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    path.setAttribute("points", coords.join(" "));
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", color);
    path.setAttribute("stroke-width", "1.5");
    svg.appendChild(path);
    const swatch = h("span", { class: "badge", style: { color: color, "border-color": color } }, step);
    legend.appendChild(swatch);
  }
  return h("div", { class: "panel" }, svg, legend);
}

views.overview = async (route) => {
  const window = WINDOWS.includes(route.params.get("window")) ? route.params.get("window") : "1h";
  const by = route.params.get("by") || "";
  const q = new URLSearchParams({ window });
  if (by) q.set("by", by);
  const data = await api("/api/v1/breakdown?" + q.toString());
  const alerts = await api("/api/v1/alerts").catch(() => null);

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
  const cards = h("div", { class: "row", id: "totals" },
    ...[["trajectories", "trajectories"], ["failed", "failed"], ["recovered", "recovered"], ["success", "success"]].map(([k, label]) =>
      h("div", { class: "card", "data-total": k }, h("div", { class: "label" }, label), h("div", { class: "num" }, totals[k] ?? 0))),
    h("div", { class: "card" }, h("div", { class: "label" }, "failure rate"), h("div", { class: "num" }, fmtPct(totals.failure_rate))));

  let firing = null;
  if (alerts && Array.isArray(alerts.alerts)) {
    const live = alerts.alerts.filter((a) => a.state === "firing");
    if (live.length) {
      firing = h("div", { class: "panel", id: "alerts" }, h("h2", {}, "Firing alerts"),
        h("ul", {}, live.map((a) => h("li", {}, h("b", { class: "error" }, a.kind), " ", a.step, " ",
          cohortLabel(a.cohort), " — rate " + fmtPct(a.rate) + " vs baseline " + fmtPct(a.baseline)))));
    }
  }

  const rows = (data.steps || []).map((s) =>
    h("tr", { class: "link", "data-step": s.step, onclick: () => go("trajectories", null, new URLSearchParams({ step: s.step, outcome: "failed" })) },
      h("td", {}, s.step),
      by ? h("td", {}, cohortLabel(s.cohort)) : null,
      h("td", { class: "num" }, s.runs),
      h("td", { class: "num", "data-col": "failures" }, s.failures),
      h("td", { class: "num", "data-col": "root_causes" }, s.root_causes),
      h("td", { class: "num", "data-col": "failure_rate" }, fmtPct(s.failure_rate)),
      h("td", { class: "num", "data-col": "root_cause_rate" }, fmtPct(s.root_cause_rate)),
      h("td", {}, rateBar(s.failure_rate, s.root_cause_rate)),
      h("td", { class: "num" }, s.p50_ms === null ? "–" : s.p50_ms.toFixed(0) + " ms"),
      h("td", { class: "num" }, s.p99_ms === null ? "–" : s.p99_ms.toFixed(0) + " ms")));
  const table = h("table", { id: "steps" },
    h("thead", {}, h("tr", {}, h("th", {}, "step"), by ? h("th", {}, by) : null, h("th", { class: "num" }, "runs"),
      h("th", { class: "num" }, "failures"), h("th", { class: "num" }, "root causes"),
      h("th", { class: "num" }, "failure rate"), h("th", { class: "num" }, "root-cause rate"), h("th", {}, ""),
      h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p99"))),
    h("tbody", {}, rows));

  // Timeline: root-cause rate per step in 24 slices of the window.
  const to = Number(BigInt(data.window.to_unix_nano) / 1000000n);
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

  setMain(
    h("h1", {}, "Per-step failures"),
    controls,
    firing,
    cards,
    h("h2", {}, "Steps: failure rate (amber) and root-cause rate (red)"),
    rows.length ? h("div", { class: "panel" }, table) : h("p", { class: "muted" }, "No trajectories in this window yet."),
    h("h2", {}, "Root-cause rate per step over the window"),
    series.size ? timeline(series, from, to) : h("p", { class: "muted" }, "No data."));
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
      h("td", { class: "num" }, fmtPct(r.root_cause_share)),
      h("td", {}, h("div", { class: "mono" }, r.template), h("div", { class: "muted" }, r.key)),
      h("td", {}, (r.steps || []).map((s) => h("span", { class: "badge" }, s.step + " " + s.count))),
      h("td", {}, (r.example_trace_ids || []).slice(0, 3).map((id) =>
        h("div", {}, h("a", { href: "#/trajectory/" + encodeURIComponent(id), class: "mono" }, id.slice(0, 12) + "…"))))));
  setMain(
    h("h1", {}, "Recurring failure reasons"),
    controls,
    rows.length ? h("div", { class: "panel" }, h("table", { id: "reasons" },
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "count"), h("th", { class: "num" }, "root cause"),
        h("th", {}, "pattern"), h("th", {}, "steps"), h("th", {}, "examples"))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "No failure reasons in this window."));
};

// ---- cohorts -----------------------------------------------------------------------

const COHORT_WINDOWS = ["ring", "15m", "1h", "6h", "24h"];

function clauseText(c) {
  return c.key + " " + c.op + " " + c.value;
}

function fmtNum(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toFixed(digits);
}

function fmtP(p) {
  if (p === null || p === undefined) return "–";
  return p < 1e-4 ? Number(p).toExponential(1) : Number(p).toFixed(4);
}

function diffCell(d) {
  const sig = d.p_value < 0.05;
  return h("td", { class: "num" + (sig ? " strong" : "") },
    (d.difference >= 0 ? "+" : "") + fmtPct(d.difference),
    h("div", { class: "muted" }, "[" + fmtPct(d.difference_ci[0]) + ", " + fmtPct(d.difference_ci[1]) + "] p=" + fmtP(d.p_value)));
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
    h("tr", {},
      h("td", {}, s.step),
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
      h("td", {}, c.predicate.map((p) => h("div", { class: "mono" }, clauseText(p))),
        c.step ? h("span", { class: "badge" }, "root cause: " + c.step) : null,
        c.reason_pattern ? h("span", { class: "badge" }, "pattern " + c.reason_pattern) : null),
      h("td", { class: "num" }, c.support),
      h("td", { class: "num" }, fmtPct(c.failure_rate), h("div", { class: "muted" }, "vs " + fmtPct(c.baseline_rate))),
      h("td", { class: "num" }, fmtNum(c.risk_ratio, 2), h("div", { class: "muted" }, "[" + fmtNum(c.risk_ratio_ci[0], 2) + ", " + fmtNum(c.risk_ratio_ci[1], 2) + "]")),
      h("td", { class: "num" }, fmtNum(c.excess_failures, 1)),
      h("td", { class: "num" }, fmtP(c.q_value)),
      h("td", {}, c.top_root_cause_step || "–"),
      h("td", {}, (c.top_reasons || []).map((r) => h("div", { class: "mono" }, r.count + "× " + (r.template || r.pattern_id)))),
      h("td", {}, (c.example_trace_ids || []).slice(0, 3).map((id) =>
        h("div", {}, h("a", { href: "#/trajectory/" + encodeURIComponent(id), class: "mono" }, id.slice(0, 12) + "…"))))));
  const aIn = h("input", { placeholder: "A: prompt_version=v3", size: 28, "aria-label": "filter A" });
  const bIn = h("input", { placeholder: "B: prompt_version=v4", size: 28, "aria-label": "filter B" });
  aIn.value = route.params.get("a") || "";
  bIn.value = route.params.get("b") || "";
  const out = h("div", { class: "panel" });
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
        h("th", { class: "num" }, "excess failures"), h("th", { class: "num" }, "q"), h("th", {}, "blamed step"),
        h("th", {}, "top reasons"), h("th", {}, "examples"))),
      h("tbody", {}, rows))) : h("p", { class: "muted" }, "No cohort fails significantly more than the rest."),
    h("h2", {}, "Compare two cohorts"),
    h("p", { class: "muted" }, "Filters: key=value[,key=value], or input_tokens>=N / input_tokens<N (also output_tokens, steps, tool_calls, duration_ms)."),
    h("div", { class: "controls" }, aIn, bIn, h("button", { onclick: run }, "Compare")),
    out);
  if (route.params.has("a") || route.params.has("b")) await renderCompare(out, aIn.value, bIn.value);
};
