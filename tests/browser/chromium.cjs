// The headless Chromium the browser checks drive: Debian's (or WEFT_CHROMIUM),
// launched through playwright-core with the flags a container needs.
"use strict";
const { chromium } = require("playwright-core");

function launch() {
  return chromium.launch({
    executablePath: process.env.WEFT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

module.exports = { launch };
