// Journey: a person pins the message they keep coming back to (a door code, a list) on one
// device; it sits above the history on every device, survives reloads, and is unpinned from
// either one.
import { test, expect } from '@playwright/test';
import { resolve } from 'node:path';
import { Device } from './device';

const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

test('a message pinned on one device is pinned on the other, across reloads, and unpins from either', async () => {
  const laptop = await Device.launch('pins-laptop');
  const phone = await Device.launch('pins-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await laptop.send('the door code is 4711');
  await laptop.send('just a passing thought');
  await expect(phone.message('just a passing thought')).toBeVisible();
  // Nothing pinned: no region.
  await expect(laptop.page.getByRole('region', { name: 'Pinned' })).toHaveCount(0);

  // Pin from the message's menu on the laptop.
  await laptop.message('the door code is 4711').locator('.text').click({ button: 'right' });
  const menu = laptop.page.getByRole('menu', { name: 'Message actions' });
  await menu.getByRole('menuitem', { name: 'Pin' }).click();
  await expect(menu).toHaveCount(0);
  for (const d of [laptop, phone]) {
    const pinned = d.page.getByRole('region', { name: 'Pinned' });
    await expect(pinned.getByRole('listitem')).toHaveText(['the door code is 4711Unpin']);
  }

  await laptop.page.screenshot({ path: `${SHOTS}pinned-1280x720.png` });

  // It stays pinned after a reload, and the menu now offers Unpin.
  await phone.page.reload();
  await phone.ready();
  const phonePinned = phone.page.getByRole('region', { name: 'Pinned' });
  await expect(phonePinned).toContainText('the door code is 4711');
  await expect(phonePinned).not.toContainText('just a passing thought');
  await phone.message('the door code is 4711').locator('.text').click({ button: 'right' });
  const phoneMenu = phone.page.getByRole('menu', { name: 'Message actions' });
  await expect(phoneMenu.getByRole('menuitem', { name: 'Unpin' })).toBeVisible();
  await phone.page.keyboard.press('Escape');

  // Unpinned from the phone's Pinned region: gone on both.
  await phonePinned.getByRole('button', { name: 'Unpin the door code is 4711' }).click();
  for (const d of [laptop, phone]) {
    await expect(d.page.getByRole('region', { name: 'Pinned' })).toHaveCount(0);
  }
  // The message itself stays in the history.
  await expect(laptop.message('the door code is 4711')).toBeVisible();
  await laptop.close();
  await phone.close();
});
