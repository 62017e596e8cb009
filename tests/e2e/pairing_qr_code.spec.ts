// Journey: the phone's camera reads the pairing QR code shown on the laptop.
import { test, expect } from '@playwright/test';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { Device } from './device';

test('the QR code in the Devices view decodes to the pairing link', async () => {
  const laptop = await Device.launch('laptop');
  const link = await laptop.pairingLink();
  const qr = laptop.page.getByRole('img', { name: 'QR code of the pairing link' });
  await expect(qr.locator('svg')).toBeVisible();
  const png = PNG.sync.read(await qr.screenshot());
  const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  expect(decoded?.data).toBe(link);

  // Renaming this device is reflected in the device list.
  await laptop.page.getByRole('textbox', { name: "This device's name" }).fill('Work laptop');
  await laptop.page.getByRole('button', { name: 'Rename' }).click();
  await expect(laptop.page.getByRole('list', { name: 'Devices in this space' })).toContainText('Work laptop (this device)');
  await laptop.page.reload();
  await laptop.ready();
  await laptop.openDevices();
  await expect(laptop.page.getByRole('textbox', { name: "This device's name" })).toHaveValue('Work laptop');
  await laptop.close();
});
