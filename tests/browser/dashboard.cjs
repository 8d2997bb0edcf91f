// Drives the live dashboard in headless Chromium (playwright-core, Chromium from
// Debian). Usage: node dashboard.cjs <url> <expected-signups> <screenshot.png>
// Prints READY once the page is live (the caller then signs someone up), SEEN once
// the signup shows in the counters and the feed, then saves a screenshot.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, expected, shot] = process.argv.slice(2);
if (!url || !expected || !shot) {
  console.error("usage: node dashboard.cjs <url> <expected-signups> <screenshot.png>");
  process.exit(2);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.WEFT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  try {
    await page.goto(url);
    await page.waitForFunction(
      () => document.querySelector("#status")?.dataset.state === "live" && Number(document.body.dataset.updates) >= 1,
      null, { timeout: 90000 });
    process.stdout.write("READY\n");
    await page.waitForFunction(
      (want) => document.querySelector("#signups")?.textContent === want
        && [...document.querySelectorAll("#feed li")].some((li) => li.textContent.includes("UserSignedUp")),
      expected, { timeout: 90000 });
    process.stdout.write("SEEN\n");
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`SCREENSHOT ${shot}\n`);
  } catch (err) {
    const state = await page.evaluate(() => ({
      status: document.querySelector("#status")?.textContent,
      signups: document.querySelector("#signups")?.textContent,
      feed: [...document.querySelectorAll("#feed li")].slice(0, 5).map((li) => li.textContent),
    })).catch(() => ({}));
    console.error(`dashboard check failed: ${err.message}\npage: ${JSON.stringify(state)}\nconsole errors: ${JSON.stringify(problems)}`);
    await page.screenshot({ path: shot.replace(/(\.png)?$/, "-failure.png"), fullPage: true }).catch(() => {});
    await browser.close();
    process.exit(1);
  }
  await browser.close();
}

main().catch((err) => { console.error(err); process.exit(1); });
