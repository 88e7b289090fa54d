// A few promises over IndexedDB, shared by the page and the service worker: the outbox
// (requests that must arrive) and a little state (the last endpoint, the last refresh).

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
