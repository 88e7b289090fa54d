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
  event.waitUntil((async () => {
    for (let i = 0; i < 50; i++) {
      const shown = await self.registration.getNotifications();
      if (shown.length) {
        return log('shown', shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })));
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      await self.registration.showNotification('probe');
      return log('shown', { probe: (await self.registration.getNotifications()).length, permission: Notification.permission });
    } catch (e) {
      return log('shown', { error: String(e), permission: Notification.permission });
    }
  })());
});
