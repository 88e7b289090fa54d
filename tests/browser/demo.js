// Drives Debian's Chromium (headless, through playwright-core) through the demo app of
// `tidings hub --demo`, and prints what it saw as JSON:
// - the app works offline from the service worker's cache after one online visit;
// - a message written offline waits in the outbox and is delivered once the connection is
//   back, by the Background Sync event (fired through the DevTools protocol);
// - a push delivered through the DevTools protocol (ServiceWorker.deliverPushMessage) with a
//   Declarative Web Push payload is shown with its title and body;
// - a notificationclick on it brings the app's window to the notification's URL.
// Usage: node demo.js <hub url> <directory for screenshots>
const { launch, registrations: track } = require('./chromium.js');
const { sleep, until, run } = require('./wait.js');

const [hub, shots] = process.argv.slice(2);
const serverMessages = async () => (await (await fetch(`${hub}/demo/api/messages`)).json()).messages;


async function main() {
  const browser = await launch();
  const result = {};
  try {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    await context.grantPermissions(['notifications'], { origin: hub });
    const page = await context.newPage();
    const { cdp, byScope: registrations } = await track(context, page);

    // Online, first visit: the service worker installs and caches the app shell.
    await page.goto(`${hub}/`);
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.reload();
    await until('the service worker to control the page', () => page.evaluate(() => Boolean(navigator.serviceWorker.controller)));
    await page.fill('#author', 'Ada');
    await page.fill('#text', 'hello while online');
    await page.click('#compose button');
    await until('the online message', async () => (await serverMessages()).some((m) => m.text === 'hello while online'));
    await page.waitForSelector('li:not(.pending) >> text=hello while online');

    // Offline: the app opens from the cache, with the messages it had.
    await context.setOffline(true);
    await page.reload();
    result.offlineTitle = await page.title();
    result.offlineShowsMessages = await page.locator('li', { hasText: 'hello while online' }).count();
    result.offlineStatus = await page.textContent('#network');

    // A message written offline waits in the outbox.
    await page.fill('#text', 'written while offline');
    await page.click('#compose button');
    await page.waitForSelector('li.pending >> text=written while offline');
    await sleep(500);
    result.deliveredWhileOffline = (await serverMessages()).filter((m) => m.text === 'written while offline').length;
    await page.screenshot({ path: `${shots}/demo-offline.png` });

    // Back online: the Background Sync event sends it, once, even if it fires twice.
    await context.setOffline(false);
    const origin = new URL(hub).origin;
    const registrationId = await until('the registration id', () => registrations.get(`${origin}/`));
    await cdp.send('ServiceWorker.dispatchSyncEvent', { origin, registrationId, tag: 'tidings-outbox', lastChance: false });
    await until('the outbox delivery', async () => (await serverMessages()).some((m) => m.text === 'written while offline'));
    await cdp.send('ServiceWorker.dispatchSyncEvent', { origin, registrationId, tag: 'tidings-outbox', lastChance: false });
    await sleep(500);
    result.deliveredAfterSync = (await serverMessages()).filter((m) => m.text === 'written while offline').length;
    await page.waitForSelector('li:not(.pending) >> text=written while offline');

    // A push, as the hub sends it.
    const payload = {
      web_push: 8030,
      notification: { title: 'Grace', body: 'Are you there?', navigate: `${hub}/?from=notification`, tag: 'chat' },
      app_badge: 2,
    };
    await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(payload) });
    result.notifications = await until('the notification', async () => {
      const shown = await page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
        .map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })));
      return shown.length ? shown : null;
    });

    // A click on it: the open window goes to the notification's URL.
    const [worker] = context.serviceWorkers();
    await worker.evaluate(async () => {
      const [notification] = await self.registration.getNotifications();
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification }));
    });
    await until('the navigation', async () => page.url().includes('from=notification'));
    result.afterClick = page.url();
    await page.waitForSelector('li >> text=written while offline');
    await page.screenshot({ path: `${shots}/demo-chromium.png` });
  } finally {
    await browser.close();
  }
  return result;
}

run(main);
