// Baselines for bench.mjs, measured in the same run, network namespace and Chromium build as
// Ferry: the Yjs peer baseline (Yjs + y-webrtc + y-indexeddb, its own signaling server on
// 127.0.0.1) and a raw-JS RTCDataChannel file sender. Nothing here comes from a CDN: the Yjs
// page is bundled from node_modules with esbuild and served by a tiny static server.
import { chromium } from '@playwright/test';
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HERE = new URL('.', import.meta.url).pathname;
const ROOT = new URL('../../..', import.meta.url).pathname;
const OUT = join(ROOT, 'target/bench/yjs');
export const BASELINE_PORT = 8090;
export const YJS_SIGNAL_PORT = 4444;
const ORIGIN = `http://127.0.0.1:${BASELINE_PORT}`;

async function waitHttp(url, tries = 100) {
  for (let i = 0; i < tries; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

/// Bundles the Yjs page, serves it (and a blank page for the raw baseline) on 127.0.0.1:8090
/// and starts y-webrtc's signaling server on 127.0.0.1:4444. `stop()` ends both.
export async function startBaselines() {
  await build({
    entryPoints: [join(HERE, 'yjs/main.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    outfile: join(OUT, 'main.js'),
    logLevel: 'warning',
  });
  const files = {
    '/yjs/': ['text/html', () => readFileSync(join(HERE, 'yjs/index.html'))],
    '/yjs/main.js': ['text/javascript', () => readFileSync(join(OUT, 'main.js'))],
    '/blank.html': ['text/html', () => '<!doctype html><title>raw baseline</title>'],
  };
  const server = createServer((req, res) => {
    const f = files[new URL(req.url, ORIGIN).pathname];
    if (!f) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': f[0], 'cache-control': 'no-store' }).end(f[1]());
  });
  await new Promise((r) => server.listen(BASELINE_PORT, '127.0.0.1', r));
  const signal = spawn(process.execPath, [join(HERE, 'yjs/signal.mjs')], {
    env: { ...process.env, PORT: String(YJS_SIGNAL_PORT), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitHttp(`http://127.0.0.1:${YJS_SIGNAL_PORT}/`);
  return {
    stop() {
      signal.kill();
      server.close();
    },
  };
}

/// A Yjs "device": its own Chromium profile (persistent, like Ferry's devices), the page
/// loaded from IndexedDB and connecting to signaling.
async function yjsDevice(launch, room, dir) {
  const context = await chromium.launchPersistentContext(dir, launch);
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${ORIGIN}/yjs/?room=${room}&signal=ws://127.0.0.1:${YJS_SIGNAL_PORT}`);
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  return { dir, context, page };
}

const waitYjsCount = (page, n, timeout = 600_000) =>
  page.waitForFunction((n) => Number(document.body.dataset.count) >= n, n, { timeout, polling: 50 });

/// The reconcile scenario of bench.mjs, step for step, with Yjs: two devices meet once, then
/// each writes `n` items while the other is closed; time from reopening the first device
/// (reconnect) until both hold 2n items.
export async function yjsReconcile(launch, n = 1000) {
  const room = `bench-${Date.now()}`;
  const fresh = (name) => mkdtempSync(join(tmpdir(), `yjs-bench-${name}-`));
  const a = await yjsDevice(launch, room, fresh('a'));
  const b = await yjsDevice(launch, room, fresh('b'));
  for (const d of [a, b]) await d.page.waitForFunction(() => window.bench.peers() >= 1, null, { timeout: 30_000 });
  await b.context.close();
  await a.page.evaluate(([p, n]) => window.bench.write(p, n), ['from A', n]);
  await waitYjsCount(a.page, n);
  await a.page.evaluate(() => window.bench.flushed());
  await a.context.close();
  const b2 = await yjsDevice(launch, room, b.dir);
  await b2.page.evaluate(([p, n]) => window.bench.write(p, n), ['from B', n]);
  await waitYjsCount(b2.page, n);
  await b2.page.evaluate(() => window.bench.flushed());
  const t0 = Date.now();
  const a2 = await yjsDevice(launch, room, a.dir);
  await Promise.all([waitYjsCount(a2.page, 2 * n), waitYjsCount(b2.page, 2 * n)]);
  const ms = Date.now() - t0;
  for (const d of [a2, b2]) await d.context.close();
  return ms;
}

export const FILE_CHUNK = 256 * 1024;
export const FILE_MESSAGE = 64 * 1024;

/// Raw-JS file transfer A→B between two browsers (separate processes, like two devices):
/// one reliable ordered RTCDataChannel, the file (a Blob of `bytes`) read in 256 KiB chunks,
/// each sent as four 64 KiB messages, with backpressure: above 4 MiB buffered, wait for
/// `bufferedamountlow` (threshold 1 MiB). B counts bytes and answers "done" at the end.
/// With `path`, the file is that file on disk, picked through a file input (as Ferry reads it);
/// without, a Blob of random bytes. Returns milliseconds from the first read until A hears "done".
export async function rawFileThroughput(launch, bytes, path) {
  const browsers = [await chromium.launch(launch), await chromium.launch(launch)];
  try {
    const [a, b] = await Promise.all(browsers.map(async (br) => {
      const page = await br.newPage();
      await page.goto(`${ORIGIN}/blank.html`);
      return page;
    }));
    // Signaling through this script: full offer/answer after ICE gathering (no trickle).
    const gather = `window.gathered = (pc) => new Promise((r) => pc.iceGatheringState === 'complete' ? r() : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));`;
    await a.evaluate(gather);
    await b.evaluate(gather);
    const offer = await a.evaluate(async () => {
      const pc = (window.pc = new RTCPeerConnection({ iceServers: [] }));
      window.dc = pc.createDataChannel('file', { ordered: true });
      await pc.setLocalDescription();
      await window.gathered(pc);
      return pc.localDescription.toJSON();
    });
    const answer = await b.evaluate(async ([offer, total]) => {
      const pc = (window.pc = new RTCPeerConnection({ iceServers: [] }));
      pc.ondatachannel = ({ channel }) => {
        let got = 0;
        channel.binaryType = 'arraybuffer';
        channel.onmessage = (e) => {
          got += e.data.byteLength;
          if (got >= total) channel.send('done');
        };
      };
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription();
      await window.gathered(pc);
      return pc.localDescription.toJSON();
    }, [offer, bytes]);
    if (path) {
      await a.evaluate(() => {
        const input = document.createElement('input');
        input.type = 'file';
        input.ariaLabel = 'raw file';
        document.body.append(input);
      });
      await a.getByLabel('raw file').setInputFiles(path);
    }
    return await a.evaluate(async ([answer, total, CHUNK, MSG]) => {
      const dc = window.dc;
      const picked = document.querySelector('input[type=file]')?.files?.[0];
      await window.pc.setRemoteDescription(answer);
      if (dc.readyState !== 'open') await new Promise((r) => (dc.onopen = r));
      let file = picked;
      if (!file) {
        const mib = new Uint8Array(1 << 20);
        for (let o = 0; o < mib.length; o += 65536) crypto.getRandomValues(mib.subarray(o, o + 65536));
        file = new Blob(Array.from({ length: Math.ceil(total / mib.length) }, () => mib)).slice(0, total);
      }
      dc.bufferedAmountLowThreshold = 1 << 20;
      const HIGH = 4 << 20;
      const done = new Promise((r) => (dc.onmessage = (e) => e.data === 'done' && r()));
      const t0 = performance.now();
      for (let at = 0; at < total; at += CHUNK) {
        const chunk = new Uint8Array(await file.slice(at, at + CHUNK).arrayBuffer());
        for (let o = 0; o < chunk.length; o += MSG) {
          if (dc.bufferedAmount > HIGH) await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
          dc.send(chunk.subarray(o, o + MSG));
        }
      }
      await done;
      return performance.now() - t0;
    }, [answer, bytes, FILE_CHUNK, FILE_MESSAGE]);
  } finally {
    for (const br of browsers) await br.close();
  }
}
