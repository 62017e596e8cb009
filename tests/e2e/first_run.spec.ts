// Journey: a new person opens Ferry on the laptop and, from the first screen alone, adds
// their phone: the "Add your phone" card shows the pairing link's QR code, the phone's camera
// reads it (here: the code's pixels, decoded as a camera app would), the phone joins, and the
// card is gone on both once they are paired. axe finds nothing in the card.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Device } from './device';

const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

test('the first screen pairs a phone by its QR code, and the card then steps aside', async () => {
  mkdirSync(SHOTS, { recursive: true });
  const laptop = await Device.launch('first-run-laptop');
  const card = laptop.page.getByRole('region', { name: 'Add your phone' });
  await expect(card.getByRole('heading', { name: 'Add your phone' })).toBeVisible();
  const qr = card.getByRole('img', { name: /QR/ });
  await expect(qr.locator('svg')).toBeVisible();
  const axe = await new AxeBuilder({ page: laptop.page }).analyze();
  expect(axe.violations.map((v) => `${v.id}: ${v.help}`), 'axe on the first screen').toEqual([]);
  await laptop.page.screenshot({ path: `${SHOTS}first-run-1280x720.png` });

  // The card steps aside while Devices is open (it shows the same code), and comes back.
  await laptop.openDevices();
  await expect(card).toBeHidden();
  await laptop.page.getByRole('button', { name: 'Devices' }).click();
  await expect(card).toBeVisible();

  // The phone sees its own card until it joins; the code it reads is the laptop's link.
  const phone = await Device.launch('first-run-phone', '/', { touch: true });
  const phoneCard = phone.page.getByRole('region', { name: 'Add your phone' });
  await expect(phoneCard).toBeVisible();
  await phone.page.screenshot({ path: `${SHOTS}first-run-390x844.png` });
  const png = PNG.sync.read(await qr.screenshot());
  const link = jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data ?? '';
  expect(link).toMatch(/^http:\/\/127\.0\.0\.1:8080\/#pair=/);
  await phone.join(link);
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(card).toBeHidden();
  await expect(phoneCard).toBeHidden();
  await laptop.send('paired from the first screen');
  await expect(phone.message('paired from the first screen')).toBeVisible();
  // Paired devices never see the card again, also after a reload.
  await phone.page.reload();
  await phone.ready();
  await expect(phone.message('paired from the first screen')).toBeVisible();
  await expect(phoneCard).toBeHidden();
  await laptop.close();
  await phone.close();
});

test('"Not now" puts the card away and Devices keeps the same link', async () => {
  const d = await Device.launch('first-run-not-now');
  const card = d.page.getByRole('region', { name: 'Add your phone' });
  await card.getByRole('button', { name: 'Copy link' }).click();
  await expect(card.getByText(/Link copied|Copying is not allowed/)).toBeVisible();
  await card.getByRole('button', { name: 'Not now' }).click();
  await expect(card).toBeHidden();
  await expect(d.composer).toBeVisible();
  expect(await d.pairingLink()).toMatch(/#pair=/);
  await d.close();
});
