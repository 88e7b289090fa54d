// Reports each push (its text) to the test; Firefox acks once the event is handled.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('push', (event) => {
  const text = event.data ? event.data.text() : null;
  event.waitUntil(
    fetch('/log', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'push', data: text }) }),
  );
});
