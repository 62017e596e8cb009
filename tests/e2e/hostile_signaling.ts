// A hostile signaling server: speaks matchbox's JSON protocol just well enough to be trusted,
// then sends what no honest server would. Runs in the test process, on 127.0.0.1 inside the
// test's network namespace, on its own port.
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';

export const HOSTILE_PORT = 3537;

/** What the server sends every device that connects, in this order. */
export function hostileScript(): string[] {
  const stranger = randomUUID();
  return [
    JSON.stringify({ IdAssigned: randomUUID() }),
    // upstream matchbox: `expect("already sent peer id")`, a panic that aborts the app
    JSON.stringify({ IdAssigned: randomUUID() }),
    'this is {not JSON',
    JSON.stringify({ NoSuchEvent: 42 }),
    // 8 MiB text frames: one that is JSON and one that is not
    JSON.stringify({ Signal: { sender: stranger, data: { Offer: 'v=0\r\n'.padEnd(8 << 20, 'a') } } }),
    'x'.repeat(8 << 20),
    JSON.stringify({ NewPeer: stranger }),
    JSON.stringify({ NewPeer: stranger }),
    JSON.stringify({ PeerLeft: stranger }),
  ];
}

export type Hostile = {
  connections: () => number;
  /** Sends every open socket one text frame of `bytes` ASCII characters (not JSON); resolves,
   *  with how many sockets it went to, once it has been handed to the kernel. */
  sendHuge: (bytes: number) => Promise<number>;
  close: () => Promise<void>;
};

/** Starts the server. Sockets stay open after the script, so the app keeps the connection
 *  instead of reconnecting (and being sent the script again) in a loop. */
export async function startHostileSignaling(port = HOSTILE_PORT): Promise<Hostile> {
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  const sockets = new Set<WebSocket>();
  let connections = 0;
  server.on('connection', (ws) => {
    connections++;
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
    for (const message of hostileScript()) ws.send(message);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return {
    connections: () => connections,
    sendHuge: async (bytes) => {
      const frame = 'x'.repeat(bytes);
      const open = [...sockets].filter((ws) => ws.readyState === ws.OPEN);
      await Promise.all(
        open.map((ws) => new Promise<void>((resolve, reject) => ws.send(frame, (e) => (e ? reject(e) : resolve())))),
      );
      return open.length;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of sockets) ws.terminate();
        server.close(() => resolve());
      }),
  };
}
