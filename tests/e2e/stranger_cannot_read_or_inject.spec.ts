// Journey: a stranger learns the room id (as a hostile signaling server would) and joins the
// room. It receives nothing readable, whatever it sends (garbage, forged or replayed frames)
// is refused and counted, and the owner's two devices keep syncing.
import { test, expect, chromium } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { CHROMIUM_ARGS, Device } from './device';
import { joinAsStranger, roomIdOf, strangerChannels, strangerReceived, strangerSend, strangerSignal } from './stranger';

test('a stranger in the room learns nothing and injects nothing', async () => {
  // 1. Two paired devices, one secret text.
  const laptop = await Device.launch('laptop');
  const phone = await Device.launch('phone');
  const link = await laptop.pairingLink();
  await phone.join(link);
  await expect(laptop.status).toHaveText('1 device connected');
  await laptop.send('my bank PIN is 4711');
  await expect(phone.message('my bank PIN is 4711')).toBeVisible();

  // 2. The stranger joins the same room through the signaling server.
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  const page = await browser.newPage();
  await page.goto('/health');
  await joinAsStranger(page, `ws://127.0.0.1:3536/${roomIdOf(link)}`);
  await expect.poll(() => strangerChannels(page)).toBe(2);
  await expect.poll(async () => (await strangerReceived(page)).length).toBeGreaterThanOrEqual(2);

  // 3. Whatever reached it is sealed: no text, no device name, no secret.
  await laptop.send('written while the stranger listens');
  await expect(phone.message('written while the stranger listens')).toBeVisible();
  const heard = Buffer.concat(await strangerReceived(page));
  for (const plain of ['bank PIN', '4711', 'stranger listens', 'Chrome on Linux']) {
    expect(heard.includes(Buffer.from(plain))).toBe(false);
  }

  // 4. It sends garbage, truncated and bit-flipped copies, and replays of what it heard.
  const captured = await strangerReceived(page);
  const flipped = captured.map((f) => { const c = Buffer.from(f); c[c.length - 1] ^= 1; return c; });
  const truncated = captured.map((f) => f.subarray(0, 20));
  const garbage = Array.from({ length: 20 }, (_, i) => randomBytes(10 + i * 7));
  await strangerSend(page, [...captured, ...flipped, ...truncated, ...garbage]);

  // 5. Both devices refused and counted it, blocked the stranger, and never counted it as a device.
  for (const device of [laptop, phone]) {
    await device.openAdvanced();
    await expect
      .poll(async () => Number(await device.page.getByTestId('refused-frames').innerText()))
      .toBeGreaterThanOrEqual(16); // MAX_BAD_FRAMES: then the peer is blocked, its frames dropped unread
    await expect(device.page.getByTestId('blocked-connections')).toHaveText('1');
    await expect(device.status).toHaveText('1 device connected');
  }

  // 6. Malformed signaling (a garbage offer, answer and ICE candidate) must not crash them:
  //    upstream matchbox panics there, which aborts the whole app (patched, see FERRY_PATCH.md).
  expect(await strangerSignal(page, { Offer: 'v=0 this is not SDP' })).toBe(2);
  await strangerSignal(page, { Answer: 'not an answer either' });
  await strangerSignal(page, { IceCandidate: '{"candidate":"candidate:garbage","sdpMid":"0"}' });

  // 7. The real devices keep syncing; nothing foreign appeared.
  await phone.send('still private and still in sync');
  await expect(laptop.message('still private and still in sync')).toBeVisible();
  expect(await laptop.texts()).toEqual(await phone.texts());
  expect(await laptop.texts()).toHaveLength(3);

  await browser.close();
  await laptop.close();
  await phone.close();
});
