// Shared by the Chromium scripts: Debian's Chromium, headless, through playwright-core, with
// the flags this machine's closed network needs, and the service-worker registrations the
// DevTools protocol reports (to deliver pushes and sync events to).
const { chromium } = require('../interop/node_modules/playwright-core');

/** Starts headless Chromium (`CHROMIUM` or /usr/bin/chromium). */
function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** A DevTools session of `page`, and a map (scope URL -> registration id) kept up to date. */
async function registrations(context, page) {
  const cdp = await context.newCDPSession(page);
  const byScope = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations: list }) => {
    for (const r of list) if (!r.isDeleted) byScope.set(r.scopeURL, r.registrationId);
  });
  await cdp.send('ServiceWorker.enable');
  return { cdp, byScope };
}

module.exports = { launch, registrations };
