// The page half of the Tidings PWA kit: feature detection, subscribing (only after a user
// gesture), keeping the hub in sync on every load, unsubscribing, the state for a settings
// screen, and the outbox.
//
//   import { Tidings } from '/tidings/tidings.js';
//   const push = new Tidings({ serviceWorker: '/sw.js', topics: ['news'] });
//   await push.sync();                       // every page load: re-sends a changed endpoint
//   button.onclick = () => push.subscribe(); // asks for permission: only from a click
//   await push.send('/api/messages', { method: 'POST', body: JSON.stringify(message) });
//
// Only the browser that holds a subscription may change it at the hub: the proof is its
// `keys.auth` secret, which the push service never sees. So the kit remembers in IndexedDB
// the subscription the hub last accepted, with its auth (`registered`), replaces it with
// that proof (`old_endpoint`, `old_auth`) when the endpoint changes, and deletes with the
// auth of what it deletes. sync(), subscribe() and unsubscribe() run one at a time: in
// order within a Tidings, and across tabs (and the service worker) under a Web Lock, so a
// load's sync() can never land after an unsubscribe() and register a subscription gone.
//
// The hub's browser API is described in docs/hub.md; the service-worker half is
// tidings-sw.js.

import { SUBSCRIPTION_LOCK, authOf, base64UrlToBytes, hubError, oldSubscription, outboxCounts, outboxItem, registeredRecord, revived, sameKey, subscriptionRequest } from './tidings-core.js';
import * as idb from './tidings-idb.js';

const OUTBOX_SYNC = 'tidings-outbox';
const REFRESH_SYNC = 'tidings-refresh';

/** What this browser can do. */
export function features() {
  const sw = 'serviceWorker' in navigator;
  const registration = sw && typeof ServiceWorkerRegistration !== 'undefined' ? ServiceWorkerRegistration.prototype : {};
  return {
    serviceWorker: sw,
    push: sw && 'PushManager' in globalThis,
    notifications: 'Notification' in globalThis,
    backgroundSync: 'sync' in registration,
    periodicSync: 'periodicSync' in registration,
    badge: 'setAppBadge' in navigator,
  };
}

export class Tidings {
  /**
   * `hub`: the hub's origin ('' when the page is served by it); `serviceWorker`: the app's
   * service worker script (registered as a module); `topics`: what to subscribe to (sent on
   * every sync; null leaves the hub's as they are); `userToken`: a function returning a fresh
   * user token from the app's backend, if the app names its users (null when nobody is
   * logged in: the hub then unbinds the subscription from its user).
   */
  constructor({ hub = '', serviceWorker = '/sw.js', scope = '/', topics = null, userToken = null } = {}) {
    Object.assign(this, { hub, serviceWorker, scope, topics, userToken });
    this.registration = null;
    this.csrf = null;
    this.queue = Promise.resolve();
    if (features().serviceWorker && !features().backgroundSync) {
      // Without Background Sync (Firefox, Safari), coming back online is when the outbox
      // goes out; with it, the browser fires the service worker's sync event.
      addEventListener('online', () => this.flush());
    }
  }

  /** The service worker's registration (registered on first use). */
  async ready() {
    if (!features().serviceWorker) throw new Error('this browser has no service workers');
    if (!this.registration) {
      await navigator.serviceWorker.register(this.serviceWorker, { scope: this.scope, type: 'module' });
      this.registration = await navigator.serviceWorker.ready;
    }
    return this.registration;
  }

  /**
   * Runs `work` once the subscription work started before it here is over, and under the
   * Web Lock that other tabs and the service worker take for theirs, where the browser has
   * Web Locks. Never call it from inside `work`: it would wait for itself.
   */
  serial(work) {
    const locked = () => (navigator.locks ? navigator.locks.request(SUBSCRIPTION_LOCK, work) : work());
    const done = this.queue.then(locked);
    this.queue = done.catch(() => {});
    return done;
  }

  async call(method, path, body, retried = false) {
    if (!this.csrf) this.csrf = (await (await fetch(`${this.hub}/api/session`, { credentials: 'include' })).json()).csrfToken;
    const answer = await fetch(`${this.hub}${path}`, {
      method,
      credentials: 'include',
      headers: { 'content-type': 'application/json', 'x-tidings-csrf': this.csrf },
      body: JSON.stringify(body),
    });
    // Deleting what the hub does not have is done too.
    if (answer.ok || (method === 'DELETE' && answer.status === 404)) return answer;
    const error = hubError(answer.status, await answer.text());
    if (error.code === 'csrf' && !retried) {
      // Another tab (or the service worker) started a new session: take its token, once.
      this.csrf = null;
      return this.call(method, path, body, true);
    }
    // Among them 409 `subscription_exists` (this endpoint is registered with other keys) and
    // 403 `not_owner`: retrying would get the same answer, so the caller hears of it.
    throw error;
  }

  async publicKey() {
    return (await (await fetch(`${this.hub}/api/vapid-public-key`)).json()).publicKey;
  }

  /**
   * Tells the hub about `subscription`, replacing `old` ({ endpoint, auth }: what the hub
   * knows of this browser) when that is another endpoint, and remembers what it accepted.
   */
  async register(registration, subscription, old) {
    const extra = { topics: this.topics };
    if (this.userToken) extra.userToken = await this.userToken();
    const { path, body } = subscriptionRequest(old, subscription.toJSON(), extra);
    const answer = await this.call('POST', path, body);
    const record = registeredRecord(subscription, (await answer.json()).topics);
    await idb.setRegistered(record);
    // A tab of a browser without Web Locks (or of an older kit) may have unsubscribed
    // meanwhile: the hub must not keep a subscriber that no longer exists.
    const current = await registration.pushManager.getSubscription();
    if (!current || current.endpoint !== record.endpoint) {
      await this.call('DELETE', '/api/subscriptions', { endpoint: record.endpoint, auth: record.auth });
      await idb.forgetRegistered(record.endpoint);
    }
  }

  /**
   * { supported, permission, subscribed, outbox: { pending, setAside } } for a settings
   * screen.
   */
  async state() {
    const outbox = outboxCounts(await idb.all('outbox'));
    const f = features();
    if (!f.push || !f.notifications) return { supported: false, permission: 'unsupported', subscribed: false, outbox };
    const registration = await this.ready();
    const subscription = await registration.pushManager.getSubscription();
    return { supported: true, permission: Notification.permission, subscribed: Boolean(subscription), outbox };
  }

  /**
   * Asks for permission and subscribes. Browsers only ask from a user gesture (a click), and
   * users trust an app that asks when they want something: call it from a button.
   */
  async subscribe() {
    if (navigator.userActivation && !navigator.userActivation.isActive) {
      throw new Error('subscribe() must be called from a user gesture, such as a click');
    }
    // Asked before waiting for other subscription work: the gesture does not last.
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') throw new Error(`notifications are ${permission}`);
    return this.serial(async () => {
      const registration = await this.ready();
      const key = base64UrlToBytes(await this.publicKey());
      const subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      await this.register(registration, subscription, await idb.registered());
      return subscription;
    });
  }

  /**
   * Call on every page load: tells the hub the current subscription (one POST), replacing
   * an old endpoint the browser changed, and subscribes again if the hub's key changed.
   * Never asks for permission.
   */
  async sync() {
    if (features().push) {
      await this.serial(async () => {
        const registration = await this.ready();
        let subscription = await registration.pushManager.getSubscription();
        if (!subscription) return;
        // Read before a key change unsubscribes it: its auth is the proof of holding it.
        const old = oldSubscription(await idb.registered(), { endpoint: subscription.endpoint, auth: authOf(subscription) });
        const key = await this.publicKey();
        if (!sameKey(subscription.options.applicationServerKey, key)) {
          await subscription.unsubscribe();
          subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes(key) });
        }
        await this.register(registration, subscription, old);
      });
    }
    return this.state();
  }

  /** Unsubscribes here and at the hub. */
  unsubscribe() {
    return this.serial(async () => {
      const registration = await this.ready();
      const subscription = await registration.pushManager.getSubscription();
      if (!subscription) return false;
      await this.call('DELETE', '/api/subscriptions', { endpoint: subscription.endpoint, auth: authOf(subscription) });
      await idb.forgetRegistered(subscription.endpoint);
      return subscription.unsubscribe();
    });
  }

  /**
   * Queues a request that must arrive, even if the page is offline or closes: it is stored,
   * then sent by the service worker (now if possible, else on Background Sync, or when the
   * page is online again), exactly once thanks to its Idempotency-Key. Requests to the
   * hub's origin get its CSRF token. Returns its id; results arrive through onOutbox().
   */
  async send(url, init = {}) {
    const item = outboxItem(new URL(url, location.href).href, init);
    await idb.put('outbox', item);
    await this.deliver();
    return item.id;
  }

  /** Has the outbox sent: at once when online, else when the connection is back. */
  async deliver() {
    const registration = await this.ready();
    // Offline, or if that attempt fails: Background Sync fires when the connection is back
    // (where the browser has it), else the page's online event does.
    if (features().backgroundSync) await registration.sync.register(OUTBOX_SYNC).catch(() => {});
    if (navigator.onLine) await this.flush();
  }

  /** Asks the service worker to send what is due in the outbox. */
  async flush() {
    const registration = await this.ready();
    (registration.active || navigator.serviceWorker.controller)?.postMessage({ type: 'tidings-flush' });
  }

  /**
   * The outbox's items, oldest first, pending and set aside: { id, url, method, headers,
   * body, attempts, lastError, setAside, createdAt, nextAttemptAt }. An item is set aside
   * after `MAX_ATTEMPTS` (8) failed attempts, or at once on 401 or 403: kept, but no longer
   * sent by itself.
   */
  async outbox() {
    const items = await idb.all('outbox');
    return items.map((i) => ({ ...i, setAside: Boolean(i.setAside) })).sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Sends a set-aside item again (with a fresh count of attempts). False if there is none. */
  async retryOutbox(id) {
    const item = await idb.get('outbox', id);
    if (!item || !item.setAside) return false;
    await idb.put('outbox', revived(item, Date.now()));
    await this.deliver();
    return true;
  }

  /** Deletes a set-aside item. False if there is none (a pending item may be on its way). */
  async discardOutbox(id) {
    const item = await idb.get('outbox', id);
    if (!item || !item.setAside) return false;
    await idb.remove('outbox', id);
    return true;
  }

  /**
   * Calls `callback({ id, result, status, error })` for each outbox result: 'sent',
   * 'failed' (refused: deleted), 'retry' or 'set-aside'.
   */
  onOutbox(callback) {
    navigator.serviceWorker.addEventListener('message', (event) => {
      if (event.data && event.data.type === 'tidings-outbox') callback(event.data);
    });
  }

  /**
   * Keeps the URLs the service worker was given (`refresh`) fresh: with periodic background
   * sync where the browser offers it, else now if the last refresh is older than `minInterval`.
   */
  async periodicRefresh(minInterval = 12 * 3600 * 1000) {
    const registration = await this.ready();
    if (features().periodicSync) {
      try {
        await registration.periodicSync.register(REFRESH_SYNC, { minInterval });
        return 'periodic';
      } catch {
        // Not installed, or not allowed: fall back below.
      }
    }
    const last = (await idb.get('state', 'refreshedAt')) || 0;
    if (Date.now() - last >= minInterval) (registration.active || navigator.serviceWorker.controller)?.postMessage({ type: 'tidings-refresh' });
    return 'on-open';
  }

  /** The last app badge count a push set (also where the browser cannot show badges). */
  async unread() {
    return (await idb.get('state', 'badge')) || 0;
  }

  /** Sets (or with 0 clears) the app badge, where the browser can show one. */
  async badge(count) {
    await idb.put('state', count, 'badge');
    if (!features().badge) return false;
    if (count > 0) await navigator.setAppBadge(count);
    else await navigator.clearAppBadge();
    return true;
  }
}
