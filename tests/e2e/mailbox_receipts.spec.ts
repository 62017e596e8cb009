// Journey (issue #15, finding 5): "on Tablet" through the mailbox means the tablet *stored* it.
// A tablet whose disk is full when a file arrives keeps the texts it could store, says that it
// could not store the rest, and the laptop never says the file is on it. The server keeps the
// chunks the tablet did not store, and once space is freed the tablet gets the rest.
//
// The tablet's profile lives on a tmpfs this journey mounts (the harness runs as root), filled
// up once the app has started: IndexedDB writes then really fail, as on a full phone.
// (Chromium's `Storage.overrideQuotaForOrigin` did not make IndexedDB writes fail.)
import { test, expect } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

/** Fills the filesystem holding `dir` until `leave` bytes are free (another file each time). */
function fillUntil(dir: string, leave: number, name = 'filler.bin'): void {
  const { bavail, bsize } = statfsSync(dir);
  const free = Number(bavail) * Number(bsize);
  if (free > leave) writeFileSync(join(dir, name), Buffer.alloc(free - leave));
}

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

  // 2. A tablet whose disk is almost full joins alone: the text fits, the file does not.
  const disk = mkdtempSync(join(tmpdir(), 'ferry-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', disk]);
  try {
    const profile = join(disk, 'profile');
    const tablet = await Device.launch('receipt-tablet', '/', { profileDir: profile });
    await tablet.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    fillUntil(disk, 2048 * 1024);
    await tablet.join(link);
    await expect(tablet.message('before the file')).toBeVisible({ timeout: 30_000 });
    await expect(tablet.message('tax-return.pdf')).toBeVisible();
    // The bytes could not be stored: the app says so, and offers no way to save them.
    await expect(tablet.page.getByText('Could not store what arrived from the mailbox')).toBeVisible({ timeout: 60_000 });
    // Whatever the browser frees meanwhile (its database compacts), the disk stays full.
    fillUntil(disk, 0, 'filler-2.bin');
    await expect(tablet.page.getByRole('link', { name: 'Save tax-return.pdf' })).toHaveCount(0);
    await tablet.close();

    // 3. The laptop, alone again: the text is on the tablet, the file is not.
    await laptop.restartBrowser();
    // The tablet's receipt arrived (the text is "on" it); the same receipt leaves the file out.
    await expect(laptop.message('before the file').locator('.tick')).toHaveText(/^on /, { timeout: 45_000 });
    await expect(laptop.message('tax-return.pdf').locator('.tick')).not.toHaveText(/^on /);
    // The server keeps the held chunks the tablet could not store (it releases those the
    // tablet did store): more than the 3 history entries, at least one whole 5-entry chunk.
    // (It kept only those 3 when the tablet skipped, and acknowledged, what it could not store.)
    await laptop.openDevices();
    await expect.poll(() => laptop.mailboxEntries(), { timeout: 30_000 }).toBeGreaterThanOrEqual(3 + 5);
    await laptop.close();

    // 4. Space freed on the tablet: alone, it gets the rest of the file from the mailbox.
    rmSync(join(disk, 'filler.bin'));
    rmSync(join(disk, 'filler-2.bin'), { force: true });
    await tablet.restartBrowser();
    await expect(tablet.page.getByRole('link', { name: 'Save tax-return.pdf' })).toBeVisible({ timeout: 60_000 });
    await tablet.close();
  } finally {
    execFileSync('umount', ['-l', disk]);
    rmSync(disk, { recursive: true, force: true });
  }
});

// The same promise over a direct connection: equal heads prove the phone has every item, not
// that it stored a file's bytes. The laptop says "on" of the file only once the phone said it
// holds the file whole (it announces files that become whole; the laptop asks on connect).
test('over a direct connection, a file is "on" a device only once that device stored it', async () => {
  test.setTimeout(180_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-direct-'));
  const path = join(dir, 'holiday.mov');
  writeFileSync(path, randomBytes(3 * 1024 * 1024));
  const disk = mkdtempSync(join(tmpdir(), 'ferry-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', disk]);
  try {
    const laptop = await Device.launch('direct-laptop');
    const phone = await Device.launch('direct-phone', '/', { profileDir: join(disk, 'profile') });
    await phone.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    await phone.join(await laptop.pairingLink());
    await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
    await laptop.send('before the file');
    await expect(laptop.message('before the file').locator('.tick')).toHaveText(/^on /, { timeout: 15_000 });

    // The phone's disk fills up; the file's item arrives, its bytes cannot be stored.
    fillUntil(disk, 1024 * 1024);
    await laptop.attach([path]);
    await expect(phone.message('holiday.mov')).toBeVisible({ timeout: 15_000 });
    await expect(phone.page.getByRole('button', { name: 'Retry download of holiday.mov' })).toBeVisible({ timeout: 60_000 });
    fillUntil(disk, 0, 'filler-2.bin');
    // Both devices are connected and in sync all along: still the file is not "on" the phone.
    await laptop.send('after the file');
    await expect(phone.message('after the file')).toBeVisible({ timeout: 15_000 });
    await laptop.page.waitForTimeout(5_000);
    await expect(laptop.message('holiday.mov').locator('.tick')).not.toHaveText(/^on /);
    await expect(laptop.message('before the file').locator('.tick')).toHaveText(/^on /);

    // Space freed, the download retried, without a reload (Chromium closed the database when
    // the disk was full; the app opens it again): the phone stores the file, says it holds
    // it, and the laptop shows it.
    rmSync(join(disk, 'filler.bin'));
    rmSync(join(disk, 'filler-2.bin'), { force: true });
    await phone.page.getByRole('button', { name: 'Retry download of holiday.mov' }).click();
    await expect(phone.page.getByRole('link', { name: 'Save holiday.mov' })).toBeVisible({ timeout: 60_000 });
    await expect(laptop.message('holiday.mov').locator('.tick')).toHaveText(/^on /, { timeout: 20_000 });
    await expect(laptop.message('after the file').locator('.tick')).toHaveText(/^on /);
    await laptop.close();
    await phone.close();
  } finally {
    execFileSync('umount', ['-l', disk]);
    rmSync(disk, { recursive: true, force: true });
  }
});
