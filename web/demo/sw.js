// The demo's service worker: all of it is the kit, configured. Its version follows the
// kit's, so that a new kit reaches visitors who already have the demo (a new cache).
import { KIT_VERSION, installTidings } from '/tidings/tidings-sw.js';

installTidings({
  version: `demo-${KIT_VERSION}`,
  cachePrefix: 'tidings-chat',
  precache: ['/', '/app.js', '/style.css', '/icon.svg', '/manifest.webmanifest',
    '/tidings/tidings.js', '/tidings/tidings-core.js', '/tidings/tidings-idb.js'],
  offlinePage: '/offline.html',
  apiPrefix: '/demo/api/',
  refresh: ['/demo/api/messages'],
  title: 'Tidings Chat',
});
