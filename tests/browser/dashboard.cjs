// Drives the live dashboard in headless Chromium (playwright-core, Chromium from
// Debian). Usage:
//   node dashboard.cjs <url> <expected-signups> <screenshot.png> <staff-email> <password>
// Checks that the signed-out page shows totals but no feed, signs in as the staff
// member, prints READY once the page is live again (the caller then signs someone
// up), SEEN once the signup shows in the counters and the feed (with no address in
// it). Then the charts must have their axes and the minute chart the orders, and
// the layout must hold (nothing wider than its box, no part of a feed row over
// another) at 1280 px and at 380 px wide; a screenshot of each is saved, the narrow
// one beside the first as `<name>-narrow.png`. Last, the operations view (staff
// only, hidden when signed out) must chart the minute windows of orders, emails and
// sign-ups: `<name>-operations.png`.
"use strict";
const fs = require("fs");
const path = require("path");
const { launch } = require("./chromium.cjs");

const [url, expected, shot, email, password] = process.argv.slice(2);
if (!url || !expected || !shot || !email || !password) {
  console.error("usage: node dashboard.cjs <url> <expected-signups> <screenshot.png> <staff-email> <password>");
  process.exit(2);
}

// What of the page is out of its box: the page wider than the window, text wider
// than its element, parts of a feed row drawn over each other.
async function layoutProblems(page) {
  return page.evaluate(() => {
    const out = [];
    const root = document.documentElement;
    if (root.scrollWidth > window.innerWidth + 1) {
      out.push(`the page is ${root.scrollWidth} px wide in a ${window.innerWidth} px window`);
    }
    for (const el of document.querySelectorAll("section, .counter dd, ul.plain li, #feed li > *")) {
      if (el.scrollWidth > el.clientWidth + 1) {
        out.push(`"${el.textContent.slice(0, 40)}" is ${el.scrollWidth} px wide in ${el.clientWidth} px`);
      }
    }
    for (const li of document.querySelectorAll("#feed li")) {
      const boxes = [...li.children].map((c) => c.getBoundingClientRect());
      boxes.forEach((a, i) => boxes.slice(i + 1).forEach((b) => {
        if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1) {
          out.push(`the parts of "${li.textContent.slice(0, 60)}" overlap`);
        }
      }));
    }
    return out;
  });
}

async function layoutHolds(page, where) {
  const problems = await layoutProblems(page);
  if (problems.length > 0) throw new Error(`the layout breaks ${where}: ${problems.slice(0, 5).join("; ")}`);
}

async function main() {
  const browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  try {
    await page.goto(url);
    const live = () => document.querySelector("#status")?.dataset.state === "live" && Number(document.body.dataset.updates) >= 1;
    await page.waitForFunction(live, null, { timeout: 90000 });
    // Signed out: the totals, and neither a feed nor anyone's address.
    const signedOut = await page.evaluate(() => ({
      note: document.querySelector("#feed-note")?.dataset.state,
      feed: document.querySelectorAll("#feed li").length,
      form: !document.querySelector("#signin")?.hidden,
      tabs: !document.querySelector("#tabs")?.hidden,
    }));
    if (signedOut.note !== "anonymous" || signedOut.feed !== 0 || !signedOut.form || signedOut.tabs) {
      throw new Error(`signed out, the page shows ${JSON.stringify(signedOut)}`);
    }
    await page.fill("#signin-email", email);
    await page.fill("#signin-password", password);
    // Counted from before the click: the staff stream's first update may come before
    // this script sees the signed-in state, and nothing else need follow it.
    await page.evaluate(() => { document.body.dataset.updates = "0"; });
    await page.click("#signin button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#feed-note")?.dataset.state === "staff", null, { timeout: 30000 });
    await page.waitForFunction(live, null, { timeout: 90000 });
    process.stdout.write("READY\n");
    await page.waitForFunction(
      (want) => document.querySelector("#signups")?.textContent === want
        && [...document.querySelectorAll("#feed li")].some((li) => li.textContent.includes("UserSignedUp"))
        && [...document.querySelectorAll("#feed li")].some((li) => li.textContent.includes("ContactVerificationRequested")),
      expected, { timeout: 90000 });
    const feed = await page.evaluate(() => document.querySelector("#feed").textContent);
    if (feed.includes("@")) throw new Error(`the feed shows an address: ${feed}`);
    process.stdout.write("SEEN\n");
    // The welcome orders in this minute's bar; both charts with their axes.
    await page.waitForFunction(() => document.querySelectorAll("#minutes-chart rect.bar").length >= 1
      && document.querySelectorAll("#minutes-chart text.y").length >= 2
      && document.querySelectorAll("#minutes-chart text.x").length === 6
      && document.querySelectorAll("#orders-chart rect.bar").length >= 1
      && document.querySelectorAll("#orders-chart text.x").length === 6, null, { timeout: 30000 });
    await layoutHolds(page, "1280 px wide");
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`SCREENSHOT ${shot}\n`);
    const narrow = shot.replace(/(\.png)?$/, "-narrow.png");
    await page.setViewportSize({ width: 380, height: 900 });
    await layoutHolds(page, "380 px wide");
    await page.screenshot({ path: narrow, fullPage: true });
    process.stdout.write(`SCREENSHOT ${narrow}\n`);
    // Staff have an operations view: the minute windows of orders, emails and
    // sign-ups, each chart with bars; the overview hidden meanwhile.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.click("#tab-operations");
    await page.waitForFunction(() => document.querySelector("#overview").hidden
      && !document.querySelector("#operations").hidden
      && ["#ops-orders", "#ops-emails", "#ops-signups"].every((c) => document.querySelectorAll(`${c} rect.bar`).length >= 1)
      && document.querySelector("#ops-late").textContent.length > 0, null, { timeout: 30000 });
    await layoutHolds(page, "in the operations view");
    const operations = shot.replace(/(\.png)?$/, "-operations.png");
    await page.screenshot({ path: operations, fullPage: true });
    process.stdout.write(`SCREENSHOT ${operations}\n`);
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
