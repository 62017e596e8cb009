// The Yjs peer baseline for the reconcile benchmark: one Y.Doc per device, persisted with
// y-indexeddb, synced with y-webrtc through y-webrtc's own signaling server on 127.0.0.1.
// Items mirror Ferry's: a map keyed by a random id, each item a map {kind, author, at, text}.
// Query: ?room=NAME&signal=ws://127.0.0.1:4444
import * as Y from 'yjs';
import { WebrtcProvider } from 'y-webrtc';
import { IndexeddbPersistence } from 'y-indexeddb';

const q = new URLSearchParams(location.search);
const room = q.get('room') ?? 'ferry-bench';
const signaling = [q.get('signal') ?? 'ws://127.0.0.1:4444'];

const doc = new Y.Doc();
const items = doc.getMap('items');
const show = () => { document.body.dataset.count = String(items.size); };
items.observe(show);

// Load from IndexedDB first, then meet the other devices (as Ferry does).
const persistence = new IndexeddbPersistence(room, doc);
await persistence.whenSynced;
show();
// No ICE servers: nothing may leave the machine (host candidates in the test namespace only).
const provider = new WebrtcProvider(room, doc, { signaling, peerOpts: { config: { iceServers: [] } } });

const randomId = () => [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');

window.bench = {
  count: () => items.size,
  peers: () => [...(provider.room?.webrtcConns.values() ?? [])].filter((c) => c.connected).length,
  // One transaction per item, like one typed message.
  write(prefix, n) {
    for (let i = 0; i < n; i++) {
      doc.transact(() => {
        const item = new Y.Map();
        item.set('kind', 'text');
        item.set('author', String(doc.clientID));
        item.set('at', Date.now());
        item.set('text', `${prefix} ${i}`);
        items.set(randomId(), item);
      });
    }
  },
  // Resolves once every update written so far has committed to IndexedDB: a transaction on
  // the same store starts only after the earlier read-write ones finished.
  flushed: () => new Promise((resolve, reject) => {
    const tx = persistence.db.transaction(['updates'], 'readonly');
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  }),
};
document.body.dataset.ready = 'true';
