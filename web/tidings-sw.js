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
// always shown, even when an app hook throws), the app badge, notification clicks and
// closes, pushsubscriptionchange (the new subscription replaces the old at the hub, proven
// by the old one's auth, and is queued in the outbox when the hub cannot be reached),
// offline caching (precache bypassing the HTTP cache, cache-first for static files,
// network-first with a timeout for pages and API GETs, answered from the cache with
// `X-Tidings-Cache: hit` when the network fails, an offline page, old versions removed), the
// outbox (requests replayed until they arrive, on Background Sync where it exists and on
// start-up and page messages elsewhere; those to the hub with its CSRF token; an item that
// keeps failing, or is refused with 401 or 403, is set aside) and periodic refresh of chosen
// URLs.

import { SUBSCRIPTION_LOCK, afterAttempt, authOf, base64UrlToBytes, clickTarget, dueItems, hubError, isHubUrl, outboxItem, outcome, parsePush, registeredRecord, route, staleCaches, subscriptionRequest } from './tidings-core.js';
import * as idb from './tidings-idb.js';

/**
 * The kit's version. An app that puts it in its own `version` (the demo does) gets a new
 * cache, so a kit upgrade reaches visitors who already have the app.
 */
export const KIT_VERSION = '2';

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
  // outbox result ({ id, result: 'sent' | 'failed' | 'retry' | 'set-aside', status, error }).
  // An exception in a hook is logged, and the notification is shown all the same.
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
      // Past the HTTP cache: a new version must not precache the files of the last one.
      const urls = [...o.precache, ...(o.offlinePage ? [o.offlinePage] : [])];
      await cache.addAll(urls.map((url) => new Request(url, { cache: 'reload' })));
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

  self.addEventListener('pushsubscriptionchange', (event) => event.waitUntil(locked(() => resubscribe(event, o))));

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

/** An app hook's result; an exception in it is logged, so that the kit's work goes on. */
async function callHook(name, hook, ...args) {
  try {
    return await hook(...args);
  } catch (e) {
    console.error(`tidings: the ${name} hook failed`, e);
    return undefined;
  }
}

async function showPush(event, o) {
  let shown = parsePush(event.data ? event.data.text() : null, { title: o.title, navigate: o.navigate });
  if (shown.data !== null && o.onData) await callHook('onData', o.onData, shown.data, shown);
  if (o.onPush && (!shown.declarative || shown.mutable)) {
    const changed = await callHook('onPush', o.onPush, shown);
    if (changed) shown = { ...shown, ...changed };
  }
  // Always a notification: browsers revoke the permission of a service worker whose pushes
  // show none (Safari first). Options it refuses (a hook's, or a message's) leave the title.
  try {
    await self.registration.showNotification(shown.title, shown.options);
  } catch (e) {
    console.error('tidings: the notification was refused; showing its title only', e);
    await self.registration.showNotification(String(shown.title));
  }
  if (shown.badge !== undefined) await setBadge(shown.badge, o);
}

async function setBadge(count, o) {
  // Kept for pages of browsers without the Badging API (Tidings.unread()).
  await idb.put('state', count, 'badge');
  if (o.onBadge) await callHook('onBadge', o.onBadge, count);
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

/** Runs `work` under the Web Lock pages take to change the subscription, where there is one. */
function locked(work) {
  return self.navigator.locks ? self.navigator.locks.request(SUBSCRIPTION_LOCK, work) : work();
}

async function resubscribe(event, o) {
  const known = await idb.registered();
  // The proof of holding the old subscription is its auth: from the event, else from what
  // the hub last accepted (browsers that give no oldSubscription).
  const old = event.oldSubscription ? { endpoint: event.oldSubscription.endpoint, auth: authOf(event.oldSubscription) } : known;
  let subscription = event.newSubscription;
  if (!subscription) {
    // The key from the old subscription, else the one remembered, else the hub's (the hub
    // may be out of reach just now: the request then waits in the outbox).
    let key = event.oldSubscription && event.oldSubscription.options.applicationServerKey;
    if (!key && known && known.key) key = base64UrlToBytes(known.key);
    if (!key) key = base64UrlToBytes((await (await fetch(`${o.hub}/api/vapid-public-key`)).json()).publicKey);
    subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  // The stored topics too: should the hub no longer have the old subscription, nothing
  // would carry them over.
  const { path, body } = subscriptionRequest(old, subscription.toJSON(), { topics: known && known.topics });
  const url = new URL(`${o.hub}${path}`, self.location.origin).href;
  const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const answer = await hubFetch(o, url, init).catch(() => null);
  if (answer && answer.ok) {
    await idb.setRegistered(registeredRecord(subscription, (await answer.json()).topics));
  } else if (!answer || outcome(answer.status) === 'retry') {
    // The hub is out of reach: the outbox retries, rather than the hub missing the new
    // subscription until the app's next visit.
    await idb.put('outbox', outboxItem(url, init));
    if ('sync' in self.registration) await self.registration.sync.register(OUTBOX_SYNC).catch(() => {});
  } else {
    throw hubError(answer.status, await answer.text());
  }
}

let csrfToken = null;

async function session(o) {
  const answer = await fetch(`${o.hub}/api/session`, { credentials: 'include' });
  if (!answer.ok) throw hubError(answer.status, await answer.text());
  return (await answer.json()).csrfToken;
}

/**
 * fetch() to the hub, with its session's CSRF token: fetched on first use, kept, and fetched
 * again once on a 403 (a page may have started another session since).
 */
async function hubFetch(o, url, init) {
  const cached = Boolean(csrfToken);
  if (!cached) csrfToken = await session(o);
  const send = () => fetch(url, { ...init, credentials: 'include', headers: { ...init.headers, 'x-tidings-csrf': csrfToken } });
  const answer = await send();
  if (answer.status !== 403 || !cached) return answer;
  csrfToken = await session(o);
  return send();
}

let flushing = Promise.resolve({ retry: false });

/**
 * Sends every due outbox item, oldest first, each with its id as `Idempotency-Key` so that a
 * replay after a lost answer is recognised by the server. Stops at the first item that must
 * be retried, to keep the order; an item refused with 401 or 403, or failing
 * `MAX_ATTEMPTS` times, is set aside instead (kept, no longer replayed nor holding the others
 * back, until the page retries or discards it). One flush at a time. `now: true` (a sync
 * event, the page coming online) tries every item at once: the connection is back, so the
 * backoff is moot.
 */
export function flushOutbox(o = DEFAULTS, { now = false } = {}) {
  flushing = flushing.catch(() => {}).then(() => flushOnce(o, now));
  return flushing;
}

async function flushOnce(o, now) {
  // Offline, every attempt would fail and count towards setting items aside: the sync event
  // or the page's online event flushes when the connection is back.
  if (self.navigator.onLine === false) return { retry: true };
  for (const item of dueItems(await idb.all('outbox'), now ? Infinity : Date.now())) {
    let status = null;
    let error = null;
    try {
      status = (await replay(item, o)).status;
    } catch (e) {
      error = e;
    }
    const at = Date.now();
    const { result, item: next } = afterAttempt(item, status, error, at);
    if (next) await idb.put('outbox', next);
    else await idb.remove('outbox', item.id);
    const retryIn = result === 'retry' ? { retryIn: next.nextAttemptAt - at } : {};
    await report(o, { id: item.id, result, status, error: error && String(error), ...retryIn });
    if (result === 'retry') return { retry: true };
  }
  return { retry: false };
}

/** One attempt at an item: to the hub's origin with its CSRF token (and session cookie). */
function replay(item, o) {
  const init = { method: item.method, headers: { ...item.headers, 'idempotency-key': item.id }, body: item.body };
  if (isHubUrl(item.url, o.hub, self.location.origin)) return hubFetch(o, item.url, init);
  return fetch(item.url, { ...init, credentials: 'same-origin' });
}

async function report(o, event) {
  if (o.onOutbox) await callHook('onOutbox', o.onOutbox, event);
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
