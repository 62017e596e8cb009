// Journey: several tabs of one browser. They sync instantly among themselves with no server
// at all; only one holds the WebRTC connection, and when it closes another takes over.
import { test, expect } from '@playwright/test';
import { Device } from './device';

test('two tabs sync with no signaling server at all', async () => {
  const tab1 = await Device.launchWithoutServer('offline-tabs');
  const tab2 = await tab1.newTab();
  await tab1.send('typed in the first tab');
  await expect(tab2.message('typed in the first tab')).toBeVisible();
  await tab2.send('typed in the second tab');
  await expect(tab1.message('typed in the second tab')).toBeVisible();
  expect(await tab1.texts()).toEqual(await tab2.texts());
  await tab1.close();
});

test('one tab owns the WebRTC connection; when it closes another takes over', async () => {
  const tab1 = await Device.launch('laptop');
  const tab2 = await tab1.newTab();
  const phone = await Device.launch('phone');
  await phone.join(await tab1.pairingLink());
  await expect(phone.status).toHaveText('1 device connected');
  await expect(tab1.status).toHaveText('1 device connected');
  // The second tab has no connection of its own (it waits for the WebRTC lock), but reaches
  // the phone through the first.
  const locks = () => tab2.page.evaluate(async () => {
    const q = await navigator.locks.query();
    return { held: q.held!.length, pending: q.pending!.length };
  });
  expect(await locks()).toEqual({ held: 1, pending: 1 });
  await expect(tab2.status).toHaveText('1 device connected');
  await phone.send('to every tab');
  await expect(tab2.message('to every tab')).toBeVisible();
  await tab2.send('from the second tab');
  await expect(phone.message('from the second tab')).toBeVisible();

  // The owning tab closes: the second tab takes the connection over.
  await tab1.page.close();
  await expect.poll(locks).toEqual({ held: 1, pending: 0 });
  await expect(phone.status).toHaveText('1 device connected');
  await phone.send('after the takeover');
  await expect(tab2.message('after the takeover')).toBeVisible();
  await tab2.send('second tab, now connected itself');
  await expect(phone.message('second tab, now connected itself')).toBeVisible();
  expect(await phone.texts()).toEqual(await tab2.texts());
  await tab2.close();
  await phone.close();
});
