// Journey: a stranger who learned a room id (as a hostile signaling server or an eavesdropper
// on a pairing link would) joins the room's signaling and leaves it again, hundreds of times.
// Every join makes each device start a WebRTC handshake with the newcomer. The owner's
// devices must drop those handshakes when the stranger leaves instead of keeping a peer
// connection each (upstream matchbox keeps them forever; at 500 Chromium refuses new ones and
// matchbox's `unwrap` aborts the app), and keep syncing with each other.
import { test, expect } from '@playwright/test';
import { Device } from './device';
import { roomIdOf } from './stranger';
import { churn, countPeerConnections, openPeerConnections, watchForCrashes } from './churn';

const JOINS = 600;
const PARALLEL = 15;
/** Connections a device may hold open at the end: its peer, and a few in flight. */
const MAX_OPEN = 20;

test('a stranger joining and leaving a room 600 times leaks no connections', async () => {
  test.setTimeout(150_000);

  // 1. Two paired devices; each page counts its RTCPeerConnections and is watched for panics.
  const laptop = await Device.launch('laptop');
  const phone = await Device.launch('phone');
  const crashes = new Map<Device, string[]>();
  for (const d of [laptop, phone]) {
    await countPeerConnections(d.context);
    crashes.set(d, watchForCrashes(d.page));
    await d.page.reload();
    await d.ready();
  }
  const link = await laptop.pairingLink();
  await phone.join(link);
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(phone.status).toHaveText('1 device connected');

  // 2. The stranger opens the room's signaling socket, waits for its id and leaves: 600
  //    times, 15 at once. Joins the server refuses (a join rate limit) don't count.
  const started = Date.now();
  const result = await churn(`ws://127.0.0.1:3536/${roomIdOf(link)}`, {
    joins: JOINS,
    parallel: PARALLEL,
    deadline: started + 75_000,
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`stranger: ${result.joined} joins, ${result.refused} refused, ${result.addresses} source addresses, ${seconds} s`);
  if (result.joined < JOINS) {
    // The server limited the stranger; what got through still makes every device start (and
    // must make it drop) a handshake per join.
    test.info().annotations.push({ type: 'limited', description: `${result.joined}/${JOINS} joins let in` });
    expect(result.refused).toBeGreaterThan(0);
    expect(result.joined).toBeGreaterThanOrEqual(60);
  }

  // 3. The devices still sync, both ways.
  await laptop.send('after the stranger left');
  await expect(phone.message('after the stranger left')).toBeVisible();
  await phone.send('and back again');
  await expect(laptop.message('and back again')).toBeVisible();
  await expect(laptop.status).toHaveText('1 device connected');

  // 4. Each device closed the connections of the stranger's visits: a handful stay open (the
  //    other device's), not one per visit.
  for (const d of [laptop, phone]) {
    await expect
      .poll(async () => (await openPeerConnections(d.page)).open, { timeout: 40_000 })
      .toBeLessThanOrEqual(MAX_OPEN);
    const { made, open } = await openPeerConnections(d.page);
    console.log(`${d.name}: ${made} RTCPeerConnections made, ${open} never closed`);
  }

  // 5. Nothing panicked, and the pages still answer.
  for (const d of [laptop, phone]) {
    expect(crashes.get(d)).toEqual([]);
    await expect(d.composer).toBeEnabled();
  }

  await laptop.close();
  await phone.close();
});
