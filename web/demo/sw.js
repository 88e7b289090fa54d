// The demo's service worker: all of it is the kit, configured.
import { installTidings } from '/tidings/tidings-sw.js';

installTidings({
  version: 'demo-v1',
  cachePrefix: 'tidings-chat',
  precache: ['/', '/app.js', '/style.css', '/icon.svg', '/manifest.webmanifest',
    '/tidings/tidings.js', '/tidings/tidings-core.js', '/tidings/tidings-idb.js'],
  offlinePage: '/offline.html',
  apiPrefix: '/demo/api/',
  refresh: ['/demo/api/messages'],
  title: 'Tidings Chat',
});
