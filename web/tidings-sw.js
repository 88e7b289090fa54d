// The service-worker half of the Tidings PWA kit. An app's service worker imports it and
// calls installTidings() once, at the top level:
//
//   // sw.js, registered with navigator.serviceWorker.register('/sw.js', { type: 'module' })
//   import { installTidings } from '/tidings/tidings-sw.js';
//   installTidings({
//     version: 'v3',                                  // bump to replace the cached app shell
//     precache: ['/', '/app.js', '/style.css', '/offline.html'],
//     offlinePage: '/offline.html',
//     title: 'My app',                                // for pushes that are not notifications
//   });
//
// It handles: push (Declarative Web Push JSON, plain text, data messages; a notification is
// always shown), the app badge, notification clicks and closes, pushsubscriptionchange,
// offline caching (precache, cache-first for static files, network-first with a timeout for
// pages and API GETs, answered from the cache with `X-Tidings-Cache: hit` when the network
// fails, an offline page, old versions removed), the outbox (requests replayed
// until they arrive, on Background Sync where it exists and on start-up and page messages
// elsewhere) and periodic refresh of chosen URLs.

import { backoff, base64UrlToBytes, clickTarget, dueItems, outcome, parsePush, retried, route, staleCaches } from './tidings-core.js';
import * as idb from './tidings-idb.js';

/** The Background Sync tag of the outbox. */
export const OUTBOX_SYNC = 'tidings-outbox';
/** The periodic sync tag of the refresh. */
export const REFRESH_SYNC = 'tidings-refresh';

const DEFAULTS = {
  hub: '',
  version: 'v1',
  cachePrefix: 'tidings',
  precache: [],
  offlinePage: null,
  networkTimeout: 3000,
  apiPrefix: '/api/',
  staticPattern: /\.(?:js|mjs|css|png|jpe?g|gif|svg|ico|webp|woff2?|webmanifest)$/,
  noCache: /^\/(?:api\/(?:session|subscriptions)|admin)/,
  title: 'New notification',
  navigate: '/',
  refresh: [],
  reportCloses: false,
  // Hooks: onPush(shown) may return a changed { title, options, badge } (ignored for a
  // Declarative Web Push message that is not `mutable`); onData(data, shown) sees data
  // messages; onBadge(count) is called with every badge change; onOutbox(event) with every
  // outbox result ({ id, result: 'sent' | 'failed' | 'retry', status, error }).
  onPush: null,
  onData: null,
  onBadge: null,
  onOutbox: null,
};

/** Installs the kit's event handlers in this service worker. Returns the settings in use. */
export function installTidings(settings = {}) {
  const o = { ...DEFAULTS, ...settings };
  const cacheName = `${o.cachePrefix}-${o.version}`;

  self.addEventListener('install', (event) => {
    event.waitUntil((async () => {
      const cache = await caches.open(cacheName);
      await cache.addAll([...o.precache, ...(o.offlinePage ? [o.offlinePage] : [])]);
      await self.skipWaiting();
    })());
  });

  self.addEventListener('activate', (event) => {
    event.waitUntil((async () => {
      for (const name of staleCaches(await caches.keys(), o.cachePrefix, o.version)) await caches.delete(name);
      await self.clients.claim();
      await flushOutbox(o);
    })());
  });

  self.addEventListener('fetch', (event) => {
    const { request } = event;
    const how = route(request, { origin: self.location.origin, apiPrefix: o.apiPrefix, staticPattern: o.staticPattern, noCache: o.noCache });
    if (how === 'cache-first') event.respondWith(cacheFirst(request, cacheName));
    else if (how === 'network-first') event.respondWith(networkFirst(request, cacheName, o));
  });

  self.addEventListener('push', (event) => event.waitUntil(showPush(event, o)));

  self.addEventListener('notificationclick', (event) => {
    event.notification.close();
    const url = clickTarget(event.notification.data, event.action, self.location.origin);
    event.waitUntil(focusOrOpen(url).catch(() => {}));
  });

  self.addEventListener('notificationclose', (event) => {
    if (!o.reportCloses) return;
    const body = JSON.stringify({ type: 'close', tag: event.notification.tag || null });
    event.waitUntil(fetch(`${o.hub}/api/notification-events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).catch(() => {}));
  });

  self.addEventListener('pushsubscriptionchange', (event) => event.waitUntil(resubscribe(event, o)));

  self.addEventListener('sync', (event) => {
    if (event.tag !== OUTBOX_SYNC) return;
    // Throwing asks the browser to fire the event again later, with its own backoff.
    event.waitUntil(flushOutbox(o, { now: true }).then((r) => { if (r.retry) throw new Error('outbox: some requests will be retried'); }));
  });

  self.addEventListener('periodicsync', (event) => {
    if (event.tag === REFRESH_SYNC) event.waitUntil(refresh(o, cacheName));
  });

  self.addEventListener('message', (event) => {
    const type = event.data && event.data.type;
    if (type === 'tidings-flush') event.waitUntil(flushOutbox(o, { now: true }));
    else if (type === 'tidings-refresh') event.waitUntil(refresh(o, cacheName));
  });

  // Browsers without Background Sync (Firefox, Safari): whatever is due goes out whenever
  // the service worker starts.
  flushOutbox(o).catch(() => {});
  return o;
}

async function cacheFirst(request, cacheName) {
  const cached = await caches.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) (await caches.open(cacheName)).put(request, response.clone());
  return response;
}

async function networkFirst(request, cacheName, o) {
  const fetching = fetch(request).then(async (response) => {
    if (response.ok) await (await caches.open(cacheName)).put(request, response.clone());
    return response;
  });
  const timeout = new Promise((resolve) => setTimeout(resolve, o.networkTimeout, null));
  try {
    const response = await Promise.race([fetching, timeout]);
    if (response) return response;
  } catch {
    // Offline: the cache answers.
  }
  const cached = await caches.match(request);
  if (cached) return fromCache(cached);
  if (request.mode === 'navigate' && o.offlinePage) {
    const offline = await caches.match(o.offlinePage);
    if (offline) return offline;
  }
  // Slow but online, and nothing cached: wait for the network after all.
  return fetching.catch(() => new Response(JSON.stringify({ error: 'offline' }), { status: 503, headers: { 'content-type': 'application/json' } }));
}

/** A cached answer given in place of the network's, marked so that a page can tell it is offline. */
function fromCache(response) {
  const headers = new Headers(response.headers);
  headers.set('x-tidings-cache', 'hit');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

async function showPush(event, o) {
  let shown = parsePush(event.data ? event.data.text() : null, { title: o.title, navigate: o.navigate });
  if (shown.data !== null && o.onData) await o.onData(shown.data, shown);
  if (o.onPush && (!shown.declarative || shown.mutable)) {
    const changed = await o.onPush(shown);
    if (changed) shown = { ...shown, ...changed };
  }
  // Always a notification: Safari revokes the permission of a push that shows none.
  await self.registration.showNotification(shown.title, shown.options);
  if (shown.badge !== undefined) await setBadge(shown.badge, o);
}

async function setBadge(count, o) {
  // Kept for pages of browsers without the Badging API (Tidings.unread()).
  await idb.put('state', count, 'badge');
  if (o.onBadge) await o.onBadge(count);
  const nav = self.navigator;
  try {
    if (count === 0 && nav.clearAppBadge) await nav.clearAppBadge();
    else if (count > 0 && nav.setAppBadge) await nav.setAppBadge(count);
  } catch {
    // Not installed as an app, or not supported: nothing to show the badge on.
  }
}

async function focusOrOpen(url) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const exact = windows.find((c) => c.url === url);
  if (exact) return exact.focus();
  const ours = windows.find((c) => new URL(c.url).origin === new URL(url).origin);
  if (ours && 'navigate' in ours) {
    // Focusing needs the click's user activation; navigating does not, but works only for a
    // window this worker controls: otherwise a new window it is.
    await ours.focus().catch(() => {});
    const navigated = await ours.navigate(url).catch(() => null);
    if (navigated) return navigated;
  }
  return self.clients.openWindow(url);
}

async function resubscribe(event, o) {
  const previous = event.oldSubscription ? event.oldSubscription.endpoint : await idb.get('state', 'endpoint');
  let subscription = event.newSubscription;
  if (!subscription) {
    let key = event.oldSubscription && event.oldSubscription.options.applicationServerKey;
    if (!key) key = base64UrlToBytes((await (await fetch(`${o.hub}/api/vapid-public-key`)).json()).publicKey);
    subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  const { csrfToken } = await (await fetch(`${o.hub}/api/session`, { credentials: 'include' })).json();
  const body = previous ? { old_endpoint: previous, subscription: subscription.toJSON() } : { subscription: subscription.toJSON() };
  const path = previous ? '/api/subscriptions/replace' : '/api/subscriptions';
  const answer = await fetch(`${o.hub}${path}`, {
    method: 'POST',
    credentials: 'include',
    headers: { 'content-type': 'application/json', 'x-tidings-csrf': csrfToken },
    body: JSON.stringify(body),
  });
  if (answer.ok) await idb.put('state', subscription.endpoint, 'endpoint');
}

let flushing = Promise.resolve({ retry: false });

/**
 * Sends every due outbox item, oldest first, each with its id as `Idempotency-Key` so that a
 * replay after a lost answer is recognised by the server. Stops at the first item that must
 * be retried, to keep the order. One flush at a time. `now: true` (a sync event, the page
 * coming online) tries every item at once: the connection is back, so the backoff is moot.
 */
export function flushOutbox(o = DEFAULTS, { now = false } = {}) {
  flushing = flushing.catch(() => {}).then(() => flushOnce(o, now));
  return flushing;
}

async function flushOnce(o, now) {
  for (const item of dueItems(await idb.all('outbox'), now ? Infinity : Date.now())) {
    let status = null;
    let error = null;
    try {
      const response = await fetch(item.url, {
        method: item.method,
        headers: { ...item.headers, 'idempotency-key': item.id },
        body: item.body,
        credentials: 'same-origin',
      });
      status = response.status;
    } catch (e) {
      error = e;
    }
    const result = outcome(status);
    if (result === 'retry') {
      await idb.put('outbox', retried(item, error || `HTTP ${status}`, Date.now()));
      await report(o, { id: item.id, result: 'retry', status, error: error && String(error), retryIn: backoff(item.attempts + 1) });
      return { retry: true };
    }
    await idb.remove('outbox', item.id);
    await report(o, { id: item.id, result: result === 'done' ? 'sent' : 'failed', status });
  }
  return { retry: false };
}

async function report(o, event) {
  if (o.onOutbox) await o.onOutbox(event);
  for (const client of await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) {
    client.postMessage({ type: 'tidings-outbox', ...event });
  }
}

async function refresh(o, cacheName) {
  const cache = await caches.open(cacheName);
  await Promise.all(o.refresh.map(async (url) => {
    const response = await fetch(url).catch(() => null);
    if (response && response.ok) await cache.put(url, response);
  }));
  await idb.put('state', Date.now(), 'refreshedAt');
}
