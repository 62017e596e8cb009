// Diagnostic for the file benchmark (not part of `cargo xtask bench`): raw JS between two
// Chromium processes, a pull protocol like Ferry's (B asks for 256 KiB chunks, at most `window`
// outstanding; A answers each as four 64 KiB messages), with or without a polling tick on both
// sides (Ferry's main loop handles received messages every 10 ms). Shows what the window and the
// tick alone cost on this machine, with no hashing, encryption or storage. A sends without
// backpressure, so window × 256 KiB must stay well under the 16 MiB send buffer (≤ 32).
// Run inside a network namespace with a non-loopback interface (see netns.sh):
// node tests/e2e/bench/window_probe.mjs [MiB=64]
import { chromium } from '@playwright/test';
import { createServer } from 'node:http';

const MIB = Number(process.argv[2] ?? 64);
const server = createServer((_, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>probe</title>'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const launch = { executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-features=WebRtcHideLocalIpsWithMdns'] };

async function probe(window, tick) {
  const browsers = [await chromium.launch(launch), await chromium.launch(launch)];
  try {
    const [a, b] = await Promise.all(browsers.map(async (br) => {
      const p = await br.newPage();
      await p.goto(`http://127.0.0.1:${server.address().port}/`);
      await p.evaluate(() => (window.gathered = (pc) => new Promise((r) => pc.iceGatheringState === 'complete' ? r() : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()))));
      return p;
    }));
    const offer = await a.evaluate(async ([total, tick]) => {
      const pc = (window.pc = new RTCPeerConnection({ iceServers: [] }));
      const dc = pc.createDataChannel('bulk', { ordered: true });
      dc.binaryType = 'arraybuffer';
      const mib = new Uint8Array(1 << 20);
      for (let o = 0; o < mib.length; o += 65536) crypto.getRandomValues(mib.subarray(o, o + 65536));
      const file = new Blob(Array.from({ length: Math.ceil(total / mib.length) }, () => mib)).slice(0, total);
      const queue = [];
      const serve = async () => {
        while (queue.length) {
          const i = queue.shift();
          const chunk = new Uint8Array(await file.slice(i * 262144, (i + 1) * 262144).arrayBuffer());
          for (let o = 0; o < chunk.length; o += 65536) dc.send(chunk.subarray(o, o + 65536));
        }
      };
      dc.onmessage = (e) => { queue.push(Number(e.data)); if (!tick) serve(); };
      if (tick) (async () => { for (;;) { await serve(); await new Promise((r) => setTimeout(r, tick)); } })();
      await pc.setLocalDescription();
      await window.gathered(pc);
      return pc.localDescription.toJSON();
    }, [MIB << 20, tick]);
    const answer = await b.evaluate(async (offer) => {
      const pc = (window.pc = new RTCPeerConnection({ iceServers: [] }));
      window.ch = new Promise((r) => (pc.ondatachannel = ({ channel }) => { channel.binaryType = 'arraybuffer'; r(channel); }));
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription();
      await window.gathered(pc);
      return pc.localDescription.toJSON();
    }, offer);
    await a.evaluate((answer) => window.pc.setRemoteDescription(answer), answer);
    return await b.evaluate(async ([chunks, window_, tick]) => {
      const dc = await window.ch;
      if (dc.readyState !== 'open') await new Promise((r) => (dc.onopen = r));
      let next = 0, got = 0, bytes = 0, inflight = 0;
      const inbox = [];
      const t0 = performance.now();
      return await new Promise((done) => {
        const ask = () => { while (inflight < window_ && next < chunks) { dc.send(String(next++)); inflight++; } };
        const handle = () => {
          for (const m of inbox.splice(0)) {
            bytes += m.byteLength;
            if (bytes >= 262144) { bytes -= 262144; got++; inflight--; }
          }
          if (got >= chunks) return done(performance.now() - t0);
          ask();
        };
        dc.onmessage = (e) => { inbox.push(e.data); if (!tick) handle(); };
        if (tick) (async () => { for (;;) { handle(); if (got >= chunks) return; await new Promise((r) => setTimeout(r, tick)); } })();
        ask();
      });
    }, [(MIB << 20) / 262144, window, tick]);
  } finally {
    for (const br of browsers) await br.close();
  }
}

const rows = [];
for (const [window, tick] of [[6, 0], [6, 10], [16, 10], [32, 10]]) {
  const ms = await probe(window, tick);
  rows.push({ window_chunks: window, tick_ms: tick, mibps: +(MIB / (ms / 1000)).toFixed(1) });
  console.log(rows.at(-1));
}
console.table(rows);
server.close();
