// Screenshots of every view of faultline's page at 1280×800, for a person to look at.
// Usage: node screenshots.mjs <base-url-with-data> <base-url-of-an-empty-server> <out-dir>
// Prints the files written, one per line. Fails (exit 1) on a page error, a CSP
// violation, or a view that does not render.
import { chromium } from "playwright-core";

const [base, emptyBase, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (e) => problems.push("page error: " + e));
  page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) problems.push("CSP: " + m.text()); });
  const api = async (b, path) => (await page.request.get(b + path)).json();

  const failed = await api(base, "/api/v1/trajectories?outcome=failed&limit=50");
  // A trajectory with a root cause and several spans: the most telling trajectory view.
  const pick = (failed.trajectories || []).sort((a, b) => b.span_count - a.span_count)[0];
  const views = [
    ["overview", base + "/#/overview?window=1h", "#steps"],
    ["overview-24h-by-model", base + "/#/overview?window=24h&by=model", "#steps"],
    ["trajectories", base + "/#/trajectories", "#trajectory-list"],
    ["trajectory", base + "/#/trajectory/" + (pick ? pick.trace_id : ""), "#root-cause"],
    ["reasons", base + "/#/reasons?window=1h", "#reasons"],
    ["cohorts", base + "/#/cohorts?window=ring", "main h1"],
    ["compare", base + "/#/cohorts?window=ring&a=prompt_version%3Dv6&b=prompt_version%3Dv7", "#compare"],
    ["empty-server", emptyBase + "/#/overview", "#empty-state"],
  ];
  for (const [name, url, selector] of views) {
    await page.goto(url);
    try {
      await page.waitForSelector(selector, { timeout: 60000 });
      await page.waitForLoadState("networkidle");
    } catch (e) {
      problems.push(name + ": " + selector + " not shown");
    }
    const file = out + "/" + name + ".png";
    await page.screenshot({ path: file });
    await page.screenshot({ path: out + "/" + name + "-full.png", fullPage: true });
    console.log(file);
  }
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
