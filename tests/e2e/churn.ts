// Helpers for journeys where the network misbehaves: a stranger churning through a room's
// signaling, RTCPeerConnections counted in a page, crashes of the app watched for.
import type { BrowserContext, Page } from '@playwright/test';
import WebSocket from 'ws';

/** Counts the page's RTCPeerConnections (from the next navigation on): how many were made
 *  and how many were closed (`close()` called, or `connectionState` became 'closed'). */
export async function countPeerConnections(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const Original = window.RTCPeerConnection;
    const counts = { made: 0, closed: 0 };
    (window as any).peerConnections = counts;
    const Counting = function (...args: unknown[]) {
      const pc: RTCPeerConnection = new (Original as any)(...args);
      counts.made++;
      let closed = false;
      const markClosed = () => {
        if (!closed) {
          closed = true;
          counts.closed++;
        }
      };
      const close = pc.close.bind(pc);
      pc.close = () => {
        markClosed();
        close();
      };
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'closed') markClosed();
      });
      return pc;
    } as unknown as typeof RTCPeerConnection;
    Counting.prototype = Original.prototype;
    (Counting as any).generateCertificate = Original.generateCertificate;
    window.RTCPeerConnection = Counting;
  });
}

/** RTCPeerConnections the page made and never closed. */
export async function openPeerConnections(page: Page): Promise<{ made: number; open: number }> {
  return page.evaluate(() => {
    const c = (window as any).peerConnections;
    return { made: c.made, open: c.made - c.closed };
  });
}

/** Collects what would show that the app crashed (a Rust panic aborts the whole wasm app:
 *  'panicked at', then 'unreachable' on every later call into it). */
export function watchForCrashes(page: Page): string[] {
  const crashes: string[] = [];
  const check = (text: string) => {
    if (/panicked|unreachable/i.test(text)) crashes.push(text.slice(0, 300));
  };
  page.on('console', (m) => check(m.text()));
  page.on('pageerror', (e) => check(`${e.name}: ${e.message}`));
  return crashes;
}

export type ChurnResult = { joined: number; refused: number; addresses: number };

/** One stranger visit: opens the room's signaling socket from `localAddress`, waits for the
 *  server's first message (its id) and leaves. 'refused' when the server turns it away (e.g.
 *  HTTP 429 from a join rate limit) or the socket fails. */
function visit(url: string, localAddress: string): Promise<'joined' | 'refused'> {
  return new Promise((resolve) => {
    let joined = false;
    const ws = new WebSocket(url, { localAddress, handshakeTimeout: 5_000 });
    ws.on('message', () => {
      joined = true;
      ws.close();
    });
    ws.on('unexpected-response', (req) => {
      req.destroy();
      resolve('refused');
    });
    ws.on('error', () => resolve(joined ? 'joined' : 'refused'));
    ws.on('close', () => resolve(joined ? 'joined' : 'refused'));
  });
}

/** A stranger who knows a room id joins and leaves the room `joins` times, `parallel` at once.
 *  Only visits the server let in count. Visits come from rotating loopback source addresses
 *  (127.0.0.2 ...), as from many machines: a per-address join limit slows the churn but an
 *  attacker with many addresses is not stopped by it. Gives up at `deadline` (ms since epoch). */
export async function churn(
  roomUrl: string,
  opts: { joins: number; parallel: number; deadline: number },
): Promise<ChurnResult> {
  const result: ChurnResult = { joined: 0, refused: 0, addresses: 0 };
  let next = 0;
  const address = () => {
    const n = next++ % 250;
    result.addresses = Math.max(result.addresses, n + 1);
    return `127.0.0.${n + 2}`;
  };
  let inFlight = 0;
  const worker = async () => {
    let refusedInARow = 0;
    while (result.joined + inFlight < opts.joins && Date.now() < opts.deadline) {
      inFlight++;
      const outcome = await visit(roomUrl, address());
      inFlight--;
      if (outcome === 'joined') {
        result.joined++;
        refusedInARow = 0;
      } else {
        result.refused++;
        // Back off a little when turned away, so the loop doesn't spin on refusals.
        refusedInARow++;
        await new Promise((r) => setTimeout(r, Math.min(1_000, 20 * refusedInARow)));
      }
    }
  };
  await Promise.all(Array.from({ length: opts.parallel }, worker));
  return result;
}

/** Lets the test hand the page's data channels messages as if a peer had sent them (from the
 *  next navigation on): the `onmessage` handler the app sets on each RTCDataChannel is kept.
 *  Chromium refuses to *send* more than 256 KiB per message, so a tampered or non-browser
 *  peer is what sends larger ones; this stands in for it. */
export async function captureChannelHandlers(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const prop = Object.getOwnPropertyDescriptor(RTCDataChannel.prototype, 'onmessage')!;
    const handlers: { channel: RTCDataChannel; handler: (e: MessageEvent) => void }[] = [];
    (window as any).channelHandlers = handlers;
    Object.defineProperty(RTCDataChannel.prototype, 'onmessage', {
      configurable: true,
      get() {
        return prop.get!.call(this);
      },
      set(handler) {
        handlers.push({ channel: this, handler });
        prop.set!.call(this, handler);
      },
    });
  });
}

/** Delivers messages of these sizes (zero bytes, but for a last one of random bytes) on the
 *  first open data channel named `label`, as if its peer sent them; returns how many channels
 *  were open. */
export async function deliverAsPeer(page: Page, label: string, sizes: number[]): Promise<number> {
  return page.evaluate(({ label, sizes }) => {
    const open = ((window as any).channelHandlers as { channel: RTCDataChannel; handler: (e: MessageEvent) => void }[])
      .filter((h) => h.channel.label === label && h.channel.readyState === 'open');
    if (open.length === 0) return 0;
    for (const size of sizes) {
      const data = new ArrayBuffer(size);
      open[0].handler(new MessageEvent('message', { data }));
    }
    return open.length;
  }, { label, sizes });
}
