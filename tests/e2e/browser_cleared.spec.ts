// Journey: the browser clears Ferry's data (storage pressure, Safari's 7 days). The phone
// says so instead of starting over as if nothing had happened, and after joining again with
// the laptop's link the history and the file come back, the file byte-identical.
import { test, expect } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

test('after the browser cleared its data, the phone says so and everything comes back when it joins again', async () => {
  test.setTimeout(150_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-cleared-'));
  const path = join(dir, 'recipe.pdf');
  const bytes = randomBytes(400 * 1024);
  writeFileSync(path, bytes);

  const laptop = await Device.launch('cleared-laptop');
  const phone = await Device.launch('cleared-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await laptop.send('the shopping list');
  await laptop.attach([path]);
  await expect(phone.page.getByRole('link', { name: 'Save recipe.pdf' })).toBeVisible({ timeout: 30_000 });

  // The browser clears the phone's storage (what eviction clears: not cookies).
  const origin = new URL(phone.page.url()).origin;
  await phone.page.goto('about:blank');
  const cdp = await phone.context.newCDPSession(phone.page);
  await cdp.send('Storage.clearDataForOrigin', {
    origin,
    storageTypes: 'indexeddb,local_storage,service_workers,cache_storage,file_systems,websql',
  });
  // The cookie survived (eviction leaves cookies): it says Ferry was here with its data.
  const mark = (await phone.context.cookies(origin)).find((c) => c.name === 'ferry_here');
  expect(Number(mark?.value)).toBeGreaterThan(Date.now() - 600_000);
  // An hour passes (a mark from the last minute is read as a sibling tab starting fresh).
  await phone.context.addCookies([{ name: 'ferry_here', value: String(Number(mark!.value) - 3_600_000), url: origin }]);
  await phone.page.goto(origin + '/');
  await phone.ready();
  await expect(phone.page.getByRole('heading', { name: "This browser cleared Ferry's data" })).toBeVisible();
  await expect(phone.page.getByRole('heading', { name: 'Add your phone' })).toHaveCount(0);
  await expect(phone.history.getByRole('listitem')).toHaveCount(0);

  // Joined again: everything refills from the laptop.
  await phone.join(await laptop.pairingLink());
  await expect(phone.message('the shopping list')).toBeVisible({ timeout: 30_000 });
  const save = phone.page.getByRole('link', { name: 'Save recipe.pdf' });
  await expect(save).toBeVisible({ timeout: 60_000 });
  const [download] = await Promise.all([phone.page.waitForEvent('download'), save.click()]);
  expect(readFileSync((await download.path())!).equals(bytes)).toBe(true);
  await expect(phone.page.getByRole('heading', { name: "This browser cleared Ferry's data" })).toHaveCount(0);

  // A device that never had Ferry shows the ordinary first-run card.
  const fresh = await Device.launch('cleared-fresh');
  await expect(fresh.page.getByRole('heading', { name: 'Add your phone' })).toBeVisible();
  await expect(fresh.page.getByRole('heading', { name: "This browser cleared Ferry's data" })).toHaveCount(0);
  await fresh.close();
  await laptop.close();
  await phone.close();
});

test('Devices warns about a device whose browser may clear Ferry\'s data', async () => {
  const laptop = await Device.launch('kept-laptop');
  // The laptop's browser promises to keep the data (as for an installed app); the phone's does not.
  const origin = new URL(laptop.page.url()).origin;
  const cdp = await laptop.context.newCDPSession(laptop.page);
  await cdp.send('Browser.grantPermissions', { origin, permissions: ['durableStorage'] });
  await laptop.page.reload();
  await laptop.ready();
  const phone = await Device.launch('kept-phone');
  await phone.openDevices();
  await phone.page.locator('#device-name').fill('Phone');
  await phone.page.getByRole('button', { name: 'Rename' }).click();
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await phone.openAdvanced();
  await expect(phone.page.getByTestId('persistence')).toHaveText(/^Not kept yet/);
  await laptop.openAdvanced();
  await expect(laptop.page.getByTestId('persistence')).toHaveText(/^Kept/);

  const warning = laptop.page.getByText(/: the browser may clear Ferry's data there\./);
  await expect(warning).toHaveCount(1, { timeout: 20_000 });
  await expect(warning).toHaveText("Phone: the browser may clear Ferry's data there. Installing Ferry on it (on an iPhone: Share, then Add to Home Screen) usually makes the browser keep it.");
  // The laptop's is kept: the phone warns about nothing.
  await phone.page.waitForTimeout(3_000);
  await expect(phone.page.getByText(/the browser may clear Ferry's data there/)).toHaveCount(0);
  await laptop.close();
  await phone.close();
});
