// Journey: a person pairs their laptop and phone by link, chats both ways in real time over
// WebRTC, reloads and restarts browsers, and never loses the history.
import { test, expect } from '@playwright/test';
import { Device } from './device';

test('pair by link, chat both ways, keep history across reload and browser restart', async () => {
  // 1. The laptop starts Ferry for the first time: empty chat, nobody else connected.
  const laptop = await Device.launch('laptop');
  await expect(laptop.status).toHaveText(/No other devices connected|Connecting/);
  await laptop.send('hello from the laptop');

  // 2. The phone has a note of its own before it is paired.
  const phone = await Device.launch('phone');
  await phone.send('note written on the phone before pairing');

  // 3. The laptop's pairing link opens on the phone, which joins after confirming.
  const link = await laptop.pairingLink();
  expect(link).toMatch(/^http:\/\/127\.0\.0\.1:8080\/#pair=[A-Za-z0-9_-]{43}&signal=/);
  await phone.join(link);

  // 4. Both see each other and both histories merge, nothing lost.
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(phone.status).toHaveText('1 device connected');
  await expect(phone.message('hello from the laptop')).toBeVisible();
  await expect(laptop.message('note written on the phone before pairing')).toBeVisible();
  // Each message written here says which of the other devices has it.
  await expect(laptop.message('hello from the laptop')).toContainText(/on Chrome on Linux/);
  await expect(laptop.message('hello from the laptop')).not.toContainText('not yet on');

  // 5. Real time, both ways.
  await phone.send('reply from the phone');
  await expect(laptop.message('reply from the phone')).toBeVisible();
  await laptop.send('and back to the phone');
  await expect(phone.message('and back to the phone')).toBeVisible();
  expect(await phone.texts()).toEqual(await laptop.texts());

  // 6. A reload keeps the history and reconnects by itself.
  await phone.page.reload();
  await phone.ready();
  await expect(phone.message('hello from the laptop')).toBeVisible();
  await expect(phone.status).toHaveText('1 device connected');
  await laptop.send('after the reload');
  await expect(phone.message('after the reload')).toBeVisible();

  // 7. Closing the whole browser and opening it again: same history, same space. Meanwhile
  //    the phone lists the laptop as last seen.
  await laptop.context.close();
  await phone.openDevices();
  const devices = phone.page.getByRole('list', { name: 'Devices in this space' });
  await expect(devices.getByRole('listitem')).toHaveCount(2);
  await expect(devices.getByRole('listitem').filter({ hasNotText: 'this device' })).toContainText(/last seen \d{4}-\d\d-\d\d \d\d:\d\d/);
  await expect(phone.status).toHaveText('No other devices connected');
  await laptop.restartBrowser();
  await expect(laptop.message('reply from the phone')).toBeVisible();
  await expect(laptop.status).toHaveText('1 device connected');
  await phone.send('welcome back');
  await expect(laptop.message('welcome back')).toBeVisible();
  expect(await laptop.pairingLink()).toBe(link);
  expect(await phone.texts()).toEqual(await laptop.texts());
  expect(await laptop.texts()).toHaveLength(6);

  await laptop.close();
  await phone.close();
});

test('a pasted link of another app, or a damaged one, gets a clear alert', async () => {
  const device = await Device.launch('paste');
  await device.openDevices();
  const box = device.page.getByRole('textbox', { name: 'Join another space with its link' });
  const cases: [string, RegExp][] = [
    ['https://example.com/some/page', /not a Ferry pairing link/],
    ['http://127.0.0.1:8080/#pair=', /incomplete/],
    ['http://127.0.0.1:8080/#pair=' + 'A'.repeat(30), /incomplete/],
  ];
  for (const [text, why] of cases) {
    await box.fill(text);
    await device.page.getByRole('button', { name: 'Use link' }).click();
    await expect(device.alert).toContainText(why);
    await expect(device.page.getByRole('button', { name: 'Join' })).toHaveCount(0);
    await device.page.getByRole('button', { name: 'Dismiss' }).click();
  }
  await device.close();
});

test('an opened pairing link leaves the address bar and the history at once, joined or not', async () => {
  const laptop = await Device.launch('fragment-laptop');
  const link = await laptop.pairingLink();
  const phone = await Device.launch('fragment-phone');
  await phone.page.goto(link);
  // The join dialog is open: the secret is already gone from the URL and the history entry.
  await expect(phone.page.getByRole('button', { name: 'Join' })).toBeVisible();
  expect(new URL(phone.page.url()).hash).toBe('');
  await phone.page.getByRole('button', { name: 'Cancel' }).click();
  await expect(phone.page.getByRole('dialog')).toHaveCount(0);
  expect(new URL(phone.page.url()).hash).toBe('');
  await laptop.close();
  await phone.close();
});

test('a malformed pairing link shows an alert and changes nothing', async () => {
  const device = await Device.launch('solo');
  await device.send('still here');
  const before = await device.pairingLink();
  for (const bad of ['#pair=not-base64!!', '#pair=AAAA', '#pair=' + 'A'.repeat(43) + '&signal=http%3A%2F%2Fevil']) {
    await device.page.goto('/' + bad);
    await device.ready();
    await expect(device.alert).toContainText('This pairing link cannot be used');
    await expect(device.page.getByRole('button', { name: 'Join' })).toHaveCount(0);
    // The secret is not left in the address bar (nor in this history entry) after a refusal.
    expect(new URL(device.page.url()).hash).toBe('');
    expect(await device.pairingLink()).toBe(before);
    await expect(device.message('still here')).toBeVisible();
  }
  await device.close();
});
