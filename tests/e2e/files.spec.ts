// Journey: a person sends files between their own devices. A 50 MiB random file arrives
// byte-for-byte (same SHA-256), a reload in the middle of the download resumes without asking
// again for chunks already verified, a pasted image shows a preview on both devices, and an
// empty file still arrives as an empty file.
import { test, expect, type Download } from '@playwright/test';
import { PNG } from 'pngjs';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, openSync, closeSync, statSync, truncateSync, writeSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

const MiB = 1024 * 1024;
const CHUNK = 256 * 1024;

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (b) => hash.update(b))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

/** Writes `size` random bytes in 1 MiB pieces; returns the file's SHA-256. */
function writeRandomFile(path: string, size: number): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (let left = size; left > 0;) {
      const piece = randomBytes(Math.min(MiB, left));
      writeSync(fd, piece);
      hash.update(piece);
      left -= piece.length;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

async function pair(): Promise<{ laptop: Device; phone: Device }> {
  const laptop = await Device.launch('laptop');
  const phone = await Device.launch('phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(phone.status).toHaveText('1 device connected');
  return { laptop, phone };
}

/** Clicks `Save <name>` and saves the browser download into `dir`. */
async function saveDownload(device: Device, name: string, dir: string): Promise<{ download: Download; path: string }> {
  const [download] = await Promise.all([
    device.page.waitForEvent('download', { timeout: 60_000 }),
    device.page.getByRole('link', { name: `Save ${name}`, exact: true }).click(),
  ]);
  const path = join(dir, `saved-${device.name}-${name}`);
  await download.saveAs(path);
  return { download, path };
}

test('a 50 MiB file arrives intact, and a reload mid-transfer resumes without re-downloading verified chunks', async () => {
  test.setTimeout(420_000);
  const t0 = Date.now();
  const at = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;

  const dir = mkdtempSync(join(tmpdir(), 'ferry-files-'));
  const name = 'random-50MiB.bin';
  const size = 50 * MiB; // 52,428,800 bytes
  const chunks = size / CHUNK; // 200
  expect(chunks).toBe(200);
  const original = join(dir, name);
  const sha = writeRandomFile(original, size);
  expect(statSync(original).size).toBe(52_428_800);
  console.log(`[files] wrote ${name} (${size} bytes, sha256 ${sha}) at ${at()}`);

  const { laptop, phone } = await pair();
  console.log(`[files] paired at ${at()}`);

  // The phone's diagnostics are open before anything is sent, so the in-page watcher below can
  // read "File chunks received" without a round trip.
  await phone.openAdvanced();
  await expect(phone.page.getByTestId('chunks-verified')).toBeAttached();
  await expect(phone.page.getByTestId('chunk-requests')).toBeAttached();

  // Start watching on the phone right away, polling every 50 ms inside the page, before the
  // laptop even attaches the file: it resolves as soon as the download is under way but
  // clearly unfinished, or reports that it finished before we could catch it.
  type Seen = { state: 'mid' | 'done' | 'timeout'; now: number; had: number; polls: number };
  const watcher: Promise<Seen> = phone.page.evaluate(({ name, chunks }) => {
    const num = (el: Element | null) => {
      const m = el?.textContent?.replace(/[,\s]/g, '').match(/\d+/);
      return m ? Number(m[0]) : 0;
    };
    const bar = (): Element | null => {
      const bars = Array.from(document.querySelectorAll('[role="progressbar"], progress'));
      return bars.find((b) => b.getAttribute('aria-label') === `Transfer of ${name}`)
        ?? bars.find((b) => {
          const ids = b.getAttribute('aria-labelledby');
          return !!ids && ids.split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? '').join(' ').trim() === `Transfer of ${name}`;
        })
        ?? null;
    };
    return new Promise<Seen>((resolve) => {
      let polls = 0;
      const started = Date.now();
      const tick = () => {
        polls++;
        const had = num(document.querySelector('[data-testid="chunks-verified"]'));
        const saved = Array.from(document.querySelectorAll('a[download]')).some((a) => a.getAttribute('download') === name);
        const b = bar();
        const raw = b?.getAttribute('aria-valuenow') ?? (b instanceof HTMLProgressElement ? String((b.value / (b.max || 1)) * 100) : null);
        const now = raw === null ? -1 : Number(raw);
        if (saved || had >= chunks || now >= 100) return resolve({ state: 'done', now, had, polls });
        if ((now >= 10 && now <= 70) || (had >= 20 && had <= 140)) return resolve({ state: 'mid', now, had, polls });
        if (Date.now() - started > 240_000) return resolve({ state: 'timeout', now, had, polls });
        setTimeout(tick, 50);
      };
      tick();
    });
  }, { name, chunks });

  // The phone reloads the moment the watcher sees the transfer mid-way, with no other step
  // in between.
  const reloaded = watcher.then(async (seen) => {
    if (seen.state === 'mid') await phone.page.reload();
    return seen;
  });
  reloaded.catch(() => {}); // awaited below; this only keeps an early failure from being unhandled

  // The laptop attaches the file through the composer's file picker.
  await expect(laptop.page.getByRole('button', { name: 'Attach files' })).toBeVisible();
  await laptop.attach([original]);
  console.log(`[files] laptop attached the file at ${at()}`);

  const seen = await reloaded;
  console.log(`[files] watcher: ${JSON.stringify(seen)} at ${at()}`);
  if (seen.state === 'done') {
    throw new Error(`the transfer finished before the phone could be reloaded mid-way ` +
      `(progress ${seen.now}%, ${seen.had} chunks received after ${seen.polls} polls); ` +
      `this run does not show resumption`);
  }
  if (seen.state === 'timeout') {
    throw new Error(`no transfer progress on the phone within 240 s (progress ${seen.now}%, ${seen.had} chunks received)`);
  }
  const had = seen.had;
  expect(had, 'chunks verified before the reload').toBeGreaterThan(0);
  expect(had, 'chunks verified before the reload').toBeLessThan(chunks);
  await phone.ready();
  console.log(`[files] phone reloaded with ${had}/${chunks} chunks verified (${seen.now}%) at ${at()}`);

  // Both list the file with its size; the phone resumes by itself and finishes.
  const onLaptop = laptop.message(name);
  await expect(onLaptop).toBeVisible();
  await expect(onLaptop).toContainText('50.0 MB');
  const onPhone = phone.message(name);
  await expect(onPhone).toBeVisible({ timeout: 60_000 });
  await expect(onPhone).toContainText('50.0 MB');
  await expect(phone.page.getByRole('link', { name: `Save ${name}`, exact: true })).toBeVisible({ timeout: 120_000 });
  console.log(`[files] phone has all the bytes at ${at()}`);
  await expect(phone.page.getByRole('progressbar', { name: `Transfer of ${name}` })).toHaveCount(0);

  // Verified chunks were not asked for again after the reload (a little slack for re-requests
  // after timeouts).
  await phone.openAdvanced();
  const requested = phone.page.getByTestId('chunk-requests');
  await expect(requested).toHaveText(/\d/);
  const req = Number(((await requested.textContent()) ?? '').replace(/[^\d]/g, ''));
  console.log(`[files] chunk requests after reload: ${req} (had ${had}, ${chunks - had} missing)`);
  expect(req, 'chunks requested after the reload').toBeGreaterThan(0);
  expect(req, 'chunks requested after the reload: verified chunks must not be re-requested').toBeLessThanOrEqual(chunks - had + 8);
  await expect(phone.page.getByText(/Storage used: /).first()).toBeVisible();

  // Saved with the original name, byte-for-byte the original.
  const { download, path } = await saveDownload(phone, name, dir);
  expect(download.suggestedFilename()).toBe(name);
  expect(statSync(path).size).toBe(size);
  expect(await sha256File(path)).toBe(sha);
  console.log(`[files] saved and verified on the phone at ${at()}`);

  await laptop.close();
  await phone.close();
});

test('a pasted image shows a preview on both devices and opens in the image viewer', async () => {
  test.setTimeout(180_000);
  const { laptop, phone } = await pair();

  // A small 64×64 colored PNG.
  const png = new PNG({ width: 64, height: 64 });
  for (let y = 0; y < 64; y++) {
    for (let x = 0; x < 64; x++) {
      const i = (y * 64 + x) * 4;
      png.data[i] = x * 4;
      png.data[i + 1] = y * 4;
      png.data[i + 2] = 200;
      png.data[i + 3] = 255;
    }
  }
  const bytes = PNG.sync.write(png);

  await laptop.composer.focus();
  await laptop.composer.evaluate((el, b64) => {
    const bin = atob(b64);
    const data = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) data[i] = bin.charCodeAt(i);
    const file = new File([data], 'pasted.png', { type: 'image/png' });
    const dt = new DataTransfer();
    dt.items.add(file);
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, bytes.toString('base64'));

  for (const device of [laptop, phone]) {
    await expect(device.message('pasted.png')).toBeVisible({ timeout: 60_000 });
    const img = device.page.getByRole('img', { name: 'Preview of pasted.png', exact: true });
    await expect(img).toBeVisible({ timeout: 60_000 });
    await expect.poll(
      () => img.evaluate((e) => (e as HTMLImageElement).complete ? (e as HTMLImageElement).naturalWidth : 0),
      { timeout: 30_000, message: `the preview on the ${device.name} decodes as a 64-pixel-wide image` },
    ).toBe(64);
    expect(await img.evaluate((e) => (e as HTMLImageElement).naturalHeight)).toBe(64);
  }
  // Pasting a file does not leave it as text in the composer.
  await expect(laptop.composer).toHaveValue('');

  // The image viewer: a second image, then the first one opened full size on the phone;
  // → moves to the newer one, ← back, Escape closes it and the focus is back on the image.
  await laptop.composer.evaluate((el, b64) => {
    const bin = atob(b64);
    const data = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) data[i] = bin.charCodeAt(i);
    const dt = new DataTransfer();
    dt.items.add(new File([data], 'second.png', { type: 'image/png' }));
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, (() => {
    // Other pixels: files are stored by content, and this must be a second image.
    png.data.fill(90);
    return PNG.sync.write(png).toString('base64');
  })());
  await expect(phone.page.getByRole('img', { name: 'Preview of second.png', exact: true })).toBeVisible({ timeout: 60_000 });
  const opener = phone.page.getByRole('button', { name: 'Preview of pasted.png' });
  await opener.click();
  const viewer = phone.page.getByRole('dialog', { name: 'Image viewer' });
  await expect(viewer).toBeVisible();
  await expect(viewer.getByRole('button', { name: 'Close' })).toBeFocused();
  await expect(viewer.getByRole('img', { name: 'pasted.png' })).toBeVisible();
  await expect(viewer).toContainText('1 of 2');
  await expect(viewer.getByRole('button', { name: 'Previous image' })).toBeDisabled();
  await phone.page.keyboard.press('ArrowRight');
  await expect(viewer.getByRole('img', { name: 'second.png' })).toBeVisible();
  await expect(viewer).toContainText('2 of 2');
  await phone.page.keyboard.press('ArrowLeft');
  await expect(viewer.getByRole('img', { name: 'pasted.png' })).toBeVisible();
  await phone.page.screenshot({ path: join(process.cwd(), '../../target/e2e-results/screenshots/image-viewer.png') });
  await phone.page.keyboard.press('Escape');
  await expect(viewer).toHaveCount(0);
  await expect(opener).toBeFocused();

  await laptop.close();
  await phone.close();
});

test('an empty file is sent and saved as an empty file on the other device', async () => {
  test.setTimeout(180_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-files-'));
  const name = 'empty.txt';
  const original = join(dir, name);
  writeFileSync(original, '');

  const { laptop, phone } = await pair();
  await laptop.attach([original]);
  await expect(laptop.message(name)).toBeVisible({ timeout: 60_000 });
  await expect(phone.message(name)).toBeVisible({ timeout: 60_000 });
  await expect(phone.page.getByRole('link', { name: `Save ${name}`, exact: true })).toBeVisible({ timeout: 60_000 });

  const { download, path } = await saveDownload(phone, name, dir);
  expect(download.suggestedFilename()).toBe(name);
  expect(statSync(path).size).toBe(0);

  await laptop.close();
  await phone.close();
});

/** Keys of stored file data (`blob/...`: manifests and chunks) in the device's IndexedDB. */
async function blobKeys(device: Device): Promise<number> {
  return device.page.evaluate(() => new Promise<number>((resolve, reject) => {
    const open = indexedDB.open('ferry');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = open.result.transaction('kv').objectStore('kv')
        .getAllKeys(IDBKeyRange.bound('blob/', 'blob/\uffff'));
      req.onsuccess = () => { resolve(req.result.length); open.result.close(); };
      req.onerror = () => reject(req.error);
    };
  }));
}

test('deleting a file item frees its storage on every device', async () => {
  test.setTimeout(180_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-files-del-'));
  const path = join(dir, 'to-be-deleted.bin');
  writeFileSync(path, randomBytes(600 * 1024)); // 3 chunks + manifest
  const { laptop, phone } = await pair();
  await laptop.page.getByLabel('Files to send').setInputFiles(path);
  for (const d of [laptop, phone]) {
    await expect(d.page.getByRole('link', { name: 'Save to-be-deleted.bin' })).toBeVisible({ timeout: 60_000 });
    await expect.poll(() => blobKeys(d)).toBe(4);
  }
  const item = laptop.message('to-be-deleted.bin');
  await item.getByRole('button', { name: 'Delete message' }).click();
  for (const d of [laptop, phone]) {
    await expect(d.message('to-be-deleted.bin')).toHaveCount(0, { timeout: 30_000 });
    await expect.poll(() => blobKeys(d), { timeout: 30_000 }).toBe(0);
  }
  await laptop.close();
  await phone.close();
});

test('a file larger than the free storage is refused with a clear error, and nothing is lost', async () => {
  const laptop = await Device.launch('quota-laptop');
  await laptop.send('kept while a too-large file is refused');
  // The browser's real quota for this profile; a sparse file just above what is free costs
  // no disk and no time, and the app must refuse it before reading or storing anything.
  const { quota, usage } = await laptop.page.evaluate(() => navigator.storage.estimate()) as { quota: number; usage: number };
  const dir = mkdtempSync(join(tmpdir(), 'ferry-quota-'));
  const path = join(dir, 'too-big.bin');
  writeFileSync(path, '');
  truncateSync(path, quota - usage + 64 * MiB);
  await laptop.page.getByLabel('Files to send').setInputFiles(path);
  await expect(laptop.alert).toContainText('too-big.bin was not sent. Not enough storage on this device');
  await expect(laptop.message('too-big.bin')).toHaveCount(0);
  await expect(laptop.message('kept while a too-large file is refused')).toBeVisible();
  await laptop.close();
});

test('a download cancelled on one device stays stopped across a reload and resumes with Retry', async () => {
  test.setTimeout(300_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-cancel-'));
  const name = 'cancel-me.bin';
  const path = join(dir, name);
  const sha = writeRandomFile(path, 40 * MiB);
  const { laptop, phone } = await pair();
  await laptop.page.getByLabel('Files to send').setInputFiles(path);
  const bar = phone.page.getByRole('progressbar', { name: `Transfer of ${name}` });
  await expect(bar).toBeVisible({ timeout: 60_000 });
  await phone.page.getByRole('button', { name: `Cancel download of ${name}` }).click();
  const retry = phone.page.getByRole('button', { name: `Retry download of ${name}` });
  await expect(retry).toBeVisible();
  await expect(phone.message(name)).toContainText(/Stopped at \d+% on this device/);
  // Stopping is a decision of this device: it survives a reload.
  await phone.page.reload();
  await phone.ready();
  await expect(retry).toBeVisible({ timeout: 30_000 });
  await expect(phone.page.getByRole('link', { name: `Save ${name}` })).toHaveCount(0);
  await retry.click();
  await expect(phone.page.getByRole('link', { name: `Save ${name}` })).toBeVisible({ timeout: 120_000 });
  const { path: saved } = await saveDownload(phone, name, dir);
  expect(await sha256File(saved)).toBe(sha);
  await laptop.close();
  await phone.close();
});

test('files dropped on the chat are sent, several at once', async () => {
  const laptop = await Device.launch('drop-laptop');
  // A drop as the browser delivers it: a DataTransfer with two files on the history.
  await laptop.page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['first dropped file'], 'dropped-1.txt', { type: 'text/plain' }));
    dt.items.add(new File([new Uint8Array(300 * 1024)], 'dropped-2.bin', { type: 'application/octet-stream' }));
    const log = document.querySelector('[role="log"]')!;
    log.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
    log.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await expect(laptop.page.getByRole('link', { name: 'Save dropped-1.txt' })).toBeVisible({ timeout: 30_000 });
  await expect(laptop.page.getByRole('link', { name: 'Save dropped-2.bin' })).toBeVisible({ timeout: 30_000 });
  await expect(laptop.message('dropped-2.bin')).toContainText('300.0 KB');
  await laptop.close();
});

test('a file whose sending tab closed while storing it is taken out everywhere, and the person is told', async () => {
  test.setTimeout(240_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-interrupted-'));
  const name = 'half-sent.bin';
  const path = join(dir, name);
  writeRandomFile(path, 200 * MiB);
  const { laptop, phone } = await pair();
  await laptop.page.getByLabel('Files to send').setInputFiles(path);
  // The item exists (hashed) and reached the phone while the laptop still stores the bytes.
  await expect(laptop.message(name)).toBeVisible({ timeout: 60_000 });
  await expect(phone.message(name)).toBeVisible({ timeout: 10_000 });
  await laptop.close();
  // Before: the phone waited for ever for bytes that exist nowhere.
  await laptop.restartBrowser();
  await expect(laptop.page.getByText(`${name} was not sent completely`)).toBeVisible({ timeout: 30_000 });
  await expect(laptop.message(name)).toHaveCount(0);
  await expect(phone.message(name)).toHaveCount(0, { timeout: 30_000 });
  // Sent again, it arrives whole.
  await laptop.page.getByLabel('Files to send').setInputFiles(path);
  await expect(phone.page.getByRole('link', { name: `Save ${name}` })).toBeVisible({ timeout: 180_000 });
  await laptop.close();
  await phone.close();
});
