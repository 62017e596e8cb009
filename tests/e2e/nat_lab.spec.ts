// NAT lab journey (run by natlab.sh only): two devices, each in its own network namespace
// behind its own symmetric NAT (MASQUERADE --random-fully), with coturn and ferry-signal on a
// "public" namespace. No relay policy is forced: the NAT alone rules out the direct path, so
// with the person's TURN server they sync relayed, and without one the app says to add one.
import { test, expect } from '@playwright/test';
import { Device } from './device';

const LAB = process.env.FERRY_NATLAB === '1';
const APP = process.env.FERRY_APP_URL ?? '';
const TURN = process.env.FERRY_TURN ?? '';
const STUN = process.env.FERRY_STUN ?? '';
const CHROMIUM_A = process.env.FERRY_NATLAB_CHROMIUM_A ?? '';
const CHROMIUM_B = process.env.FERRY_NATLAB_CHROMIUM_B ?? '';
// The app is served over plain http from a non-loopback address: let Chromium treat it as a
// secure context, as a real deployment over https would be.
const ARGS = [`--unsafely-treat-insecure-origin-as-secure=${APP}`];

test.skip(!LAB, 'the NAT lab runs only from natlab.sh (cargo xtask test)');

async function configure(d: Device, server: string, user?: string): Promise<void> {
  await d.openAdvanced();
  await d.page.getByRole('textbox', { name: 'STUN or TURN server' }).fill(server);
  if (user) {
    await d.page.getByRole('textbox', { name: 'Username (TURN)' }).fill(user);
    await d.page.getByLabel('Credential (TURN)').fill('secret');
  }
  await d.page.getByRole('button', { name: 'Save connection settings' }).click();
  await expect(d.page.getByText('Connection settings saved.')).toBeVisible();
}

test('devices behind two symmetric NATs sync through TURN', async () => {
  const laptop = await Device.launchVia('nat-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('nat-phone', CHROMIUM_B, ARGS);
  // Only the laptop is configured: the pairing link carries its TURN settings to the phone.
  await configure(laptop, TURN, 'ferry');
  await expect(laptop.page.getByText(`This device uses: ${TURN} (user ferry)`)).toBeVisible();
  const started = Date.now();
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
  await expect(phone.status).toHaveText('1 device connected');
  console.log(`connected through both NATs in ${Date.now() - started} ms`);
  await laptop.openDevices();
  const list = laptop.page.getByRole('list', { name: 'Devices in this space' });
  await expect(list).toContainText(/online · relayed via TURN · \d+ ms round trip/);
  console.log(`laptop's device list: ${(await list.innerText()).replace(/\s+/g, ' ')}`);
  let t = Date.now();
  await laptop.send('from behind NAT A');
  await expect(phone.message('from behind NAT A')).toBeVisible();
  console.log(`A -> B text in ${Date.now() - t} ms`);
  t = Date.now();
  await phone.send('and back from NAT B');
  await expect(laptop.message('and back from NAT B')).toBeVisible();
  console.log(`B -> A text in ${Date.now() - t} ms`);
  await laptop.close();
  await phone.close();
});

test('without a relay the symmetric NATs keep the devices apart, and the app says why', async () => {
  // STUN only (coturn answers binding requests): each device learns its public address, but
  // a symmetric NAT maps every destination to a new port, so hole punching cannot work.
  test.setTimeout(180_000);
  const laptop = await Device.launchVia('nat-stun-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('nat-stun-phone', CHROMIUM_B, ARGS);
  await configure(laptop, STUN);
  await phone.join(await laptop.pairingLink());
  await laptop.openDevices();
  const problem = laptop.page.getByRole('note', { name: 'Connection problem' });
  const started = Date.now();
  await expect(problem).toContainText('no relay is configured — add a TURN server', { timeout: 90_000 });
  console.log(`no direct path: reported after ${Date.now() - started} ms`);
  await expect(laptop.status).toHaveText('No other devices connected');
  await expect(phone.status).toHaveText('No other devices connected');
  await laptop.close();
  await phone.close();
});
