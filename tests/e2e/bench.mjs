// `cargo xtask bench`: Ferry measured against baselines in the same run, on this machine.
// Runs inside the private network namespace (netns.sh --bench) with a real ferry-signal.
// Prints a table and writes target/bench/results.json. Never part of `cargo xtask test`.
// Baselines (bench/baselines.mjs): raw RTCDataChannel, Yjs + y-webrtc + y-indexeddb, a raw-JS
// file sender. The host criterion results (cargo bench -p ferry-core, run first by xtask) are
// folded into the same table.
// FERRY_BENCH_ONLY=latency,reconcile,cold,size,file,core,signal,network runs only those sections.
import { chromium } from '@playwright/test';
import { closeSync, existsSync, mkdtempSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
import { FILE_CHUNK, FILE_MESSAGE, rawFileThroughput, startBaselines, yjsReconcile } from './bench/baselines.mjs';

const BASE = process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080';
const ROOT = new URL('../..', import.meta.url).pathname;
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns'];
const COLD_SIZES = (process.env.FERRY_BENCH_COLD ?? '10000,100000').split(',').map(Number);
const FILE_MIB = Number(process.env.FERRY_BENCH_FILE_MB ?? 200);
const ONLY = process.env.FERRY_BENCH_ONLY?.split(',');
const run = (section) => !ONLY || ONLY.includes(section);
const LAUNCH = { executablePath: '/usr/bin/chromium', headless: true, args: ARGS };

// Long tasks are recorded from the very start of every page.
const LONGTASKS = `window.__longest = 0; new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration); }).observe({ type: 'longtask', buffered: true });`;

async function device(name, dir = mkdtempSync(join(tmpdir(), `ferry-bench-${name}-`))) {
  const context = await chromium.launchPersistentContext(dir, { executablePath: '/usr/bin/chromium', headless: true, args: ARGS, baseURL: BASE });
  await context.addInitScript(LONGTASKS);
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto('/');
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
  await page.waitForFunction(() => !document.querySelector('textarea[aria-label="Message"]').disabled);
  return { name, dir, context, page };
}

// Items in the history (the log renders only the newest ones; it carries the total).
async function waitCount(page, n, timeout = 600_000) {
  await page.waitForFunction((n) => Number(document.querySelector('[role=log]')?.dataset.count ?? 0) >= n, n, { timeout, polling: 50 });
}
async function bulk(page, prefix, n) {
  await page.evaluate(([prefix, n]) => {
    const box = document.querySelector('textarea[aria-label="Message"]');
    for (let i = 0; i < n; i++) {
      box.value = `${prefix} ${i}`;
      box.dispatchEvent(new Event('input', { bubbles: true }));
      box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    }
  }, [prefix, n]);
}
async function pair(a, b) {
  await a.page.getByRole('button', { name: 'Devices' }).click();
  const link = await a.page.getByRole('textbox', { name: 'Pairing link' }).inputValue();
  await a.page.getByRole('button', { name: 'Devices' }).click();
  await b.page.goto(link);
  await b.page.getByRole('button', { name: 'Join' }).click();
  for (const d of [a, b]) await d.page.getByRole('status').filter({ hasText: '1 device connected' }).waitFor({ timeout: 30_000 });
}
const pct = (xs, p) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const now = (page) => page.evaluate(() => performance.timeOrigin + performance.now());

const results = { date: new Date().toISOString(), machine: `${process.platform} ${process.arch}, ${(await import('node:os')).cpus().length} cores`, scenarios: {} };
const rows = [];
function row(name, ferry, baseline, unit, note = '') {
  const ratio = ferry != null && baseline ? ferry / baseline : null;
  rows.push({ name, ferry, baseline, unit, ratio, note });
}
const baselines = await startBaselines();
process.on('exit', () => baselines.stop());

// 1. Text latency: A sends, B renders. Baseline: a raw RTCDataChannel one-way time between two
//    peer connections in one page of the same browser build.
if (run('latency')) {
  const a = await device('lat-a');
  const b = await device('lat-b');
  await pair(a, b);
  await b.page.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      for (const p of document.querySelectorAll('[role=log] li .text')) {
        const t = p.textContent;
        if (t.startsWith('lat ') && !(t in window.__seen)) window.__seen[t] = performance.timeOrigin + performance.now();
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const ferry = [];
  for (let i = 0; i < 200; i++) {
    const text = `lat ${i}`;
    const sent = await a.page.evaluate((text) => {
      const box = document.querySelector('textarea[aria-label="Message"]');
      box.value = text;
      box.dispatchEvent(new Event('input', { bubbles: true }));
      const t = performance.timeOrigin + performance.now();
      box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
      return t;
    }, text);
    await b.page.waitForFunction((t) => t in window.__seen, text, { polling: 5 });
    ferry.push((await b.page.evaluate((t) => window.__seen[t], text)) - sent);
  }
  const raw = await a.page.evaluate(async () => {
    const p1 = new RTCPeerConnection(), p2 = new RTCPeerConnection();
    p1.onicecandidate = (e) => e.candidate && p2.addIceCandidate(e.candidate);
    p2.onicecandidate = (e) => e.candidate && p1.addIceCandidate(e.candidate);
    const d1 = p1.createDataChannel('raw', { negotiated: true, id: 0 });
    const d2 = p2.createDataChannel('raw', { negotiated: true, id: 0 });
    await p1.setLocalDescription(); await p2.setRemoteDescription(p1.localDescription);
    await p2.setLocalDescription(); await p1.setRemoteDescription(p2.localDescription);
    await new Promise((r) => (d1.readyState === 'open' ? r() : (d1.onopen = r)));
    const out = [];
    for (let i = 0; i < 200; i++) {
      const got = new Promise((r) => (d2.onmessage = () => r(performance.now())));
      const t = performance.now();
      d1.send(`raw ${i}`);
      out.push((await got) - t);
    }
    return out;
  });
  row('text latency p50 (send on A → rendered on B)', pct(ferry, 50), pct(raw, 50), 'ms', 'baseline: raw RTCDataChannel one-way');
  row('text latency p95', pct(ferry, 95), pct(raw, 95), 'ms');
  results.scenarios.latency = { ferry_ms: ferry, raw_ms: raw };
  for (const d of [a, b]) await d.context.close();
}

// 2. Reconcile: 1,000 items written offline on each of two devices; time from the second
//    device's reopening (reconnect) until both show all 2,000. Baseline: the same steps with
//    Yjs + y-webrtc + y-indexeddb (bench/yjs), each item a Y.Map in one transaction.
if (run('reconcile')) {
  const a = await device('rec-a');
  const b = await device('rec-b');
  await pair(a, b);
  await b.context.close();
  await bulk(a.page, 'from A', 1000);
  await waitCount(a.page, 1000);
  await a.context.close();
  const b2 = await device('rec-b', b.dir);
  await bulk(b2.page, 'from B', 1000);
  await waitCount(b2.page, 2000 - 1000);
  const t0 = Date.now();
  const a2 = await device('rec-a', a.dir);
  await Promise.all([waitCount(a2.page, 2000), waitCount(b2.page, 2000)]);
  const ms = Date.now() - t0;
  for (const d of [a2, b2]) await d.context.close();
  const yjs = await yjsReconcile(LAUNCH, 1000);
  row('reconcile 2×1,000 offline items (reopen → both converged)', ms, yjs, 'ms', 'baseline: Yjs + y-webrtc + y-indexeddb, same steps');
  results.scenarios.reconcile = { ms, yjs_ms: yjs };
}

// 2b. Enter → bubble: the time from Enter in the composer until the message is in the history
//     and the next frame starts (what the person sees), with an empty history and with 10,000
//     messages. The baseline is the same measure on the empty history, so the ratio says how
//     the cost grows with the history (the goal: 10,000 messages within 50 ms).
async function enterToBubble(page, n) {
  return page.evaluate(async (n) => {
    const box = document.querySelector('textarea[aria-label="Message"]');
    const log = document.querySelector('[role=log]');
    const rows = log.getElementsByTagName('li');
    const out = [];
    for (let i = 0; i < n; i++) {
      const text = `bubble ${i}`;
      const shown = new Promise((resolve) => {
        const obs = new MutationObserver(() => {
          const last = rows[rows.length - 1];
          if (last && last.querySelector('.text')?.textContent === text) {
            obs.disconnect();
            requestAnimationFrame(() => resolve(performance.now()));
          }
        });
        obs.observe(log, { subtree: true, childList: true, characterData: true });
      });
      box.value = text;
      box.dispatchEvent(new Event('input', { bubbles: true }));
      const t = performance.now();
      box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
      out.push((await shown) - t);
      await new Promise((r) => setTimeout(r, 50));
    }
    return out;
  }, n);
}
if (run('enter')) {
  const d = await device('enter');
  const empty = await enterToBubble(d.page, 60);
  await bulk(d.page, 'history item', 10_000);
  await waitCount(d.page, 10_060);
  // Let the writes of the bulk settle before measuring.
  await d.page.waitForTimeout(3000);
  const full = await enterToBubble(d.page, 60);
  row('Enter → bubble p50, 10,000 messages in history', pct(full, 50), pct(empty, 50), 'ms', 'baseline: the same with an empty history; goal ≤ 50 ms');
  row('Enter → bubble p95, 10,000 messages in history', pct(full, 95), pct(empty, 95), 'ms');
  results.scenarios.enter_to_bubble = { empty_ms: empty, history_10000_ms: full };
  await d.context.close();
}

// 3. Cold start: time to first render of the stored history, and the longest main-thread task.
for (const n of run('cold') ? COLD_SIZES : []) {
  const d = await device(`cold-${n}`);
  for (let done = 0; done < n; done += 10_000) {
    await bulk(d.page, `cold item`, Math.min(10_000, n - done));
    await waitCount(d.page, Math.min(n, done + 10_000));
  }
  await d.page.reload();
  // First render of the history: the newest item is on screen.
  await d.page.waitForFunction((last) => [...document.querySelectorAll('[role=log] li .text')].some((p) => p.textContent === last),
    `cold item ${(n - 1) % 10_000}`, { timeout: 600_000, polling: 50 });
  const { firstRender, longest } = await d.page.evaluate(() => ({
    firstRender: performance.now(), longest: window.__longest,
  }));
  row(`cold start, ${n.toLocaleString('en')} items: first render of history`, firstRender, null, 'ms');
  row(`cold start, ${n.toLocaleString('en')} items: longest main-thread task`, longest, null, 'ms');
  results.scenarios[`cold_${n}`] = { first_render_ms: firstRender, longest_task_ms: longest };
  await d.context.close();
}

// 4. Size of what a browser downloads.
if (run('size')) {
  const dist = process.env.FERRY_DIST ?? join(ROOT, 'dist');
  let raw = 0, gz = 0, br = 0, wasm = {};
  for (const f of readdirSync(dist)) {
    const p = join(dist, f);
    if (!statSync(p).isFile()) continue;
    const bytes = readFileSync(p);
    const g = gzipSync(bytes, { level: 9 }).length;
    const b = brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
    raw += bytes.length; gz += g; br += b;
    if (f.endsWith('.wasm')) wasm = { raw: bytes.length, gzip: g, brotli: b };
  }
  row('wasm size (brotli)', wasm.brotli / 1024, 600, 'KiB', 'baseline: the 600 KiB whole-app target');
  row('whole app size (brotli)', br / 1024, 600, 'KiB', `raw ${(raw / 1024).toFixed(0)} KiB, gzip ${(gz / 1024).toFixed(0)} KiB`);
  results.scenarios.size = { wasm, total: { raw, gzip: gz, brotli: br } };
}

// 5. File throughput A→B: a 200 MiB random file (written once to a temp file; the raw baseline
//    reads the same file through a file input, like Ferry). Ferry: two paired devices, A attaches
//    the file through 'Files to send'; measured in the pages (wall clock, both on this machine)
//    from the input's change event until B shows 'Save <name>' (every chunk verified and stored
//    in IndexedDB). A's own preparation is reported too: until the item is in A's history
//    (pass 1, hashing) and until A shows 'Save <name>' (pass 2, storing; only then is it served).
const WATCH_FILE = (name) => {
  const mark = (k) => { if (!(k in window.__file)) window.__file[k] = performance.timeOrigin + performance.now(); };
  window.__file = {};
  document.addEventListener('change', (e) => { if (e.target?.files?.length) mark('attach'); }, true);
  const check = () => {
    if ([...document.querySelectorAll('[role=log] li')].some((li) => li.textContent.includes(name))) mark('item');
    if (document.querySelector(`a[aria-label="Save ${CSS.escape(name)}"]`)) mark('stored');
  };
  new MutationObserver(check).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['aria-label'] });
  check();
};
const ferryFileThroughput = async (launch, bytes, path) => {
  const name = path.split('/').pop();
  const a = await device('file-a');
  const b = await device('file-b');
  try {
    await pair(a, b);
    for (const d of [a, b]) await d.page.evaluate(WATCH_FILE, name);
    // Main-thread busy time of each renderer (CDP TaskDuration, seconds), sampled at attach, when
    // A has stored the file and when B has: tells a CPU-bound phase from one that waits.
    const cdp = await Promise.all([a, b].map(async (d) => {
      const s = await d.context.newCDPSession(d.page);
      await s.send('Performance.enable');
      return s;
    }));
    const busy = async () => Promise.all(cdp.map(async (s) =>
      (await s.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration').value * 1000));
    const b0 = await busy();
    await a.page.getByLabel('Files to send').setInputFiles(path);
    const limit = { timeout: 1_800_000, polling: 100 };
    await a.page.waitForFunction(() => 'stored' in window.__file, null, limit);
    const b1 = await busy();
    await b.page.waitForFunction(() => 'stored' in window.__file, null, limit);
    const b2 = await busy();
    const ta = await a.page.evaluate(() => ({ ...window.__file, longest: window.__longest }));
    const tb = await b.page.evaluate(() => ({ ...window.__file, longest: window.__longest }));
    const prep = ta.stored - ta.attach, send = tb.stored - ta.stored;
    return {
      ms: tb.stored - ta.attach,
      sender_hashed_ms: ta.item - ta.attach,
      sender_stored_ms: prep,
      receiver_item_ms: tb.item - ta.attach,
      // Fraction of wall time each main thread was busy: [A, B] while A prepares, then while B fetches.
      busy_prep: [(b1[0] - b0[0]) / prep, (b1[1] - b0[1]) / prep],
      busy_transfer: [(b2[0] - b1[0]) / send, (b2[1] - b1[1]) / send],
      longest_task_ms: [ta.longest, tb.longest],
    };
  } finally {
    for (const d of [a, b]) await d.context.close();
  }
};
if (run('file')) {
  const bytes = FILE_MIB * 1024 * 1024;
  const mibps = (ms) => FILE_MIB / (ms / 1000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-file-'));
  const path = join(dir, `random-${FILE_MIB}MiB.bin`);
  const fd = openSync(path, 'w');
  for (let left = bytes; left > 0; left -= 1 << 20) writeSync(fd, randomBytes(Math.min(1 << 20, left)));
  closeSync(fd);
  const raw = await rawFileThroughput(LAUNCH, bytes, path);
  const ferry = ferryFileThroughput ? await ferryFileThroughput(LAUNCH, bytes, path) : null;
  rmSync(dir, { recursive: true, force: true });
  const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
  const p = (f) => `${Math.round(f * 100)}%`;
  row(`file throughput ${FILE_MIB} MiB A→B (attach on A → stored on B)`, ferry == null ? null : mibps(ferry.ms), mibps(raw), 'MiB/s',
    `${ferry == null ? 'Ferry: not built yet; ' : ''}baseline: raw RTCDataChannel, same file from a file input, ${FILE_CHUNK / 1024} KiB chunks as ${FILE_MESSAGE / 1024} KiB messages, bufferedAmountLow backpressure`);
  if (ferry) {
    row(`file ${FILE_MIB} MiB: sender prep (attach → stored on A)`, ferry.sender_stored_ms, null, 'ms',
      `hashed (item in A's history) ${s(ferry.sender_hashed_ms)}; item on B ${s(ferry.receiver_item_ms)}; A→B after A stored: ${mibps(ferry.ms - ferry.sender_stored_ms).toFixed(1)} MiB/s; ` +
      `main thread busy A/B: ${ferry.busy_prep.map(p).join('/')} preparing, ${ferry.busy_transfer.map(p).join('/')} transferring`);
  }
  results.scenarios.file = { bytes, raw_ms: raw, ferry_ms: ferry?.ms ?? null, ferry };
}

// 6. Host benchmarks of ferry-core (criterion; `cargo xtask bench` runs them before this script).
if (run('core')) {
  const home = process.env.CRITERION_HOME ?? join(ROOT, 'target/bench/criterion');
  const found = [];
  const walk = (dir) => {
    for (const f of existsSync(dir) ? readdirSync(dir) : []) {
      const p = join(dir, f);
      if (f === 'new' && existsSync(join(p, 'benchmark.json'))) found.push(p);
      else if (f !== 'base' && f !== 'change' && statSync(p).isDirectory()) walk(p);
    }
  };
  walk(home);
  results.scenarios.core = {};
  for (const dir of found.sort()) {
    const id = JSON.parse(readFileSync(join(dir, 'benchmark.json'), 'utf8')).full_id;
    const est = JSON.parse(readFileSync(join(dir, 'estimates.json'), 'utf8'));
    const ms = est.mean.point_estimate / 1e6;
    row(`core: ${id}`, ms, null, 'ms', 'criterion mean, native');
    results.scenarios.core[id] = { mean_ms: ms, ci_ms: [est.mean.confidence_interval.lower_bound / 1e6, est.mean.confidence_interval.upper_bound / 1e6] };
  }
  const bytesFile = join(ROOT, 'target/bench/core_sync_bytes.json');
  if (existsSync(bytesFile)) {
    const sync = JSON.parse(readFileSync(bytesFile, 'utf8'));
    for (const r of sync) {
      row(`core: reconnect bytes, ${r.history.toLocaleString('en')}-item history, ${r.new_each} texts apart each`, r.persisted_bytes, r.fresh_bytes, 'B',
        'persisted sync state vs fresh (ratio = persisted / fresh)');
    }
    results.scenarios.core_sync_bytes = sync;
  }
  const perMessage = join(ROOT, 'target/bench/core_per_message.json');
  if (existsSync(perMessage)) {
    const m = JSON.parse(readFileSync(perMessage, 'utf8'));
    row(`core: one incoming text, then view patch, ${m.history.toLocaleString('en')}-item history`, m.big_us, m.empty_us, 'µs',
      'median of 200; baseline = the same on an empty history (near 1: cost independent of history)');
    results.scenarios.core_per_message = m;
  }
}

// 7. Signaling under load (crates/signal/benches/load.rs; xtask runs it before this script).
const signalFile = join(ROOT, 'target/bench/signal_load.json');
if (run('signal') && existsSync(signalFile)) {
  const l = JSON.parse(readFileSync(signalFile, 'utf8'));
  const what = `${l.peers.toLocaleString('en')} peers in ${l.rooms} rooms`;
  row(`signaling: RSS per connected peer, ${what}`, l.rss_per_peer_kib, null, 'KiB', `ferry-signal RSS ${l.rss_connected_kib} KiB connected, ${l.rss_idle_kib} KiB idle`);
  const first = l.rounds_timing_ms?.[0];
  if (first) {
    row(`signaling: ${what} connected`, first.connect_all, null, 'ms', 'first round');
    row(`signaling: ${first.signals.toLocaleString('en')} offers/answers relayed`, first.signalling_done, null, 'ms', 'first round');
  }
  results.scenarios.signal_load = l;
}

// 8. A network change in the NAT lab (natlab.sh; xtask runs its journey before this script):
//    how long until a text written during the change arrives, against how long the same two
//    devices took to connect in the first place (what a new connection would cost).
const moveFile = join(ROOT, 'target/bench/network_change.json');
if (run('network') && existsSync(moveFile)) {
  const m = JSON.parse(readFileSync(moveFile, 'utf8'));
  const note = (how) => `NAT lab, TURN/UDP, both symmetric NATs; ${how}; baseline: the same pair's first connection (join → connected)`;
  row('network change, link down and up (Wi-Fi → cellular): texts flow again', m.link_down_up_ms, m.first_connect_ms, 'ms', note('the browser reports the change (online), ICE restarts at once'));
  row('network change, address changed under a live link: texts flow again', m.address_under_live_link_ms, m.first_connect_ms, 'ms', note('no browser event: found by 3.5 s of silence on the connection'));
  results.scenarios.network_change = m;
}

results.table = rows;
mkdirSync(join(ROOT, 'target/bench'), { recursive: true });
writeFileSync(join(ROOT, 'target/bench/results.json'), JSON.stringify(results, null, 2));
const fmt = (v) => (v == null ? '—' : v >= 100 ? v.toFixed(0) : v.toFixed(2));
const table = [`| scenario | Ferry | baseline | unit | ratio | note |`, `|---|---|---|---|---|---|`,
  ...rows.map((r) => `| ${r.name} | ${fmt(r.ferry)} | ${fmt(r.baseline)} | ${r.unit} | ${r.ratio == null ? '—' : r.ratio.toFixed(2) + '×'} | ${r.note} |`)].join('\n');
writeFileSync(join(ROOT, 'target/bench/results.md'), `${table}\n`);
console.log(`\n${table}`);
console.log(`\nwritten: target/bench/results.json`);
baselines.stop();
