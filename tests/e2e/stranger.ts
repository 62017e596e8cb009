// A "stranger": someone who learned a space's room id (a hostile signaling server does) but
// not its secret. Scripted directly in a page with raw WebRTC and the matchbox signaling
// protocol, so it behaves like any peer of the room without running Ferry's code.
import type { Page } from '@playwright/test';
import { hkdfSync } from 'node:crypto';

/** The room id Ferry derives from the secret in a pairing link (HKDF-SHA256). */
export function roomIdOf(link: string): string {
  const secret = Buffer.from(new URL(link).hash.match(/pair=([^&]+)/)![1], 'base64url');
  return Buffer.from(hkdfSync('sha256', secret, 'ferry/space/v1', 'room-id', 16)).toString('hex');
}

/** Joins the room as a peer; records every frame received; can send arbitrary bytes. */
export async function joinAsStranger(page: Page, roomUrl: string): Promise<void> {
  await page.evaluate((url) => {
    const w = window as any;
    const ws = new WebSocket(url);
    w.stranger = { received: [] as number[][], channels: [] as RTCDataChannel[], peers: [] as string[], ws };
    ws.onmessage = async (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.Signal?.sender && !w.stranger.peers.includes(msg.Signal.sender)) w.stranger.peers.push(msg.Signal.sender);
      const offer = msg.Signal?.data?.Offer;
      if (!offer) return;
      const pc = new RTCPeerConnection({ iceServers: [] });
      // matchbox uses pre-negotiated channels: id 0 is Ferry's reliable channel.
      const dc = pc.createDataChannel('matchbox_socket_0', { negotiated: true, id: 0, ordered: true });
      dc.binaryType = 'arraybuffer';
      dc.onmessage = (e) => w.stranger.received.push(Array.from(new Uint8Array(e.data)));
      dc.onopen = () => w.stranger.channels.push(dc);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      await pc.setLocalDescription(await pc.createAnswer());
      await new Promise<void>((done) => {
        if (pc.iceGatheringState === 'complete') return done();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
      });
      ws.send(JSON.stringify({ Signal: { receiver: msg.Signal.sender, data: { Answer: pc.localDescription!.sdp } } }));
    };
  }, roomUrl);
}

export async function strangerChannels(page: Page): Promise<number> {
  return page.evaluate(() => (window as any).stranger.channels.filter((c: RTCDataChannel) => c.readyState === 'open').length);
}

export async function strangerReceived(page: Page): Promise<Buffer[]> {
  const frames: number[][] = await page.evaluate(() => (window as any).stranger.received);
  return frames.map((f) => Buffer.from(f));
}

/** Sends each frame to every device the stranger is connected to. */
export async function strangerSend(page: Page, frames: Buffer[]): Promise<void> {
  await page.evaluate((frames) => {
    for (const dc of (window as any).stranger.channels as RTCDataChannel[]) {
      for (const f of frames) dc.send(new Uint8Array(f));
    }
  }, frames.map((f) => Array.from(f)));
}

/** Sends a raw matchbox signal (e.g. a malformed offer) to every device it has met. */
export async function strangerSignal(page: Page, data: unknown): Promise<number> {
  return page.evaluate((data) => {
    const s = (window as any).stranger;
    for (const receiver of s.peers) s.ws.send(JSON.stringify({ Signal: { receiver, data } }));
    return s.peers.length;
  }, data);
}
