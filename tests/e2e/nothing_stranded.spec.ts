// Journey (issue #14): a phone that writes and closes within a second strands nothing. What a
// device writes while no other device is connected is sealed into its outbox before it is
// shown, posted to the mailbox within ~300 ms, sent with keepalive as the page goes away, and
// posted by the service worker's Background Sync when the app is closed. File chunks still
// wait for a quiet period: a reload elsewhere is no reason to upload a big file.
import { test, expect, type BrowserContext, type CDPSession } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

const ORIGIN = new URL(process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080').origin;

/** Bytes of every file under `dir` (the mailbox's database). */
function dirBytes(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    n += statSync(path).isDirectory() ? dirBytes(path) : readFileSync(path).length;
  }
  return n;
}

/** Two paired devices; `second` ends up closed (its profile kept for reopening). */
async function pairThenClose(first: string, second: string): Promise<{ writer: Device; reader: Device }> {
  const writer = await Device.launch(first);
  const reader = await Device.launch(second);
  await reader.join(await writer.pairingLink());
  await expect(writer.status).toHaveText('1 device connected');
  await reader.context.close();
  await expect(writer.status).toHaveText('No other devices connected');
  return { writer, reader };
}

/** Types and sends a text without waiting for anything but the composer to take it. */
async function quickSend(d: Device, text: string): Promise<void> {
  await d.composer.fill(text);
  await d.composer.press('Enter');
  await expect(d.message(text)).toBeVisible();
}

/** The app's service-worker registration id, as CDP's ServiceWorker domain reports it. */
async function workerRegistration(cdp: CDPSession): Promise<string> {
  const registration = new Promise<string>((resolve) => {
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
      const ours = registrations.find((r: { scopeURL: string; isDeleted: boolean }) =>
        r.scopeURL.startsWith(ORIGIN) && !r.isDeleted);
      if (ours) resolve(ours.registrationId);
    });
  });
  await cdp.send('ServiceWorker.enable');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((_, reject) => {
    timer = setTimeout(() => reject(new Error('CDP reported no service-worker registration for the app')), 10_000);
  });
  try {
    return await Promise.race([registration, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Dispatches the service worker's Background Sync event for the outbox through CDP, as
 *  Chromium does when the network returns. A blank page of the same profile (not the app)
 *  carries the CDP session: the app stays closed. */
async function dispatchOutboxSync(context: BrowserContext): Promise<void> {
  const blank = await context.newPage();
  const cdp = await context.newCDPSession(blank);
  try {
    const registrationId = await workerRegistration(cdp);
    await cdp.send('ServiceWorker.dispatchSyncEvent', {
      origin: ORIGIN, registrationId, tag: 'ferry-outbox', lastChance: false,
    });
  } finally {
    await blank.close();
  }
}

/** The keys of the profile's IndexedDB store, read inside the app's service worker (no app
 *  page is opened); `null` while no worker runs (it stopped meanwhile: dispatch again). */
async function workerKeys(context: BrowserContext): Promise<string[] | null> {
  const worker = context.serviceWorkers().find((w) => w.url().startsWith(ORIGIN));
  if (!worker) return null;
  return worker.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open('ferry');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    try {
      const keys = await new Promise<IDBValidKey[]>((resolve, reject) => {
        const req = db.transaction('kv').objectStore('kv').getAllKeys();
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      return keys.map(String);
    } finally {
      db.close();
    }
  }).catch(() => null);
}

/** Whether the service worker has marked every outbox record in the profile as posted. */
async function outboxPosted(context: BrowserContext): Promise<boolean> {
  const names = await workerKeys(context);
  if (!names) return false;
  const records = names.filter((k) => k.startsWith('mailbox-outbox/'));
  const done = new Set(names.filter((k) => k.startsWith('mailbox-outbox-done/')));
  return records.length > 0
    && records.every((k) => done.has(`mailbox-outbox-done/${k.slice('mailbox-outbox/'.length)}`));
}

test('write three texts, close the page within a second: the other device, opening alone, has them', async () => {
  const { writer: phone, reader: laptop } = await pairThenClose('strand-phone', 'strand-laptop');
  const texts = ['on the bus: buy bread', 'on the bus: call Sam', 'on the bus: gate 14'];
  for (const t of texts) await quickSend(phone, t);
  const closedAt = Date.now();
  await phone.page.close();
  expect(Date.now() - closedAt).toBeLessThan(1_000);

  await laptop.restartBrowser();
  await expect(laptop.status).toHaveText('No other devices connected');
  for (const t of texts) await expect(laptop.message(t)).toBeVisible({ timeout: 30_000 });
  await laptop.close();
  await phone.close();
});

test('a browser killed right after writing (no pagehide): its next start sends what it wrote', async () => {
  const { writer: phone, reader: laptop } = await pairThenClose('killed-phone', 'killed-laptop');
  const texts = ['killed: first', 'killed: second', 'killed: third'];
  for (const t of texts) await quickSend(phone, t);
  // No goodbye at all: the whole browser process dies (SIGKILL), service worker included.
  execFileSync('pkill', ['-9', '-f', `user-data-dir=${phone.profileDir}`]);
  await phone.context.close().catch(() => {});

  // The phone starts again alone and is closed a moment later; then the laptop opens alone.
  await phone.restartBrowser();
  for (const t of texts) await expect(phone.message(t)).toBeVisible();
  await expect(phone.message(texts[2])).toContainText('waiting in the mailbox', { timeout: 15_000 });
  await phone.close();
  await laptop.restartBrowser();
  for (const t of texts) await expect(laptop.message(t)).toBeVisible({ timeout: 30_000 });
  await laptop.close();
});

test('written offline, app closed, network back: the service worker posts it, the app never reopens', async () => {
  const { writer: phone, reader: laptop } = await pairThenClose('offline-phone', 'offline-laptop');
  // The service worker must be in control before the phone goes offline.
  await expect.poll(() => phone.page.evaluate(async () => !!(await navigator.serviceWorker.ready).active)).toBe(true);
  await phone.context.setOffline(true);
  const texts = ['offline: tram ticket', 'offline: the blue notebook', 'offline: 7 pm'];
  for (const t of texts) await quickSend(phone, t);
  // Nowhere yet: the mailbox is out of reach.
  await expect(phone.message(texts[0])).toContainText('not yet on other devices');
  await phone.page.close();
  await phone.context.setOffline(false);
  // Chromium retries a sync event whose promise rejected (a fetch that still saw the network
  // as down, a worker stopped mid-post); CDP's dispatch does not, so the journey dispatches
  // again until the worker has marked every outbox record posted. Re-posting is harmless: the
  // worker skips records it marked done and the server deduplicates entries by hash.
  await expect(async () => {
    await dispatchOutboxSync(phone.context);
    await expect.poll(() => outboxPosted(phone.context), { timeout: 5_000 }).toBe(true);
  }).toPass({ timeout: 45_000 });

  await laptop.restartBrowser();
  for (const t of texts) await expect(laptop.message(t)).toBeVisible({ timeout: 30_000 });
  // The phone's app was never opened again: only its service worker posted.
  expect(phone.context.pages().filter((p) => p.url().startsWith(ORIGIN))).toHaveLength(0);
  await laptop.close();
  await phone.close();
});

test('a reload of the other device does not make a device upload a 20 MiB file', async () => {
  test.setTimeout(180_000);
  const dataDir = process.env.FERRY_DATA_DIR;
  expect(dataDir, 'netns.sh exports the mailbox data dir').toBeTruthy();
  const dir = mkdtempSync(join(tmpdir(), 'ferry-quiet-'));
  const path = join(dir, 'holiday-video.bin');
  writeFileSync(path, randomBytes(20 * 1024 * 1024));
  const laptop = await Device.launch('quiet-laptop');
  const phone = await Device.launch('quiet-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await laptop.attach([path]);
  await expect(phone.page.getByRole('link', { name: 'Save holiday-video.bin' })).toBeVisible({ timeout: 90_000 });
  const before = dirBytes(dataDir!);

  // The phone reloads: the laptop is alone for a moment, and its history (not the file)
  // may go to the mailbox.
  await phone.page.reload();
  await phone.ready();
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
  await laptop.send('after the reload');
  await expect(phone.message('after the reload')).toBeVisible();
  // Longer than the quiet period (10 s), while connected: nothing of the file goes up.
  await laptop.page.waitForTimeout(12_000);
  expect(dirBytes(dataDir!) - before).toBeLessThan(4 * 1024 * 1024);
  await laptop.close();
  await phone.close();
});

test('fetching ahead: the service worker fetches waiting entries, so the app opened offline shows them', async () => {
  const { writer: phone, reader: laptop } = await pairThenClose('ahead-phone', 'ahead-laptop');
  const texts = ['ahead: the 8:15 train', 'ahead: platform 3'];
  for (const t of texts) await quickSend(phone, t);
  await expect(phone.message(texts[1])).toContainText('waiting in the mailbox', { timeout: 15_000 });
  await phone.close();

  // The laptop's app is closed; its service worker gets a Periodic Background Sync (as
  // Chromium sends to installed apps), fetching what waits. Then the laptop is offline.
  // A blank page carries the CDP session: the app stays closed.
  await laptop.reopenAt('about:blank');
  const cdp = await laptop.context.newCDPSession(laptop.page);
  const registrationId = await workerRegistration(cdp);
  // CDP's dispatch returns before the worker's fetch has finished: wait until the worker has
  // stored what it fetched (dispatching again, as Chromium's next period would, if it had
  // stopped first), and only then take the network away.
  await expect(async () => {
    await cdp.send('ServiceWorker.dispatchPeriodicSyncEvent', { origin: ORIGIN, registrationId, tag: 'ferry-prefetch' });
    await expect.poll(async () => (await workerKeys(laptop.context))?.some((k) => k.startsWith('mailbox-prefetch/')) ?? false,
      { timeout: 5_000 }).toBe(true);
  }).toPass({ timeout: 45_000 });
  // Offline from here on: what the app shows next can only come from what the worker
  // fetched and stored.
  await laptop.context.setOffline(true);
  await laptop.page.goto('/');
  await laptop.ready();
  for (const t of texts) await expect(laptop.message(t)).toBeVisible({ timeout: 20_000 });
  await laptop.close();
});
