// Journey: a peer (a tampered client; Chromium itself refuses to send such messages) sends
// data channel messages far larger than any frame Ferry sends (at most 64 KiB). The device
// drops them before copying them into the app (upstream matchbox copies every message into
// wasm memory first, then the app decodes and refuses it), and keeps syncing.
import { test, expect } from '@playwright/test';
import { Device } from './device';
import { captureChannelHandlers, deliverAsPeer, watchForCrashes } from './churn';

test('oversized data channel messages are dropped before they reach the app', async () => {
  // 1. Two paired devices; the laptop's data channels can be handed messages as if from the phone.
  const laptop = await Device.launch('laptop');
  await captureChannelHandlers(laptop.context);
  const crashes = watchForCrashes(laptop.page);
  const dropped: string[] = [];
  laptop.page.on('console', (m) => {
    if (m.text().includes('dropped an oversized data channel message')) dropped.push(m.text());
  });
  await laptop.page.reload();
  await laptop.ready();
  const phone = await Device.launch('phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await laptop.openAdvanced();
  const refused = laptop.page.getByTestId('refused-frames');
  await expect(refused).toHaveText('0');

  // 2. The "phone" sends three 2 MiB messages, then one small bad frame: the small one is
  //    refused and counted by the app, the big ones never get that far.
  const MiB = 1 << 20;
  expect(await deliverAsPeer(laptop.page, 'matchbox_socket_0', [2 * MiB, 2 * MiB, 8 * MiB, 20])).toBe(1);

  // 3. The phone's next text arrives on the same ordered channel, after all of them: by then
  //    the app has seen everything it will see of them.
  await phone.send('after the big messages');
  await expect(laptop.message('after the big messages')).toBeVisible();
  await expect(refused).toHaveText('1');
  await expect.poll(() => dropped.length).toBe(3);

  // 4. The devices still sync, both ways; nothing panicked.
  await laptop.send('and back');
  await expect(phone.message('and back')).toBeVisible();
  expect(crashes).toEqual([]);

  await laptop.close();
  await phone.close();
});
