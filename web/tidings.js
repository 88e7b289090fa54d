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
// The hub's browser API is described in docs/hub.md; the service-worker half is
// tidings-sw.js.

import { outboxItem, sameKey, base64UrlToBytes } from './tidings-core.js';
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
   * service worker script (registered as a module); `topics`: what to subscribe to;
   * `userToken`: a function returning a fresh user token from the app's backend, if the app
   * names its users.
   */
  constructor({ hub = '', serviceWorker = '/sw.js', scope = '/', topics = [], userToken = null } = {}) {
    Object.assign(this, { hub, serviceWorker, scope, topics, userToken });
    this.registration = null;
    this.csrf = null;
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

  async call(method, path, body, retried = false) {
    if (!this.csrf) this.csrf = (await (await fetch(`${this.hub}/api/session`, { credentials: 'include' })).json()).csrfToken;
    const answer = await fetch(`${this.hub}${path}`, {
      method,
      credentials: 'include',
      headers: { 'content-type': 'application/json', 'x-tidings-csrf': this.csrf },
      body: JSON.stringify(body),
    });
    if (answer.status === 403 && !retried) {
      // Another tab (or the service worker) started a new session: take its token, once.
      this.csrf = null;
      return this.call(method, path, body, true);
    }
    if (!answer.ok && answer.status !== 404) throw new Error(`hub: ${answer.status} ${await answer.text()}`);
    return answer;
  }

  async publicKey() {
    return (await (await fetch(`${this.hub}/api/vapid-public-key`)).json()).publicKey;
  }

  async register(subscription, previous) {
    const body = { subscription: subscription.toJSON(), topics: this.topics };
    if (this.userToken) body.user_token = await this.userToken();
    if (previous && previous !== subscription.endpoint) {
      await this.call('POST', '/api/subscriptions/replace', { old_endpoint: previous, ...body });
    } else {
      await this.call('POST', '/api/subscriptions', body);
    }
    await idb.put('state', subscription.endpoint, 'endpoint');
  }

  /** { supported, permission, subscribed } for a settings screen. */
  async state() {
    const f = features();
    if (!f.push || !f.notifications) return { supported: false, permission: 'unsupported', subscribed: false };
    const registration = await this.ready();
    const subscription = await registration.pushManager.getSubscription();
    return { supported: true, permission: Notification.permission, subscribed: Boolean(subscription) };
  }

  /**
   * Asks for permission and subscribes. Browsers only ask from a user gesture (a click), and
   * users trust an app that asks when they want something: call it from a button.
   */
  async subscribe() {
    if (navigator.userActivation && !navigator.userActivation.isActive) {
      throw new Error('subscribe() must be called from a user gesture, such as a click');
    }
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') throw new Error(`notifications are ${permission}`);
    const registration = await this.ready();
    const key = base64UrlToBytes(await this.publicKey());
    const subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    await this.register(subscription, await idb.get('state', 'endpoint'));
    return subscription;
  }

  /**
   * Call on every page load: tells the hub the current subscription, replacing an old
   * endpoint the browser changed, and subscribes again if the hub's key changed. Never asks
   * for permission.
   */
  async sync() {
    if (!features().push) return this.state();
    const registration = await this.ready();
    let subscription = await registration.pushManager.getSubscription();
    if (!subscription) return this.state();
    // The endpoint the hub knows: the one stored at the last sync, else the current one.
    const previous = (await idb.get('state', 'endpoint')) || subscription.endpoint;
    const key = await this.publicKey();
    if (!sameKey(subscription.options.applicationServerKey, key)) {
      await subscription.unsubscribe();
      subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlToBytes(key) });
    }
    await this.register(subscription, previous);
    return this.state();
  }

  /** Unsubscribes here and at the hub. */
  async unsubscribe() {
    const registration = await this.ready();
    const subscription = await registration.pushManager.getSubscription();
    if (!subscription) return false;
    await this.call('DELETE', '/api/subscriptions', { endpoint: subscription.endpoint });
    await idb.remove('state', 'endpoint');
    return subscription.unsubscribe();
  }

  /**
   * Queues a request that must arrive, even if the page is offline or closes: it is stored,
   * then sent by the service worker (now if possible, else on Background Sync, or when the
   * page is online again), exactly once thanks to its Idempotency-Key. Returns its id;
   * results arrive through onOutbox().
   */
  async send(url, init = {}) {
    const item = outboxItem(new URL(url, location.href).href, init);
    await idb.put('outbox', item);
    const registration = await this.ready();
    // Online: try at once. Offline, or if that attempt fails: Background Sync fires when the
    // connection is back (where the browser has it), else the page's online event does.
    if (features().backgroundSync) await registration.sync.register(OUTBOX_SYNC).catch(() => {});
    if (navigator.onLine) await this.flush();
    return item.id;
  }

  /** Asks the service worker to send what is due in the outbox. */
  async flush() {
    const registration = await this.ready();
    (registration.active || navigator.serviceWorker.controller)?.postMessage({ type: 'tidings-flush' });
  }

  /** Calls `callback({ id, result, status })` for each outbox result. */
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
