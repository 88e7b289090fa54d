// A few promises over IndexedDB, shared by the page and the service worker: the outbox
// (requests that must arrive, by id) and a little state, by key: `registered` (the
// subscription the hub last accepted, with the auth that proves holding it), `badge`,
// `refreshedAt`.

import { knownSubscription } from './tidings-core.js';

const NAME = 'tidings';
const VERSION = 1;

let opening = null;

/** The database, created on first use with the stores `outbox` (by id) and `state`. */
export function open() {
  opening ||= new Promise((resolve, reject) => {
    const request = indexedDB.open(NAME, VERSION);
    request.onupgradeneeded = () => {
      request.result.createObjectStore('outbox', { keyPath: 'id' });
      request.result.createObjectStore('state');
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => {
      opening = null;
      reject(request.error);
    };
  });
  return opening;
}

async function run(store, mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const request = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(request && request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** A value of `store` by key. */
export const get = (store, key) => run(store, 'readonly', (s) => s.get(key));
/** Every value of `store`. */
export const all = (store) => run(store, 'readonly', (s) => s.getAll());
/** Stores `value` (under `key` for stores without a key path). */
export const put = (store, value, key) => run(store, 'readwrite', (s) => (key === undefined ? s.put(value) : s.put(value, key)));
/** Deletes a value. */
export const remove = (store, key) => run(store, 'readwrite', (s) => s.delete(key));

/**
 * The subscription the hub last accepted from this browser, { endpoint, auth, topics }, or
 * null. Kept after the browser drops it, so that its auth still proves ownership to the hub
 * when a `pushsubscriptionchange` carries no old subscription. The kit's first version kept
 * only the endpoint (`endpoint`): read as one whose auth and topics are unknown.
 */
export async function registered() {
  return knownSubscription(await get('state', 'registered'), await get('state', 'endpoint'));
}

/** Remembers what the hub accepted, in place of the first version's `endpoint`. */
export const setRegistered = (record) => run('state', 'readwrite', (s) => {
  s.put(record, 'registered');
  return s.delete('endpoint');
});

/** Forgets what the hub accepted, if it is `endpoint` (the hub no longer has it). */
export async function forgetRegistered(endpoint) {
  const known = await registered();
  if (known && known.endpoint === endpoint) {
    await run('state', 'readwrite', (s) => {
      s.delete('registered');
      return s.delete('endpoint');
    });
  }
}
