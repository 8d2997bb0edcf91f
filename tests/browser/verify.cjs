// Opens a verification link from an email in headless Chromium (playwright-core,
// Chromium from Debian), checks that opening it verified nothing yet, presses
// Verify, and prints VERIFIED once the page says so. A link without a token must be
// refused on the page with the button disabled: it prints NO TOKEN and the text.
// Usage: node verify.cjs <link>
"use strict";
const { launch } = require("./chromium.cjs");

const [link] = process.argv.slice(2);
if (!link) {
  console.error("usage: node verify.cjs <link>");
  process.exit(2);
}

async function main() {
  const browser = await launch();
  const page = await browser.newPage();
  try {
    await page.goto(link);
    if (!new URL(link).searchParams.get("token")) {
      // A link without its token: refused on the page, with nothing to press.
      const shown = await page.evaluate(() => ({
        state: document.querySelector("#result")?.dataset.state,
        disabled: document.querySelector("#verify")?.disabled,
        text: document.querySelector("#result")?.textContent,
      }));
      if (shown.state !== "refused" || !shown.disabled) throw new Error(`without a token: ${JSON.stringify(shown)}`);
      process.stdout.write(`NO TOKEN ${shown.text}\n`);
      await browser.close();
      return;
    }
    const before = await page.evaluate(() => ({
      state: document.querySelector("#result")?.dataset.state,
      address: location.search,
    }));
    if (before.state !== "waiting") throw new Error(`before the button: ${JSON.stringify(before)}`);
    if (before.address.includes("token")) throw new Error("the token stays in the address bar");
    process.stdout.write("OPENED\n");
    // The caller may check the address is still unverified here.
    await new Promise((resolve) => process.stdin.once("data", resolve));
    process.stdin.pause();
    await page.click("#verify");
    await page.waitForFunction(() => document.querySelector("#result")?.dataset.state !== "waiting", null, { timeout: 30000 });
    const after = await page.evaluate(() => ({
      state: document.querySelector("#result").dataset.state,
      text: document.querySelector("#result").textContent,
    }));
    if (after.state !== "verified") throw new Error(`after the button: ${JSON.stringify(after)}`);
    process.stdout.write(`VERIFIED ${after.text}\n`);
  } catch (err) {
    console.error(`verify page check failed: ${err.message}`);
    await browser.close();
    process.exit(1);
  }
  await browser.close();
}

main().catch((err) => { console.error(err); process.exit(1); });
