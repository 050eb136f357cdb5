// Loads faultline's page in Debian's headless Chromium at 1280×800 and reports what a
// person sees, as one JSON object on stdout.
// Usage: node check_page.mjs <base-url> <failed-trace> <xss-trace> <screenshot-dir>
//          <quiet-base-url> <quiet-otlp-http-address> <orphan-trace>
// The quiet server has a long late-data grace and no data at first: it shows the empty
// state, then (after this script sends it one trace whose parent span is missing) the
// pending count and the structured anomaly.
import { chromium } from "playwright-core";

const ALERTS_URL = /\/api\/v1\/alerts$/;
const COMPARE_URL = /\/api\/v1\/compare\?/;
const [base, failedTrace, xssTrace, shots, quietBase, quietOtlp, orphanTrace] = process.argv.slice(2);

// Views change in place (hash routing): wait for the one asked for, not for a selector
// the previous view may also have.
async function showing(page, traceId) {
  await page.waitForFunction(
    (id) => document.querySelector("main h1")?.textContent.includes(id) && document.querySelector(".waterfall"),
    traceId,
    { timeout: 60000 },
  );
}

// WCAG 2 contrast of every visible text (HTML text and SVG text) against the background
// it is drawn on (ancestors' backgrounds composited), computed in the page.
async function contrast(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = /rgba?\(([^)]+)\)/.exec(c || "");
      if (!m) return null;
      const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const over = (top, bottom) => ({
      r: top.r * top.a + bottom.r * (1 - top.a),
      g: top.g * top.a + bottom.g * (1 - top.a),
      b: top.b * top.a + bottom.b * (1 - top.a),
      a: 1,
    });
    const lum = ({ r, g, b }) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      const layers = [];
      for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
      }
      let bg = { r: 255, g: 255, b: 255, a: 1 };
      for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
      return bg;
    };
    const results = [];
    const all = document.querySelectorAll("main *, header *");
    for (const el of all) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own) continue;
      const rects = el.getClientRects();
      if (!rects.length || getComputedStyle(el).visibility === "hidden") continue;
      const isSvg = el instanceof SVGElement;
      const style = getComputedStyle(el);
      const fgRaw = parse(isSvg ? style.fill : style.color);
      if (!fgRaw) continue;
      const bg = background(isSvg ? el.closest("div") || el : el);
      const fg = over(fgRaw, bg);
      const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      results.push({
        text: el.textContent.trim().slice(0, 40),
        tag: el.tagName.toLowerCase(),
        link: !!el.closest("a"),
        probe: el.closest("[data-probe]")?.dataset.probe || null,
        ratio: Math.round(((l1 + 0.05) / (l2 + 0.05)) * 100) / 100,
      });
    }
    const min = (list) => list.reduce((m, r) => Math.min(m, r.ratio), Infinity);
    const links = results.filter((r) => r.link);
    return {
      checked: results.length,
      links: links.length,
      min_text: min(results.filter((r) => !r.link)),
      min_link: min(links),
      worst: [...results].sort((a, b) => a.ratio - b.ratio).slice(0, 5),
      probes: results.filter((r) => r.probe),
    };
  });
}

// Whether the page fits a 1280 px wide window (no horizontal scrolling).
// When it does not, the cells sticking out furthest say why.
const overflow = (page) => page.evaluate(() => {
  const px = document.documentElement.scrollWidth - window.innerWidth;
  if (px <= 0) return px;
  const wide = [...document.querySelectorAll("main td, main th")]
    .map((e) => ({ cls: e.className, text: e.textContent.slice(0, 30), w: Math.round(e.getBoundingClientRect().width) }))
    .sort((a, b) => b.w - a.w).slice(0, 6);
  return { px, wide };
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = { dialogs: [], page_errors: [], csp_violations: [], contrast: {}, overflow_px: {} };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("dialog", async (d) => { out.dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) out.csp_violations.push(m.text()); });

  // Overview.
  await page.goto(base + "/#/overview?window=24h");
  await page.waitForSelector("#timeline", { timeout: 60000 });
  out.totals = {};
  for (const k of ["trajectories", "failed", "recovered", "success"]) {
    out.totals[k] = Number(await page.textContent(`[data-total="${k}"] .num`));
  }
  out.pending_card = Number(await page.textContent("#pending .num"));
  out.steps = await page.$$eval("#steps tbody tr", (rows) => rows.map((r) => ({
    step: r.dataset.step,
    failures: Number(r.querySelector('[data-col="failures"]').textContent),
    root_causes: Number(r.querySelector('[data-col="root_causes"]').textContent),
    p50: r.querySelector('[data-col="p50"]').textContent,
    p99: r.querySelector('[data-col="p99"]').textContent,
    swatch: getComputedStyle(r.querySelector(".swatch")).backgroundColor,
    bar_widths: [...r.querySelectorAll(".bar > span")].map((s) => s.getBoundingClientRect().width / s.parentElement.getBoundingClientRect().width),
  })));
  out.explains_root_causes = await page.textContent("#explain-root-causes").catch(() => null);
  out.timeline_ticks = await page.$$eval("#timeline .x-axis text.tick", (t) => t.map((e) => ({
    label: e.textContent, hover: e.querySelector("title")?.textContent || "",
  })));
  out.timeline_lines = await page.$$eval("#timeline polyline", (ls) => ls.map((l) => ({ step: l.dataset.step, stroke: l.getAttribute("stroke") })));
  out.legend = await page.$$eval("#timeline + .legend .step-label", (ls) => ls.map((l) => ({
    step: l.textContent, swatch: getComputedStyle(l.querySelector(".swatch")).backgroundColor,
  })));
  out.contrast.overview = await contrast(page);
  out.overflow_px.overview = await overflow(page);
  // The same check on the same view with known colour pairs added, to show it can fail
  // (see check_contrast_probes in browser.rs); removed again before the screenshot.
  await page.evaluate(() => {
    const box = document.createElement("div");
    box.id = "contrast-probes";
    // Styles set through the CSSOM: the page's Content-Security-Policy refuses style
    // attributes.
    const add = (parent, tag, probe, [color, background], text) => {
      const e = document.createElement(tag);
      e.dataset.probe = probe;
      if (color) e.style.color = color;
      if (background) e.style.backgroundColor = background;
      e.textContent = text;
      parent.appendChild(e);
      return e;
    };
    add(box, "p", "black-on-white", ["#000000", "#ffffff"], "black on white");
    add(box, "p", "aa-grey-on-white", ["#767676", "#ffffff"], "AA grey on white");
    add(box, "p", "lighter-grey-on-white", ["#777777", "#ffffff"], "lighter grey on white");
    const dark = add(box, "div", "dark-panel", [null, "#0f172a"], "");
    const a = add(dark, "a", "dark-link-on-dark", ["#1e3a8a", null], "dark link on dark");
    a.href = "#/overview";
    document.querySelector("main").appendChild(box);
  });
  out.contrast_probe = await contrast(page);
  await page.evaluate(() => document.getElementById("contrast-probes").remove());
  await page.screenshot({ path: shots + "/overview.png", fullPage: true });

  // Alerts: two alerts differing only in signal, in one incident, and one pending alert
  // of another step; the API answer is given to the page as is.
  const t0 = Date.UTC(2026, 0, 2, 3, 4, 0);
  const alert = (id, signal, state, incident, step, kind, reason) => ({
    id, step, kind, signal, alertname: "x", severity: "critical", cohort: { model: "gpt-4o" }, state,
    started_unix_nano: String(BigInt(t0) * 1000000n), resolved_unix_nano: null, updated_unix_nano: String(BigInt(t0) * 1000000n),
    rate: 0.31, baseline: 0.08, runs: 412, failures: 128, incident, reason, link: "",
  });
  await page.route(ALERTS_URL, (route) => route.fulfill({
    contentType: "application/json",
    body: JSON.stringify({ alerts: [
      alert(1, "failure", "firing", 7, "retriever", "spike", "Timeout after <*> ms calling <*>"),
      alert(2, "root_cause", "firing", 7, "retriever", "spike", "Timeout after <*> ms calling <*>"),
      alert(3, "failure", "pending", null, "tool", "sustained", null),
    ] }),
  }));
  await page.goto(base + "/#/overview?window=15m");
  await page.waitForSelector("#alerts .alert", { timeout: 60000 });
  out.alert_groups = await page.$$eval("#alerts .incident", (gs) => gs.map((g) => ({
    group: g.dataset.group,
    reason: g.querySelector(".incident-reason")?.textContent || "",
    alerts: [...g.querySelectorAll(".alert")].map((a) => ({
      signal: a.querySelector(".alert-signal").textContent,
      kind: a.querySelector(".alert-kind").textContent,
      reason: a.querySelector(".alert-reason")?.textContent || "",
      start: a.querySelector(".alert-start").textContent,
      start_hover: a.querySelector(".alert-start").title,
      state: a.dataset.state,
    })),
  })));
  out.alert_expected_start = await page.evaluate((ms) => {
    const d = new Date(ms), p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }, t0);
  out.contrast.alerts = await contrast(page);
  await page.screenshot({ path: shots + "/alerts.png" });
  await page.unroute(ALERTS_URL);

  // A failed trajectory: the blamed step is shown and highlighted, and said why.
  await page.goto(base + "/#/trajectory/" + failedTrace);
  await showing(page, failedTrace);
  out.blamed_step = await page.textContent("#blamed-step").catch(() => null);
  out.highlighted_rows = await page.$$eval(".span-row.blamed", (r) => r.length);
  out.why = await page.textContent("#why").catch(() => null);
  out.waterfall_ticks = await page.$$eval("#waterfall-axis .tick", (t) => t.map((e) => ({ label: e.textContent, hover: e.title })));
  out.bar_colors = await page.$$eval(".waterfall .span-row:not(.axis)", (rows) => rows.map((r) => ({
    step: r.querySelector(".step-label").textContent,
    bar: getComputedStyle(r.querySelector(".track > span")).backgroundColor,
    error: r.querySelector(".track > span").classList.contains("err"),
  })));
  out.bad_color = await page.evaluate(() => {
    const probe = document.createElement("span");
    probe.style.setProperty("color", "var(--bad)");
    document.body.appendChild(probe);
    const c = getComputedStyle(probe).color;
    probe.remove();
    return c;
  });
  out.contrast.trajectory = await contrast(page);
  out.overflow_px.trajectory = await overflow(page);
  await page.screenshot({ path: shots + "/trajectory.png", fullPage: true });

  // The hostile trajectory: names, keys and values carry script payloads.
  await page.goto(base + "/#/trajectory/" + xssTrace);
  await showing(page, xssTrace);
  const rows = await page.$$(".waterfall .span-row");
  for (const row of rows) await row.click();
  out.xss_span_names = await page.$$eval(".waterfall .name", (els) => els.map((e) => e.textContent));
  out.xss_attr_cells = await page.$$eval(".attrs td", (els) => els.map((e) => e.textContent));
  out.xss_executed = await page.evaluate(() => window.__xss === true);
  out.injected_elements = await page.$$eval("main img, main svg[onload], main script, main iframe", (els) => els.length);

  // The trajectory list shows the hostile service name as text too, and its columns.
  await page.goto(base + "/#/trajectories?limit=1000");
  await page.waitForSelector("#trajectory-list", { timeout: 60000 });
  out.list_rows = await page.$$eval("#trajectory-list tbody tr", (r) => r.length);
  out.list_headers = await page.$$eval("#trajectory-list thead th", (th) => th.map((e) => e.textContent));
  out.list_traces = await page.$$eval("#trajectory-list tbody tr", (r) => r.map((e) => e.dataset.trace));
  out.list_reasons = await page.$$eval("#trajectory-list td.reason", (td) => td.filter((e) => e.textContent !== "–").length);
  out.xss_executed = out.xss_executed || (await page.evaluate(() => window.__xss === true));
  out.contrast.trajectories = await contrast(page);
  out.overflow_px.trajectories = await overflow(page);
  // Sorted by duration, shortest first, by a click on its header (twice: descending,
  // then ascending), as `faultline trajectories --sort duration --order asc`.
  for (const want of ["desc", "asc"]) {
    await page.click('#trajectory-list th[data-sort="duration"] a');
    await page.waitForFunction((o) => location.hash.includes("sort=duration") && location.hash.includes("order=" + o)
      && document.querySelector('#trajectory-list th[data-sort="duration"]')?.getAttribute("aria-sort") === (o === "asc" ? "ascending" : "descending"),
      want, { timeout: 60000 });
  }
  out.list_by_duration = {
    hash: await page.evaluate(() => location.hash),
    headers: await page.$$eval("#trajectory-list thead th", (th) => th.map((e) => e.textContent)),
    traces: await page.$$eval("#trajectory-list tbody tr", (r) => r.map((e) => e.dataset.trace)),
  };

  // Reasons and cohorts, with a compare whose answer has one significant row.
  await page.goto(base + "/#/reasons?window=24h");
  await page.waitForSelector("main h1", { timeout: 60000 });
  await page.waitForLoadState("networkidle");
  out.contrast.reasons = await contrast(page);
  out.overflow_px.reasons = await overflow(page);
  const side = { filter: "x", trajectories: 100, failures: 10, failure_rate: 0.1 };
  const diff = (p) => ({ a_rate: 0.1, b_rate: 0.3, difference: 0.2, difference_ci: [0.1, 0.3], p_value: p });
  const counts = { runs: 100, failures: 10, root_causes: 5, failure_rate: 0.1, root_cause_rate: 0.05 };
  await page.route(COMPARE_URL, (route) => route.fulfill({
    contentType: "application/json",
    body: JSON.stringify({ a: side, b: side, overall: diff(0.001), steps: [
      { step: "retriever", a: counts, b: counts, failure_rate: diff(0.0001), root_cause_rate: diff(0.5) },
      { step: "tool", a: counts, b: counts, failure_rate: diff(0.4), root_cause_rate: diff(0.6) },
    ] }),
  }));
  await page.goto(base + "/#/cohorts?window=ring&a=model%3Da&b=model%3Db");
  await page.waitForSelector("#compare", { timeout: 60000 });
  out.compare_rows = await page.$$eval("#compare tbody tr", (rs) => rs.map((r) => ({
    step: r.dataset.step, significant: r.classList.contains("significant"), marked: r.textContent.includes("●"),
  })));
  out.contrast.cohorts = await contrast(page);
  out.overflow_px.cohorts = await overflow(page);
  await page.unroute(COMPARE_URL);

  // The quiet server: empty, then one run inside its grace.
  await page.goto(quietBase + "/#/overview");
  await page.waitForSelector("#empty-state", { timeout: 60000 });
  out.empty_state = await page.textContent("#empty-state");
  out.contrast.empty = await contrast(page);
  const now = BigInt(Date.now()) * 1000000n;
  const span = (id, parent, name, step) => ({
    traceId: orphanTrace, spanId: id, parentSpanId: parent, name,
    startTimeUnixNano: String(now - 2000000000n), endTimeUnixNano: String(now - 1000000000n),
    attributes: [{ key: "agent.trajectory.step", value: { stringValue: step } }],
  });
  const sent = await fetch("http://" + quietOtlp + "/v1/traces", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ resourceSpans: [{
      resource: { attributes: [{ key: "service.name", value: { stringValue: "quiet" } }] },
      scopeSpans: [{ spans: [
        span("eee19b7ec3c1b172", "", "agent run", "agent"),
        span("eee19b7ec3c1b174", "eee19b7ec3c1b173", "orphan tool call", "tool"),
      ] }],
    }] }),
  });
  out.orphan_sent = sent.status;
  const deadline = Date.now() + 60000;
  out.quiet_pending_card = 0;
  while (Date.now() < deadline) {
    await page.goto(quietBase + "/#/overview?t=" + Date.now());
    await page.waitForSelector("#pending .num", { timeout: 60000 });
    out.quiet_pending_card = Number(await page.textContent("#pending .num"));
    if (out.quiet_pending_card > 0) break;
    await page.waitForTimeout(250);
  }
  out.pending_state = await page.textContent("#pending-state").catch(() => null);
  await page.screenshot({ path: shots + "/pending.png" });
  await page.goto(quietBase + "/#/trajectories");
  await page.waitForSelector("#trajectory-list", { timeout: 60000 });
  out.quiet_list_pending = await page.$$eval("#trajectory-list .badge.pending", (b) => b.length);
  await page.goto(quietBase + "/#/trajectory/" + orphanTrace);
  await showing(page, orphanTrace);
  out.anomalies = await page.$$eval("#anomalies li", (ls) => ls.map((l) => ({ kind: l.dataset.kind, text: l.textContent })));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
