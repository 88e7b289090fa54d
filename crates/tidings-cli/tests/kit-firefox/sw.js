// The test app's service worker: the kit, configured, with hooks that report to the test.
import { installTidings } from '/tidings/tidings-sw.js';

const report = new URL(self.location).searchParams.get('report');
const log = (kind, data) => fetch(`${report}/log`, { method: 'POST', body: JSON.stringify({ kind, data }) });

installTidings({
  version: 'kit-test',
  title: 'Kit test',
  onBadge: (count) => log('badge', count),
});

// After the kit's own push handler: report what the browser now shows.
self.addEventListener('push', (event) => {
  const title = event.data ? JSON.parse(event.data.text()).notification.title : null;
  event.waitUntil((async () => {
    for (let i = 0; i < 50; i++) {
      const shown = (await self.registration.getNotifications()).filter((n) => n.title === title);
      if (shown.length) {
        return log('shown', shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })));
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return log('shown', { missing: title, permission: Notification.permission });
  })());
});

// What a real pushsubscriptionchange carries, for the test's report.
self.addEventListener('pushsubscriptionchange', (event) => {
  if (event.isTrusted) log('subscription-change', { oldSubscription: Boolean(event.oldSubscription), newSubscription: Boolean(event.newSubscription) });
});

// The test's stand-in for a pushsubscriptionchange without oldSubscription. (A constructed
// event cannot be waited on: the kit's handler starts its work all the same.)
self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'test-subscription-change') self.dispatchEvent(new ExtendableEvent('pushsubscriptionchange'));
});
