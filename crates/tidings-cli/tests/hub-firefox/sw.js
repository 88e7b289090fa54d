// Shows each push as a notification (the Declarative Web Push JSON the hub sends) and
// reports the payload and the shown notifications to the test.
const report = new URL(self.location).searchParams.get('report');
const log = (kind, data) => fetch(`${report}/log`, { method: 'POST', body: JSON.stringify({ kind, data }) });

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('push', (event) => {
  event.waitUntil((async () => {
    const payload = event.data.json();
    const { title, ...options } = payload.notification;
    let shown = null;
    try {
      await self.registration.showNotification(title, options);
      shown = (await self.registration.getNotifications()).map((n) => ({ title: n.title, body: n.body }));
    } catch (e) {
      shown = String(e);
    }
    await log('push', { payload, shown });
  })());
});
