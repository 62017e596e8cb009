// Journey (issue #15, finding 5): "on Tablet" through the mailbox means the tablet *stored* it.
// A tablet whose storage is full when a file arrives keeps the texts it could store; the
// server keeps the file's held chunks for it, and the laptop never says the file is on it.
import { test, expect } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

const ORIGIN = new URL(process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080').origin;

test('a device that could not store a file is never shown as having it', async () => {
  test.setTimeout(240_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-receipts-'));
  const path = join(dir, 'tax-return.pdf');
  writeFileSync(path, randomBytes(3 * 1024 * 1024));

  // 1. The laptop, alone: a text, then a 3 MiB file, all of it into the mailbox.
  const laptop = await Device.launch('receipt-laptop');
  await laptop.send('before the file');
  await laptop.attach([path]);
  await expect(laptop.message('tax-return.pdf')).toContainText('waiting in the mailbox', { timeout: 30_000 });
  const link = await laptop.pairingLink();
  await expect.poll(() => laptop.mailboxEntries(), { timeout: 90_000 }).toBeGreaterThanOrEqual(61);
  await laptop.close();

  // 2. A tablet with almost no storage joins alone: the text fits, the file does not.
  const tablet = await Device.launch('receipt-tablet');
  const cdp = await tablet.context.newCDPSession(tablet.page);
  // What the app itself uses (its cached files) plus 1.5 MiB: history fits, 3 MiB do not.
  await tablet.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  const used = await tablet.page.evaluate(async () => (await navigator.storage.estimate()).usage ?? 0);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: ORIGIN, quotaSize: used + 1.5 * 1024 * 1024 });
  await tablet.join(link);
  await expect(tablet.message('before the file')).toBeVisible({ timeout: 30_000 });
  await expect(tablet.message('tax-return.pdf')).toBeVisible();
  await expect(tablet.page.getByRole('link', { name: 'Save tax-return.pdf' })).toHaveCount(0);
  await tablet.openDevices();
  // The tablet has read what it could; its sealed receipt has gone up by now.
  await expect.poll(() => tablet.mailboxEntries(), { timeout: 30_000 }).toBeGreaterThanOrEqual(61);
  const held = await tablet.mailboxEntries();
  await tablet.close();

  // 3. The laptop, alone again: the text is on the tablet, the file is not; the server still
  //    holds the file's chunks for the tablet.
  await laptop.restartBrowser();
  await expect(laptop.message('before the file')).toContainText(/· on /, { timeout: 30_000 });
  await expect(laptop.message('tax-return.pdf')).not.toContainText(/· on /);
  await laptop.openDevices();
  await expect.poll(() => laptop.mailboxEntries(), { timeout: 30_000 }).toBeGreaterThanOrEqual(Math.min(held, 61));
  await expect(laptop.message('tax-return.pdf')).not.toContainText(/· on /);
  await laptop.close();
});
