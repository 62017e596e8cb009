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

// "Share → Ferry" with files (manifest share_target, POST multipart): the worker keeps the
// files in the SHARE_INBOX cache (one entry per file plus an index) and redirects to the app;
// the app takes them out (src/pwa.rs). Title, text and URL go along in the query, where the
// app already reads a GET share. The inbox is not a 'ferry-' cache, so updates keep it.
const SHARE_INBOX = 'share-inbox';

async function receiveShare(request) {
  const params = new URLSearchParams();
  try {
    const form = await request.formData();
    for (const key of ['share_title', 'share_text', 'share_url']) {
      const value = form.get(key);
      if (typeof value === 'string' && value.trim()) params.set(key, value);
    }
    const files = form.getAll('files').filter((f) => typeof f !== 'string' && (f.size > 0 || f.name));
    if (files.length) {
      const inbox = await caches.open(SHARE_INBOX);
      const indexUrl = new URL('share-inbox/index.json', self.registration.scope).href;
      const old = await inbox.match(indexUrl);
      const index = old ? await old.json() : [];
      const stamp = Date.now();
      for (const [i, file] of files.entries()) {
        const key = new URL(`share-inbox/${stamp}-${i}`, self.registration.scope).href;
        const type = file.type || 'application/octet-stream';
        await inbox.put(key, new Response(file, { headers: { 'content-type': type } }));
        index.push({ key, name: file.name || `shared-${stamp}-${i}`, type: file.type || '' });
      }
      await inbox.put(indexUrl, new Response(JSON.stringify(index), { headers: { 'content-type': 'application/json' } }));
    }
  } catch (e) {
    params.set('share_error', String(e && e.message || e));
  }
  const query = params.toString();
  return Response.redirect(new URL(query ? `./?${query}` : './', self.registration.scope).href, 303);
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.method === 'POST' && url.pathname.endsWith('/share-target')) {
    event.respondWith(receiveShare(request));
    return;
  }
  if (request.method !== 'GET') return;
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
