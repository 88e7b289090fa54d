// The pure parts of the Tidings PWA kit: no DOM, no service worker, no storage, so that
// node's test runner checks them (web/test/) and both halves of the kit share them.

/** The Declarative Web Push marker (`web_push`): the number of the Web Push RFC. */
export const DECLARATIVE = 8030;

/**
 * What a push payload asks to show. `text` is the payload as text (null without one).
 * Returns { title, options, badge, navigate, data, declarative, mutable }:
 * - a Declarative Web Push message ({"web_push": 8030, "notification": {...}}) gives its
 *   notification, app badge and navigate URL;
 * - other JSON is a data message: shown with `defaults.title` and its `body`/`title` members
 *   if any, and handed to the app's hook as `data`;
 * - anything else is shown as text under `defaults.title`.
 */
export function parsePush(text, defaults = {}) {
  const title = defaults.title || 'New notification';
  const navigate = defaults.navigate || '/';
  if (text == null || text === '') {
    return { title, options: { data: { navigate } }, badge: undefined, navigate, data: null, declarative: false, mutable: true };
  }
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    return { title, options: { body: text, data: { navigate } }, badge: undefined, navigate, data: null, declarative: false, mutable: true };
  }
  if (json && json.web_push === DECLARATIVE && json.notification && typeof json.notification.title === 'string') {
    const n = json.notification;
    const target = n.navigate || navigate;
    const actions = Array.isArray(n.actions) ? n.actions.filter((a) => a && a.action && a.title) : [];
    const options = {
      body: n.body,
      icon: n.icon,
      image: n.image,
      badge: n.badge,
      tag: n.tag,
      silent: n.silent,
      lang: n.lang,
      dir: n.dir,
      actions: actions.map((a) => ({ action: a.action, title: a.title })),
      data: { navigate: target, actions: Object.fromEntries(actions.map((a) => [a.action, a.navigate || target])) },
    };
    for (const key of Object.keys(options)) if (options[key] === undefined) delete options[key];
    const badge = Number.isInteger(json.app_badge) && json.app_badge >= 0 ? json.app_badge : undefined;
    return { title: n.title, options, badge, navigate: target, data: null, declarative: true, mutable: json.mutable === true };
  }
  const body = json && typeof json === 'object' && typeof json.body === 'string' ? json.body : undefined;
  const shownTitle = json && typeof json === 'object' && typeof json.title === 'string' ? json.title : title;
  return { title: shownTitle, options: { body, data: { navigate } }, badge: undefined, navigate, data: json, declarative: false, mutable: true };
}

/** Where a click on a notification goes: the action's URL, else the notification's. */
export function clickTarget(data, action, origin) {
  const url = (action && data && data.actions && data.actions[action]) || (data && data.navigate) || '/';
  return new URL(url, origin).href;
}

/**
 * How the service worker answers a request: 'cache-first' for static assets of our origin,
 * 'network-first' for pages and GETs of the API, 'network-only' for everything else (other
 * origins, non-GET, the push API itself).
 * `request` is { url, method, mode, destination }; `config` is { origin, apiPrefix,
 * staticPattern (RegExp), noCache (RegExp) }.
 */
export function route(request, config) {
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== config.origin) return 'network-only';
  if (config.noCache && config.noCache.test(url.pathname)) return 'network-only';
  if (request.mode === 'navigate' || request.destination === 'document') return 'network-first';
  if (config.apiPrefix && url.pathname.startsWith(config.apiPrefix)) return 'network-first';
  if (['script', 'style', 'image', 'font', 'manifest'].includes(request.destination)) return 'cache-first';
  if (config.staticPattern && config.staticPattern.test(url.pathname)) return 'cache-first';
  return 'network-first';
}

/** The cache names of other versions than `version` (removed on activate). */
export function staleCaches(names, prefix, version) {
  return names.filter((name) => name.startsWith(`${prefix}-`) && name !== `${prefix}-${version}`);
}

/** The Web Locks name under which pages and the service worker change the subscription. */
export const SUBSCRIPTION_LOCK = 'tidings-subscription';

/** A subscription's `keys.auth`, base64url as the browser gives it: what proves holding it. */
export function authOf(subscription) {
  return subscription.toJSON().keys.auth;
}

/**
 * What the kit remembers of a subscription the hub accepted (`registered`): its endpoint, its
 * auth (the proof of holding it), its applicationServerKey (base64url, so that the service
 * worker can subscribe again without asking the hub) and the topics the hub answered with.
 */
export function registeredRecord(subscription, topics) {
  const key = subscription.options && subscription.options.applicationServerKey;
  return { endpoint: subscription.endpoint, auth: authOf(subscription), key: key ? bytesToBase64Url(key) : null, topics };
}

/**
 * The `registered` record (what the hub last accepted: { endpoint, auth, key, topics }), or, from a
 * kit that stored only the endpoint, that endpoint with its auth and topics unknown.
 */
export function knownSubscription(record, legacyEndpoint) {
  if (record) return record;
  return legacyEndpoint ? { endpoint: legacyEndpoint, auth: null, key: null, topics: null } : null;
}

/**
 * The subscription whose ownership a re-sync proves: the one the hub last accepted (`known`),
 * unless there is none or it is the current one, whose own keys then prove it.
 * `current` is { endpoint, auth }.
 */
export function oldSubscription(known, current) {
  return known && known.endpoint !== current.endpoint ? known : current;
}

/**
 * The hub request that registers `subscription` (its toJSON()): `replace`, with the old
 * subscription's endpoint and auth, when `old` is another endpoint and its auth is known
 * (the hub deletes it and carries its topics and user over); else a plain POST. `topics`
 * null or undefined leaves them out (the hub keeps what it has), and so does `userToken`
 * undefined (null removes the user binding). Returns { path, body }.
 */
export function subscriptionRequest(old, subscription, { topics, userToken } = {}) {
  const body = { subscription };
  if (topics != null) body.topics = topics;
  if (userToken !== undefined) body.user_token = userToken;
  if (old && old.auth && old.endpoint !== subscription.endpoint) {
    return { path: '/api/subscriptions/replace', body: { old_endpoint: old.endpoint, old_auth: old.auth, ...body } };
  }
  return { path: '/api/subscriptions', body };
}

/**
 * A refusal of the hub's as an Error with its `status` and `code` (the JSON `error`:
 * `subscription_exists`, `not_owner`, `csrf`...; null when the body is not the hub's JSON).
 */
export function hubError(status, text) {
  let code = null;
  let message = text;
  try {
    const json = JSON.parse(text);
    if (json && typeof json.error === 'string') {
      code = json.error;
      message = json.message || text;
    }
  } catch {
    // Not the hub's JSON (a proxy's error page): the text is the message.
  }
  return Object.assign(new Error(`hub: ${status} ${code ? `${code}: ` : ''}${message}`), { status, code });
}

/** Whether `url` goes to the hub (`hub` '' meaning `origin`, the page's or service worker's). */
export function isHubUrl(url, hub, origin) {
  return new URL(url, origin).origin === new URL(hub || origin, origin).origin;
}

/** Attempts after which a failing outbox item is set aside rather than retried. */
export const MAX_ATTEMPTS = 8;

/** A new outbox item: a request to replay until it arrives, with its idempotency key. */
export function outboxItem(url, init = {}, now = Date.now(), id = randomId()) {
  const headers = Object.fromEntries(new Headers(init.headers || {}).entries());
  return { id, url, method: (init.method || 'POST').toUpperCase(), headers, body: init.body ?? null, attempts: 0, createdAt: now, nextAttemptAt: now, lastError: null, setAside: false };
}

/** Milliseconds to wait before attempt `attempts + 1`: 2 s doubling, at most 10 minutes, ±20 %. */
export function backoff(attempts, random = Math.random) {
  const base = Math.min(2000 * 2 ** Math.max(0, attempts - 1), 600000);
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * What an answer means for an item: 'done' (2xx, or 409: the server already has it),
 * 'set-aside' (401, 403: the user may have to log in again, so no use retrying now), 'drop'
 * (another 4xx: it will never succeed), 'retry' (408, 429, 5xx, no answer).
 */
export function outcome(status) {
  if (status === null || status === undefined) return 'retry';
  if ((status >= 200 && status < 300) || status === 409) return 'done';
  if (status === 401 || status === 403) return 'set-aside';
  if (status === 408 || status === 429 || status >= 500) return 'retry';
  return 'drop';
}

/** The items due at `now`, oldest first (so messages keep their order); set-aside ones never are. */
export function dueItems(items, now) {
  return items.filter((i) => !i.setAside && i.nextAttemptAt <= now).sort((a, b) => a.createdAt - b.createdAt);
}

/**
 * An item after an attempt answered with `status` (null: no answer, `error` says why):
 * { result, item }. `result` is what is reported: 'sent' and 'failed' (the item is deleted:
 * `item` is null), 'retry' (kept with a backoff) or 'set-aside' (kept, no longer replayed nor
 * holding the queue: on 401 and 403, and once `MAX_ATTEMPTS` attempts have failed).
 */
export function afterAttempt(item, status, error, now, random = Math.random) {
  const how = outcome(status);
  if (how === 'done') return { result: 'sent', item: null };
  if (how === 'drop') return { result: 'failed', item: null };
  const attempts = item.attempts + 1;
  const lastError = String(error || `HTTP ${status}`);
  if (how === 'set-aside' || attempts >= MAX_ATTEMPTS) return { result: 'set-aside', item: { ...item, attempts, lastError, setAside: true } };
  return { result: 'retry', item: { ...item, attempts, lastError, nextAttemptAt: now + backoff(attempts, random) } };
}

/** A set-aside item back in the queue, due now, with a fresh count of attempts. */
export function revived(item, now) {
  return { ...item, setAside: false, attempts: 0, nextAttemptAt: now };
}

/** How many outbox items are pending and how many set aside. */
export function outboxCounts(items) {
  const setAside = items.filter((i) => i.setAside).length;
  return { pending: items.length - setAside, setAside };
}

/** base64url text as bytes (an applicationServerKey). */
export function base64UrlToBytes(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Bytes (an ArrayBuffer or a typed array) as base64url text, without padding. */
export function bytesToBase64Url(buffer) {
  const bytes = new Uint8Array(buffer);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Whether an applicationServerKey (ArrayBuffer or bytes) is the base64url key `text`. */
export function sameKey(buffer, text) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  const b = base64UrlToBytes(text);
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function randomId() {
  return globalThis.crypto && crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
