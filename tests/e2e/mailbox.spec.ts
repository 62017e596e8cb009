// Journey: a phone and a laptop that are never online at the same time. The laptop writes
// texts and sends a file while alone, then closes; the phone opens alone later and gets all of
// it from the end-to-end encrypted mailbox on the signaling server, which holds only sealed
// bytes (the test reads the server's database files and finds none of the plaintext). The
// phone acknowledges: the file's chunks leave the server and the history is compacted into
// one snapshot; the laptop, alone again, learns from the server that the phone has its
// messages; a tablet joining last, alone, still gets the whole history from the snapshot.
import { test, expect } from '@playwright/test';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';
import { roomIdOf } from './stranger';

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
  test.setTimeout(300_000);
  const dataDir = process.env.FERRY_DATA_DIR;
  expect(dataDir, 'netns.sh exports the mailbox data dir').toBeTruthy();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-mailbox-'));
  // 18 chunks: with the manifest, more entries after the laptop's first snapshot than make
  // the phone's next upload a fresh snapshot (BASE_AFTER = 16).
  const bytes = randomBytes(18 * 256 * 1024 - 1000);
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
  // Let the upload of the file's chunks finish (it follows the texts' upload): the server
  // holds the manifest and all 18 chunks, five 64 KiB entries each (Devices → Mailbox counts
  // what it holds).
  await expect.poll(() => laptop.mailboxEntries(), { timeout: 90_000 }).toBeGreaterThanOrEqual(91);
  await expect.poll(() => allBytes(dataDir!).length, { timeout: 60_000 }).toBeGreaterThan(bytes.length);
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
  await phone.openAdvanced();
  await phone.page.getByRole('textbox', { name: "This device's name" }).fill('Bus phone');
  await phone.page.getByRole('button', { name: 'Rename' }).click();

  // 3. The server's stored bytes hold none of the plaintext: texts, file name, file bytes.
  const stored = allBytes(dataDir!);
  for (const t of [...texts, 'notes-from-the-bus.bin']) {
    expect(stored.includes(Buffer.from(t)), `"${t}" must not be stored in clear`).toBe(false);
  }
  for (const at of [0, 300 * 1024, bytes.length - 64]) {
    expect(stored.includes(bytes.subarray(at, at + 64)), 'file bytes must not be stored in clear').toBe(false);
  }

  // 4. The phone acknowledged: the chunks (held until another device had them, 91 entries) are
  //    gone. What remains is history: a snapshot, and the phone's own changes (joining, the
  //    rename, its storage state for the roster), posted at once, which stay until the laptop
  //    has fetched them too.
  const held = async (d: Device) => {
    const text = (await d.page.getByText(/The mailbox holds/).textContent()) ?? '';
    const m = /holds (\d+) sealed entr/.exec(text);
    return m ? Number(m[1]) : text.includes('holds nothing') ? 0 : Infinity;
  };
  await expect.poll(() => held(phone), { timeout: 30_000 }).toBeLessThanOrEqual(5);
  await phone.page.getByRole('heading', { name: 'Mailbox' }).scrollIntoViewIfNeeded();
  await phone.page.screenshot({ path: test.info().outputPath('phone-mailbox.png') });
  await phone.close();

  // 5. The laptop, alone again: the server's cursors say the phone has its messages.
  await laptop.restartBrowser();
  await expect(laptop.status).toHaveText('No other devices connected');
  for (const t of texts) {
    await expect(laptop.message(t)).toContainText('on Bus phone', { timeout: 30_000 });
    await expect(laptop.message(t)).not.toContainText('not yet on other devices');
  }
  await expect(laptop.page.getByText(/waiting in the mailbox/)).toHaveCount(0);
  // Everything here is in the mailbox and past the phone's cursor: synced, as far as it knows.
  await expect(laptop.page.getByText(/^Last synced/)).toBeVisible();
  await laptop.close();

  // 6. A tablet joins last, alone: the compacted history still holds everything written.
  const tablet = await Device.launch('mbox-tablet');
  await tablet.join(link);
  await expect(tablet.status).toHaveText('No other devices connected');
  for (const t of texts) await expect(tablet.message(t)).toBeVisible({ timeout: 30_000 });
  await tablet.openDevices();
  await expect(tablet.page.getByRole('list', { name: 'Devices in this space' })).toContainText('Bus phone');
  await tablet.page.screenshot({ path: test.info().outputPath('tablet-devices.png'), fullPage: true });
  await tablet.close();
});

test('with the mailbox turned off, nothing is uploaded', async () => {
  test.setTimeout(120_000);
  const laptop = await Device.launch('mbox-off-laptop');
  await laptop.openAdvanced();
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
  await laptop.openAdvanced();
  await laptop.page.getByRole('checkbox', { name: /Use the encrypted mailbox/ }).check();
  await expect(laptop.page.getByText(/1 item waiting in the mailbox/)).toBeVisible({ timeout: 30_000 });
  await laptop.close();
  await phone.restartBrowser();
  await expect(phone.message('this stays on the laptop')).toBeVisible({ timeout: 30_000 });
  await phone.close();
});

test('a long history reaches a device that joins alone, posted a slice per visit', async () => {
  test.setTimeout(300_000);
  // 1,500 texts of 1,200 random characters: the laptop's first upload, a snapshot of ~1.4 MB,
  // is more mailbox entries (64 KiB each) than one visit posts (16).
  const laptop = await Device.launch('mbox-long-laptop');
  const texts = Array.from({ length: 1500 }, (_, i) => `long history ${i} ` + randomBytes(900).toString('base64'));
  await laptop.typeMany(texts.length, (i) => texts[i]);
  // The log renders the newest 1,000 and carries the total.
  await expect(laptop.history).toHaveAttribute('data-count', String(texts.length), { timeout: 120_000 });
  await expect(laptop.page.getByText(/1500 items waiting in the mailbox/)).toBeVisible({ timeout: 60_000 });
  const link = await laptop.pairingLink();
  await laptop.close();

  const phone = await Device.launch('mbox-long-phone');
  await phone.join(link);
  await expect(phone.status).toHaveText('No other devices connected');
  await expect(phone.history).toHaveAttribute('data-count', String(texts.length), { timeout: 60_000 });
  expect(await phone.texts()).toEqual(texts.slice(-1000));
  await phone.openDevices();
  const held = await phone.page.getByText(/The mailbox holds \d+ sealed entries/).textContent();
  expect(Number(/holds (\d+)/.exec(held ?? '')?.[1])).toBeGreaterThan(16);
  await phone.close();
});

test('a mailbox someone registered first is named in Devices → Mailbox, and nothing is left there', async () => {
  test.setTimeout(120_000);
  // A space whose mailbox a squatter registered first, with a key of its own (the room id is
  // all it needs: it may read it in a server log or see it on the network).
  const secret = randomBytes(32).toString('base64url');
  const link = `${process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080'}/#pair=${secret}&signal=${encodeURIComponent('ws://127.0.0.1:3536')}`;
  const squat = await fetch(`http://127.0.0.1:3536/mailbox/${roomIdOf(link)}`, {
    method: 'PUT', headers: { Authorization: `Bearer ${randomBytes(32).toString('hex')}` },
  });
  expect(squat.status).toBe(201); // Created: the room is the squatter's now
  const laptop = await Device.launch('squatted-laptop');
  await laptop.join(link);
  await laptop.send('kept on this device');
  await laptop.openDevices();
  const problem = laptop.page.getByRole('note', { name: 'Mailbox problem' });
  await expect(problem).toContainText('refuses this space', { timeout: 30_000 });
  await expect(laptop.page.getByText(/waiting in the mailbox/)).toHaveCount(0);
  await laptop.close();
});

test('a mailbox answer larger than any honest one is refused before it is read, and the next visit works', async () => {
  test.setTimeout(120_000);
  const laptop = await Device.launch('huge-answer-laptop');
  await laptop.send('worth the wait');
  await expect(laptop.message('worth the wait')).toContainText('waiting in the mailbox', { timeout: 30_000 });
  const link = await laptop.pairingLink();
  await laptop.close();

  const phone = await Device.launch('huge-answer-phone');
  const refused: string[] = [];
  phone.page.on('console', (m) => { if (/answered with \d+ bytes/.test(m.text())) refused.push(m.text()); });
  // A hostile (or broken) server answers fetches with 9 MiB: more than a page of the largest
  // entries can be.
  const huge = JSON.stringify({ entries: [], last_seq: 1, padding: 'x'.repeat(9 * 1024 * 1024) });
  const fetches = (url: URL) => url.pathname.startsWith('/mailbox/') && url.searchParams.has('after');
  await phone.context.route(fetches, (route) => route.fulfill({ status: 200, contentType: 'application/json', body: huge }));
  await phone.join(link);
  await expect.poll(() => refused.length, { timeout: 45_000 }).toBeGreaterThan(0);
  await expect(phone.message('worth the wait')).toHaveCount(0);
  await expect(phone.composer).toBeEnabled(); // still working
  // The server behaves again: the next visit brings what waits.
  await phone.context.unroute(fetches);
  await expect(phone.message('worth the wait')).toBeVisible({ timeout: 30_000 });
  await phone.close();
});
