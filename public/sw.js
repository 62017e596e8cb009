// Ferry's service worker: the app shell offline, safe updates. Small on purpose.
// The two placeholders below are filled in by Trunk's post-build hook (Trunk.toml) with a
// hash of the build and the list of its (hashed) files.
const VERSION = '__VERSION__';
const PRECACHE = __PRECACHE__;
const CACHE = `ferry-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE)));
  // No skipWaiting here: a new version waits until the person chooses "Reload".
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith('ferry-') && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data === 'skip-waiting') self.skipWaiting();
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.endsWith('/config.json')) {
    // Network first (a self-hoster may change it), the last copy when offline.
    event.respondWith((async () => {
      const cache = await caches.open(CACHE);
      try {
        const fresh = await fetch(request);
        if (fresh.ok) await cache.put(request, fresh.clone());
        return fresh;
      } catch (e) {
        return (await cache.match(request)) ?? Response.error();
      }
    })());
    return;
  }
  if (request.mode === 'navigate') {
    // Any navigation (with or without a #pair= fragment) gets the cached shell.
    event.respondWith((async () => (await caches.match('./', { cacheName: CACHE })) ?? fetch(request))());
    return;
  }
  event.respondWith((async () => (await caches.match(request, { cacheName: CACHE })) ?? fetch(request))());
});
