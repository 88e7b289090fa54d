// Drives Debian's Chromium (headless, through playwright-core) through the kit's test page
// (crates/tidings-cli/tests/kit-chromium/, served by `tidings hub --static-dir`), and prints
// what it saw as JSON:
// - pushes delivered through the DevTools protocol whose app hooks throw (or return options
//   the browser refuses) are shown all the same;
// - an outbox item the hub refuses with 401 is set aside and does not hold back the next
//   one; the page lists it and discards it.
// Usage: node kit-chromium.js <hub url>
const { launch, registrations: track } = require('./chromium.js');
const { until, run } = require('./wait.js');

const [hub] = process.argv.slice(2);

async function main() {
  const browser = await launch();
  const result = {};
  try {
    const context = await browser.newContext();
    await context.grantPermissions(['notifications'], { origin: hub });
    const page = await context.newPage();
    const { cdp, byScope: registrations } = await track(context, page);
    await page.goto(`${hub}/`);
    await page.evaluate(() => window.ready);
    // Activated (it claims the page once its activation is done).
    await until('the service worker to control the page', () => page.evaluate(() => Boolean(navigator.serviceWorker.controller)));
    const origin = new URL(hub).origin;
    const registrationId = await until('the registration id', () => registrations.get(`${origin}/`));
    const shown = () => page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
      .map((n) => ({ title: n.title, body: n.body })));

    const pushes = [
      JSON.stringify({ kind: 'boom', body: 'a data message' }),
      'throw in onPush',
      JSON.stringify({ web_push: 8030, mutable: true, notification: { title: 'Refused options', body: 'b', navigate: `${hub}/` } }),
    ];
    for (const data of pushes) await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data });
    result.notifications = await until('three notifications', async () => {
      const list = await shown();
      return list.length >= 3 ? list : null;
    });

    // The outbox: a request the hub refuses (401: no API key) is set aside at once; the one
    // after it is still sent.
    result.queued = await page.evaluate(async () => [
      await window.push.send('/api/v1/sends', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"to":"everyone","text":"x"}' }),
      await window.push.send('/api/notification-events', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type":"close"}' }),
    ]);
    result.outboxResults = await until('both outbox results', async () => {
      const results = await page.evaluate(() => window.outboxResults);
      return results.length >= 2 ? results : null;
    });
    result.outbox = await page.evaluate(async () => (await window.push.outbox()).map((i) => ({ id: i.id, setAside: i.setAside, lastError: i.lastError })));
    result.stateBefore = (await page.evaluate(() => window.push.state())).outbox;
    result.discarded = await page.evaluate((id) => window.push.discardOutbox(id), result.queued[0]);
    result.stateAfter = (await page.evaluate(() => window.push.state())).outbox;
  } finally {
    await browser.close();
  }
  return result;
}

run(main);
