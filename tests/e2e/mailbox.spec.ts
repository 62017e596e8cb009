// Journey: a phone and a laptop that are never online at the same time. The laptop writes
// texts and sends a file while alone, then closes; the phone opens alone later and gets all of
// it from the end-to-end encrypted mailbox on the signaling server, which holds only sealed
// bytes (the test reads the server's database files and finds none of the plaintext).
import { test, expect } from '@playwright/test';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

/** Every file under `dir`, concatenated (the mailbox's database and anything beside it). */
function allBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) parts.push(allBytes(path));
    else parts.push(readFileSync(path));
  }
  return Buffer.concat(parts);
}

test('devices that are never online together sync through the sealed mailbox', async () => {
  test.setTimeout(180_000);
  const dataDir = process.env.FERRY_DATA_DIR;
  expect(dataDir, 'netns.sh exports the mailbox data dir').toBeTruthy();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mailbox-'));
  const bytes = randomBytes(600 * 1024); // three chunks
  const sha = createHash('sha256').update(bytes).digest('hex');
  const filePath = join(dir, 'notes-from-the-bus.bin');
  writeFileSync(filePath, bytes);
  const texts = ['mailbox secret one: the blue door', 'mailbox secret two: 4417 lantern street'];

  // 1. The laptop, alone: writes and sends a file, sees them waiting in the mailbox, closes.
  const laptop = await Device.launch('mbox-laptop');
  for (const t of texts) await laptop.send(t);
  await laptop.page.getByLabel('Files to send').setInputFiles(filePath);
  await expect(laptop.page.getByRole('link', { name: 'Save notes-from-the-bus.bin' })).toBeVisible({ timeout: 30_000 });
  await expect(laptop.page.getByText(/3 items waiting in the mailbox for your other devices/)).toBeVisible({ timeout: 30_000 });
  const link = await laptop.pairingLink();
  // Let the upload of the file's chunks finish (it follows the texts' upload).
  await expect.poll(() => allBytes(dataDir!).length, { timeout: 30_000 }).toBeGreaterThan(600 * 1024);
  await laptop.close();

  // 2. The phone, alone, joins with the link: everything arrives from the mailbox.
  const phone = await Device.launch('mbox-phone');
  await phone.join(link);
  await expect(phone.status).toHaveText('No other devices connected');
  for (const t of texts) await expect(phone.message(t)).toBeVisible({ timeout: 30_000 });
  const save = phone.page.getByRole('link', { name: 'Save notes-from-the-bus.bin' });
  await expect(save).toBeVisible({ timeout: 30_000 });
  const [download] = await Promise.all([phone.page.waitForEvent('download'), save.click()]);
  const saved = join(dir, 'saved.bin');
  await download.saveAs(saved);
  expect(createHash('sha256').update(readFileSync(saved)).digest('hex')).toBe(sha);

  // 3. The server's stored bytes hold none of the plaintext: texts, file name, file bytes.
  const stored = allBytes(dataDir!);
  for (const t of [...texts, 'notes-from-the-bus.bin']) {
    expect(stored.includes(Buffer.from(t)), `"${t}" must not be stored in clear`).toBe(false);
  }
  for (const at of [0, 300 * 1024, bytes.length - 64]) {
    expect(stored.includes(bytes.subarray(at, at + 64)), 'file bytes must not be stored in clear').toBe(false);
  }
  await phone.close();
});

test('with the mailbox turned off, nothing is uploaded', async () => {
  test.setTimeout(120_000);
  const laptop = await Device.launch('mbox-off-laptop');
  await laptop.openDevices();
  const toggle = laptop.page.getByRole('checkbox', { name: /Use the encrypted mailbox/ });
  await expect(toggle).toBeChecked();
  await toggle.uncheck();
  await expect(toggle).not.toBeChecked();
  await laptop.send('this stays on the laptop');
  // Several mailbox intervals pass: nothing may be waiting in, or sent to, the mailbox.
  await laptop.page.waitForTimeout(20_000);
  await expect(laptop.page.getByText(/waiting in the mailbox/)).toHaveCount(0);
  const link = await laptop.pairingLink();
  await laptop.close();

  const phone = await Device.launch('mbox-off-phone');
  await phone.join(link);
  await expect(phone.status).toHaveText('No other devices connected');
  // The phone visits the mailbox 10 s after joining (alone), then every 5 s: give it three
  // visits.
  await phone.page.waitForTimeout(22_000);
  await expect(phone.message('this stays on the laptop')).toHaveCount(0);
  await phone.context.close();

  // Control: the same laptop with the mailbox back on leaves the text, and the phone, again
  // alone, picks it up: only the setting kept it back.
  await laptop.restartBrowser();
  await laptop.openDevices();
  await laptop.page.getByRole('checkbox', { name: /Use the encrypted mailbox/ }).check();
  await expect(laptop.page.getByText(/1 item waiting in the mailbox/)).toBeVisible({ timeout: 30_000 });
  await laptop.close();
  await phone.restartBrowser();
  await expect(phone.message('this stays on the laptop')).toBeVisible({ timeout: 30_000 });
  await phone.close();
});
