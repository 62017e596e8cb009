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

// The mailbox outbox (src/runtime/mailbox/outbox.rs, crates/core/src/outbox.rs): history the
// page sealed while no other device was connected. When the page could not post it (offline,
// or closed a second after writing), Background Sync wakes this worker once there is a
// network, with the app closed, and the worker posts it. Records are self-contained (URL,
// token, device tag, sealed entries); the worker only adds "done" markers and never rewrites
// or deletes a record, so it cannot race the page. The server deduplicates entries by hash,
// so posting something the page posted too is harmless.
const DB_NAME = 'ferry';
const KV = 'kv';

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME);
    // No database yet: nothing to do, and creating an empty one would break the app's open.
    req.onupgradeneeded = () => req.transaction.abort();
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error || new Error('IndexedDB unavailable'));
    req.onblocked = () => reject(new Error('IndexedDB blocked'));
  });
}

function kvRequest(db, mode, run) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(KV, mode);
    const req = run(tx.objectStore(KV));
    let result;
    req.onsuccess = () => { result = req.result; };
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
  });
}

const textOf = (v) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : String(v ?? ''));
const bytesOf = (s) => new TextEncoder().encode(s);

function fromBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function postOutbox() {
  let db;
  try { db = await openDb(); } catch (e) { return; }
  try {
    const range = IDBKeyRange.bound('mailbox-outbox/', 'mailbox-outbox/\uffff');
    const keys = await kvRequest(db, 'readonly', (s) => s.getAllKeys(range));
    for (const key of keys) {
      const stamp = key.slice('mailbox-outbox/'.length);
      const doneKey = `mailbox-outbox-done/${stamp}`;
      if (await kvRequest(db, 'readonly', (s) => s.get(doneKey))) continue;
      const raw = await kvRequest(db, 'readonly', (s) => s.get(key));
      if (!raw) continue; // the page finished it meanwhile
      let record;
      try { record = JSON.parse(textOf(raw)); } catch (e) { continue; }
      if (record.v !== 1 || !Array.isArray(record.entries)) continue;
      const seqs = [];
      for (const entry of record.entries) {
        const res = await fetch(`${record.url}?device=${encodeURIComponent(record.tag)}`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${record.token}` },
          body: fromBase64(entry),
        });
        // A network error throws: the browser retries the sync event later.
        if (res.status !== 200 && res.status !== 201) throw new Error(`mailbox answered ${res.status}`);
        const answer = await res.json();
        seqs.push(answer.seq);
      }
      await kvRequest(db, 'readwrite', (s) => s.put(bytesOf(JSON.stringify({ seqs })), doneKey));
    }
  } finally {
    db.close();
  }
}

// Periodic Background Sync (installed apps, Chromium): fetch what waits in the mailbox ahead
// of time, so opening the app shows it at once. The page takes the answer from storage
// (`mailbox-prefetch/<after>`) instead of asking the server for the same entries.
async function prefetchMailbox() {
  let db;
  try { db = await openDb(); } catch (e) { return; }
  try {
    // This device's local state (`local/state`, JSON; ferry_core::device::LocalState).
    const stored = await kvRequest(db, 'readonly', (s) => s.get('local/state'));
    if (!stored) return;
    const { mailbox } = JSON.parse(textOf(stored));
    if (!mailbox || mailbox.off || !mailbox.endpoint) return;
    const { url, token } = mailbox.endpoint;
    const cursor = Number(mailbox.cursor) || 0;
    const res = await fetch(`${url}?after=${cursor}&limit=64`, { headers: { Authorization: `Bearer ${token}` } });
    if (res.status !== 200) return;
    // No honest answer is larger (ferry_core::device::mailbox::MAX_FETCH_BYTES); the page
    // would refuse it anyway, so a hostile server cannot make it copy more than this.
    const declared = Number(res.headers.get('content-length'));
    if (declared > 8 * 1024 * 1024) return;
    const body = new Uint8Array(await res.arrayBuffer());
    if (body.byteLength > 8 * 1024 * 1024) return;
    await kvRequest(db, 'readwrite', (s) => s.put(body, `mailbox-prefetch/${String(cursor).padStart(20, '0')}`));
  } finally {
    db.close();
  }
}

self.addEventListener('sync', (event) => {
  if (event.tag === 'ferry-outbox') event.waitUntil(postOutbox());
});

self.addEventListener('periodicsync', (event) => {
  if (event.tag === 'ferry-prefetch') event.waitUntil(prefetchMailbox());
});
