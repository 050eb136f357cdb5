// Loads faultline's page in Debian's headless Chromium against a server that needs an
// API token, and reports what happened as one JSON object on stdout.
// Usage: node check_token.mjs <base-url> <token>
import { chromium } from "playwright-core";

const [base, token] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const out = { page_errors: [], csp_violations: [], api_requests: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  page.on("console", (m) => { if (/Content Security Policy/.test(m.text())) out.csp_violations.push(m.text()); });
  page.on("request", (r) => {
    if (new URL(r.url()).pathname.startsWith("/api/")) {
      out.api_requests.push({ path: new URL(r.url()).pathname, authorization: r.headers()["authorization"] || null });
    }
  });

  // No token yet: the data is refused and the page asks for the token.
  await page.goto(base + "/#/overview?window=24h");
  await page.waitForSelector("#token-form", { timeout: 60000 });
  out.form_shown = true;
  out.first_label = await page.textContent("#token-form label");

  // A wrong token is refused: the form comes back, saying so.
  await page.fill("#token-input", "not-the-token");
  await page.click("#token-form button");
  await page.waitForFunction(
    () => document.querySelector("#token-form label")?.textContent.includes("refused"),
    null,
    { timeout: 60000 },
  );
  out.refused_label = await page.textContent("#token-form label");

  // The right token: the overview shows its numbers.
  await page.fill("#token-input", token);
  await page.click("#token-form button");
  await page.waitForSelector("#totals", { timeout: 60000 });
  out.trajectories_after_token = Number(await page.textContent('[data-total="trajectories"] .num'));
  out.form_after_token = (await page.$("#token-form")) !== null;
  out.stored = await page.evaluate(() => sessionStorage.getItem("faultline.api-token"));

  // A reload in the same tab keeps the token: no form, the numbers again.
  out.api_requests = [];
  await page.reload();
  await page.waitForSelector("#totals", { timeout: 60000 });
  out.form_after_reload = (await page.$("#token-form")) !== null;
  out.requests_after_reload = out.api_requests.slice();

  // A new tab (new session storage) asks again.
  const other = await context.newPage();
  await other.goto(base + "/#/overview?window=24h");
  await other.waitForSelector("#token-form", { timeout: 60000 });
  out.new_tab_asks = true;
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
