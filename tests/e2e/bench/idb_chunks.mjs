// Diagnostic for the file benchmark (not part of `cargo xtask bench`): how fast this machine's
// Chromium writes and reads 256 KiB chunks in IndexedDB, one transaction per chunk (as Ferry's
// runtime does, each awaited in turn) vs several chunks per transaction, and SHA-256 of a chunk.
// Uses a persistent profile on disk, like the benchmark's devices.
// node tests/e2e/bench/idb_chunks.mjs [MiB=200]
import { chromium } from '@playwright/test';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MIB = Number(process.argv[2] ?? 200);
const server = createServer((_, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>idb</title>'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
// A persistent profile, like Ferry's devices (a non-persistent context keeps IndexedDB in memory).
const dir = mkdtempSync(join(tmpdir(), 'idb-bench-'));
const browser = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const page = browser.pages()[0] ?? (await browser.newPage());
await page.goto(`http://127.0.0.1:${server.address().port}/`);
const out = await page.evaluate(async (MIB) => {
  const CHUNK = 256 * 1024, N = (MIB * 1024 * 1024) / CHUNK;
  const db = await new Promise((r, j) => {
    const q = indexedDB.open('bench', 1);
    q.onupgradeneeded = () => q.result.createObjectStore('kv');
    q.onsuccess = () => r(q.result);
    q.onerror = () => j(q.error);
  });
  const data = new Uint8Array(CHUNK);
  for (let o = 0; o < CHUNK; o += 65536) crypto.getRandomValues(data.subarray(o, o + 65536));
  const done = (tx) => new Promise((r, j) => { tx.oncomplete = r; tx.onerror = () => j(tx.error); });
  const res = {};
  const puts = async (label, per) => {
    const t = performance.now();
    for (let i = 0; i < N; i += per) {
      const tx = db.transaction('kv', 'readwrite');
      for (let k = i; k < Math.min(N, i + per); k++) tx.objectStore('kv').put(data.slice(), `${label}/${k}`);
      await done(tx);
    }
    res[`put ${per}/tx`] = { ms_per_chunk: (performance.now() - t) / N, mibps: MIB / ((performance.now() - t) / 1000) };
  };
  await puts('a', 1);
  await puts('b', 8);
  let t = performance.now();
  for (let i = 0; i < N; i++) {
    const tx = db.transaction('kv', 'readonly');
    await new Promise((r) => (tx.objectStore('kv').get(`a/${i}`).onsuccess = r));
  }
  res['get 1/tx'] = { ms_per_chunk: (performance.now() - t) / N, mibps: MIB / ((performance.now() - t) / 1000) };
  t = performance.now();
  for (let i = 0; i < 100; i++) await crypto.subtle.digest('SHA-256', data);
  res['sha256 (WebCrypto)'] = { ms_per_chunk: (performance.now() - t) / 100 };
  return res;
}, MIB);
console.table(out);
await browser.close();
server.close();
rmSync(dir, { recursive: true, force: true });
