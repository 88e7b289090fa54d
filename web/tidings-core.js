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

/** A new outbox item: a request to replay until it arrives, with its idempotency key. */
export function outboxItem(url, init = {}, now = Date.now(), id = randomId()) {
  const headers = Object.fromEntries(new Headers(init.headers || {}).entries());
  return { id, url, method: (init.method || 'POST').toUpperCase(), headers, body: init.body ?? null, attempts: 0, createdAt: now, nextAttemptAt: now, lastError: null };
}

/** Milliseconds to wait before attempt `attempts + 1`: 2 s doubling, at most 10 minutes, ±20 %. */
export function backoff(attempts, random = Math.random) {
  const base = Math.min(2000 * 2 ** Math.max(0, attempts - 1), 600000);
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * What to do with an item after an attempt: 'done' (2xx, or 409: the server already has it),
 * 'drop' (another 4xx: it will never succeed), 'retry' (408, 429, 5xx, no answer).
 */
export function outcome(status) {
  if (status === null || status === undefined) return 'retry';
  if ((status >= 200 && status < 300) || status === 409) return 'done';
  if (status === 408 || status === 429 || status >= 500) return 'retry';
  return 'drop';
}

/** The items due at `now`, oldest first (so messages keep their order). */
export function dueItems(items, now) {
  return items.filter((i) => i.nextAttemptAt <= now).sort((a, b) => a.createdAt - b.createdAt);
}

/** An item after a failed attempt. */
export function retried(item, error, now, random = Math.random) {
  const attempts = item.attempts + 1;
  return { ...item, attempts, lastError: String(error), nextAttemptAt: now + backoff(attempts, random) };
}

/** base64url text as bytes (an applicationServerKey). */
export function base64UrlToBytes(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
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
