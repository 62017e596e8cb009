// Journey: a new phone pairs with "Scan a code". The laptop's first screen shows the pairing
// QR code; the phone's camera (Chromium's fake capture device, filming the pixels of that very
// code) reads it in the app, the phone asks "Join this space?", and the two are paired. Also:
// a camera the person refused is said plainly, and Escape closes the scanner with the focus
// back on its button. Headless Chromium on Linux has no BarcodeDetector, so this exercises
// the wasm decoder (rqrr), the path most desktop browsers take.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { PNG } from 'pngjs';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Device } from './device';

const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

/** A Y4M video (640×480, 4:2:0) of `png` on a grey table, for Chromium's fake camera. */
function y4mOf(png: PNG): string {
  const W = 640, H = 480;
  const luma = new Uint8Array(W * H).fill(150);
  // Shrink (nearest pixel) so the code fits with a margin, as a phone held at arm's length.
  const scale = Math.min(1, 420 / png.width, 420 / png.height);
  const w = Math.floor(png.width * scale), h = Math.floor(png.height * scale);
  const x0 = Math.floor((W - w) / 2), y0 = Math.floor((H - h) / 2);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sx = Math.floor(x / scale), sy = Math.floor(y / scale);
      const i = (sy * png.width + sx) * 4;
      const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
      luma[(y0 + y) * W + x0 + x] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    }
  }
  const chroma = new Uint8Array((W / 2) * (H / 2)).fill(128);
  const frame = Buffer.concat([Buffer.from('FRAME\n'), luma, chroma, chroma]);
  const file = join(mkdtempSync(join(tmpdir(), 'ferry-camera-')), 'qr.y4m');
  writeFileSync(file, Buffer.concat([Buffer.from(`YUV4MPEG2 W${W} H${H} F10:1 Ip A1:1 C420jpeg\n`), frame, frame]));
  return file;
}

test('a phone pairs by scanning the laptop\'s first-screen code with its camera', async () => {
  mkdirSync(SHOTS, { recursive: true });
  const laptop = await Device.launch('scan-laptop');
  const card = laptop.page.getByRole('region', { name: 'Add your phone' });
  const qr = card.getByRole('img', { name: /QR/ });
  await expect(qr.locator('svg')).toBeVisible();
  const camera = y4mOf(PNG.sync.read(await qr.screenshot()));
  // Something already on the laptop, to see it arrive on the phone.
  await laptop.send('before the phone joined');

  const phone = await Device.launch('scan-phone', '/', { touch: true, camera });
  const phoneCard = phone.page.getByRole('region', { name: 'Add your phone' });
  await expect(phoneCard).toBeVisible();
  // On a touch screen Enter is a new line: Send sends.
  await phone.composer.fill('written on the phone alone');
  await phone.page.getByRole('button', { name: 'Send' }).click();
  await expect(phone.message('written on the phone alone')).toBeVisible();
  await phoneCard.getByRole('button', { name: 'Scan a code' }).click();
  const scanner = phone.page.getByRole('dialog', { name: 'Scan a code' });
  await expect(scanner).toBeVisible();
  await expect(scanner.getByLabel('Camera')).toBeVisible();
  // The code is read: the scanner closes and the usual confirmation asks first.
  const confirm = phone.page.getByRole('dialog', { name: 'Join this space?' });
  await expect(confirm).toBeVisible();
  await expect(scanner).toBeHidden();
  await phone.page.screenshot({ path: `${SHOTS}scan-joined-390x844.png` });
  await confirm.getByRole('button', { name: 'Join' }).click();

  await expect(phone.message('before the phone joined')).toBeVisible();
  await expect(laptop.message('written on the phone alone')).toBeVisible();
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(phoneCard).toBeHidden();
  await laptop.close();
  await phone.close();
});

test('the scanner says when the camera is refused, and Escape closes it', async () => {
  mkdirSync(SHOTS, { recursive: true });
  const blank = y4mOf(new PNG({ width: 8, height: 8 }));
  const refused = await Device.launch('scan-refused', '/', { camera: blank, cameraDenied: true });
  const card = refused.page.getByRole('region', { name: 'Add your phone' });
  const button = card.getByRole('button', { name: 'Scan a code' });
  await button.click();
  const scanner = refused.page.getByRole('dialog', { name: 'Scan a code' });
  await expect(scanner.getByRole('alert')).toContainText('may not use the camera');
  await refused.page.keyboard.press('Escape');
  await expect(scanner).toBeHidden();
  await expect(button).toBeFocused();
  await refused.close();

  // With the camera allowed but nothing to read, the dialog is clean for axe, and Devices
  // offers the same button.
  const allowed = await Device.launch('scan-allowed', '/', { camera: blank });
  await allowed.openDevices();
  await allowed.page.getByRole('region', { name: 'Devices' }).getByRole('button', { name: 'Scan a code' }).click();
  const open = allowed.page.getByRole('dialog', { name: 'Scan a code' });
  await expect(open).toBeVisible();
  await expect(open.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await allowed.page.screenshot({ path: `${SHOTS}scan-open-1280x720.png` });
  const axe = await new AxeBuilder({ page: allowed.page }).include('.dialog.scan').analyze();
  expect(axe.violations.map((v) => `${v.id}: ${v.help}`), 'axe on the scanner').toEqual([]);
  await open.getByRole('button', { name: 'Cancel' }).click();
  await expect(open).toBeHidden();
  // The camera is off once the scanner is closed.
  expect(await allowed.page.evaluate(() => document.querySelectorAll('video').length)).toBe(0);
  await allowed.close();
});
