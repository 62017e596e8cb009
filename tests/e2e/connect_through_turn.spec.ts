// Journey: two devices that cannot reach each other directly (relay-only, as behind symmetric
// NAT / CGNAT) connect through the person's own TURN server, set up in the Devices view, and
// the device list says the path is relayed.
import { test, expect } from '@playwright/test';
import { Device } from './device';

const TURN = process.env.FERRY_TURN;

async function useTurn(d: Device): Promise<void> {
  await d.openAdvanced();
  await d.page.getByRole('textbox', { name: 'STUN or TURN server' }).fill(TURN!);
  await d.page.getByRole('textbox', { name: 'Username (TURN)' }).fill('ferry');
  await d.page.getByLabel('Credential (TURN)').fill('secret');
  await d.page.getByRole('button', { name: 'Save connection settings' }).click();
  await expect(d.page.getByText('Connection settings saved.')).toBeVisible();
  await expect(d.page.getByText(`This device uses: ${TURN} (user ferry)`)).toBeVisible();
}

test('relay-only devices sync through TURN and say so', async () => {
  test.skip(!TURN, 'coturn is not installed');
  const laptop = await Device.launch('turn-laptop', '/', { relayOnly: true });
  const phone = await Device.launch('turn-phone', '/', { relayOnly: true });
  // Only the laptop is configured: the pairing link carries its TURN settings to the phone.
  await useTurn(laptop);
  await expect(laptop.page.getByRole('textbox', { name: 'Pairing link' })).toHaveValue(/&ice=/);
  await phone.join(await laptop.pairingLink());
  await phone.openAdvanced();
  await expect(phone.page.getByText(`This device uses: ${TURN} (user ferry)`)).toBeVisible();
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(phone.status).toHaveText('1 device connected');
  await laptop.openDevices();
  const list = laptop.page.getByRole('list', { name: 'Devices in this space' });
  await expect(list).toContainText('online · relayed via TURN');
  // The round trip the browser measures on the relayed pair is shown next to the path.
  // The relay's transport is named (coturn on UDP here).
  await expect(list).toContainText(/relayed via TURN \(UDP\) · \d+ ms round trip/, { timeout: 20_000 });
  await laptop.send('through the relay');
  await expect(phone.message('through the relay')).toBeVisible();
  await phone.send('and back');
  await expect(laptop.message('and back')).toBeVisible();
  await laptop.close();
  await phone.close();
});

test('devices that cannot reach each other and have no relay are told to add a TURN server', async () => {
  // Relay-only policy with no TURN server configured: no candidate pair can ever work, as
  // between two CGNATs. ICE gives up and the app says why, in words a person can act on.
  test.setTimeout(180_000);
  const laptop = await Device.launch('noturn-laptop', '/', { relayOnly: true });
  const phone = await Device.launch('noturn-phone', '/', { relayOnly: true });
  await phone.join(await laptop.pairingLink());
  await laptop.openDevices();
  const problem = laptop.page.getByRole('note', { name: 'Connection problem' });
  const started = Date.now();
  await expect(problem).toContainText('no relay is configured — add a TURN server', { timeout: 90_000 });
  console.log(`ICE failure reported after ${Date.now() - started} ms`);
  await expect(laptop.status).toHaveText('No other devices connected');
  await laptop.close();
  await phone.close();
});

test('a TURN server without credentials is refused with a clear error', async () => {
  const d = await Device.launch('turn-bad');
  await d.openAdvanced();
  await d.page.getByRole('textbox', { name: 'STUN or TURN server' }).fill('turn:turn.example.org:3478');
  await d.page.getByRole('button', { name: 'Save connection settings' }).click();
  await expect(d.alert).toContainText('needs a username and a credential');
  await expect(d.page.getByText('Using the server\'s defaults:')).toBeVisible();
  await d.close();
});

test('an unreachable STUN server does not stall devices on the same network', async () => {
  // 192.0.2.1 is TEST-NET-1: inside the test's namespace nothing answers there, like an
  // offline LAN or a captive portal. Unpatched matchbox waits ~40 s for ICE gathering.
  const laptop = await Device.launch('stun-laptop');
  const phone = await Device.launch('stun-phone');
  for (const d of [laptop, phone]) {
    await d.openAdvanced();
    await d.page.getByRole('textbox', { name: 'STUN or TURN server' }).fill('stun:192.0.2.1:3478');
    await d.page.getByRole('button', { name: 'Save connection settings' }).click();
    await expect(d.page.getByText('Connection settings saved.')).toBeVisible();
  }
  const started = Date.now();
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 15_000 });
  console.log(`connected in ${Date.now() - started} ms with an unreachable STUN server`);
  await laptop.send('no stall');
  await expect(phone.message('no stall')).toBeVisible();
  await laptop.close();
  await phone.close();
});
