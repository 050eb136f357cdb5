// Loads faultline's page in Debian's headless Chromium and reports what a person sees,
// as one JSON object on stdout. Usage: node check_page.mjs <base-url> <failed-trace> <xss-trace> <screenshot-dir>
import { chromium } from "playwright-core";

const [base, failedTrace, xssTrace, shots] = process.argv.slice(2);

// Views change in place (hash routing): wait for the one asked for, not for a selector
// the previous view may also have.
async function showing(page, traceId) {
  await page.waitForFunction(
    (id) => document.querySelector("main h1")?.textContent.includes(id) && document.querySelector(".waterfall"),
    traceId,
    { timeout: 60000 },
  );
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = { dialogs: [], page_errors: [], csp_violations: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("dialog", async (d) => { out.dialogs.push(d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) out.csp_violations.push(m.text()); });

  // Overview.
  await page.goto(base + "/#/overview?window=24h");
  await page.waitForSelector("#totals", { timeout: 60000 });
  out.totals = {};
  for (const k of ["trajectories", "failed", "recovered", "success"]) {
    out.totals[k] = Number(await page.textContent(`[data-total="${k}"] .num`));
  }
  out.steps = await page.$$eval("#steps tbody tr", (rows) => rows.map((r) => ({
    step: r.dataset.step,
    failures: Number(r.querySelector('[data-col="failures"]').textContent),
    root_causes: Number(r.querySelector('[data-col="root_causes"]').textContent),
  })));
  await page.screenshot({ path: shots + "/overview.png", fullPage: true });

  // A failed trajectory: the blamed step is shown and highlighted.
  await page.goto(base + "/#/trajectory/" + failedTrace);
  await showing(page, failedTrace);
  out.blamed_step = await page.textContent("#blamed-step").catch(() => null);
  out.highlighted_rows = await page.$$eval(".span-row.blamed", (r) => r.length);
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

  // The trajectory list shows the hostile service name as text too.
  await page.goto(base + "/#/trajectories?limit=1000");
  await page.waitForSelector("#trajectory-list", { timeout: 60000 });
  out.list_rows = await page.$$eval("#trajectory-list tbody tr", (r) => r.length);
  out.xss_executed = out.xss_executed || (await page.evaluate(() => window.__xss === true));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
