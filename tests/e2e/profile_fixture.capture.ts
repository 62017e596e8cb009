// Captures a real browser profile made by the current release, for the migration tests of
// the next storage layout (`crates/core/tests/profile_migration.rs`). Run by hand, inside the
// private namespace, before changing how a device stores its state:
//
//   unshare -n bash tests/e2e/netns.sh -c capture.config.ts
//
// The laptop's profile gets everything a device keeps: a pairing, a renamed device, its own
// ICE settings, texts (one edited, one deleted), a file it has whole, a download it stopped,
// delivery marks, and mailbox state (a cursor, uploads, heads, a receipt). Its IndexedDB is
// then dumped, record for record, with what the person saw, to compare after migrating.
import { test, expect } from '@playwright/test';
import { execSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

const OUT = join(__dirname, '../../crates/core/tests/fixtures/profile-v0.json');

test('capture a profile of the current release', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fixture-'));
  const small = randomBytes(40_000);
  writeFileSync(join(dir, 'recipe.txt'), small);
  writeFileSync(join(dir, 'movie.bin'), randomBytes(40 * 1024 * 1024));

  const phone = await Device.launch('fixture-phone');
  await phone.send('from the phone: hello');
  const link = await phone.pairingLink();
  const laptop = await Device.launch('fixture-laptop');
  await laptop.join(link);
  await expect(laptop.message('from the phone: hello')).toBeVisible({ timeout: 30_000 });

  // Its own name and ICE settings.
  await laptop.openDevices();
  await laptop.page.getByRole('textbox', { name: "This device's name" }).fill('Work laptop');
  await laptop.page.getByRole('button', { name: 'Rename' }).click();
  await laptop.page.getByRole('textbox', { name: 'STUN or TURN server' }).fill('turn:127.0.0.1:3478');
  await laptop.page.getByRole('textbox', { name: 'Username (TURN)' }).fill('ferry');
  await laptop.page.getByLabel('Credential (TURN)').fill('secret');
  await laptop.page.getByRole('button', { name: 'Save connection settings' }).click();
  await expect(laptop.page.getByText('Connection settings saved.')).toBeVisible();

  // Texts and a small file, delivered to the phone.
  await laptop.send('from the laptop: one');
  await laptop.send('from the laptop: two (to be deleted)');
  await laptop.attach([join(dir, 'recipe.txt')]);
  await expect(phone.page.getByRole('link', { name: 'Save recipe.txt' })).toBeVisible({ timeout: 60_000 });
  await expect(laptop.message('from the laptop: one')).toContainText(/· on /, { timeout: 30_000 });

  // A download the laptop stops.
  await phone.attach([join(dir, 'movie.bin')]);
  await expect(laptop.page.getByRole('progressbar', { name: 'Transfer of movie.bin' })).toBeVisible({ timeout: 60_000 });
  await laptop.page.getByRole('button', { name: 'Cancel download of movie.bin' }).click();
  await expect(laptop.message('movie.bin')).toContainText(/Stopped at \d+% on this device/);

  // The phone leaves; the laptop writes through the mailbox, and reads what the phone left.
  await phone.close();
  await laptop.send('from the laptop, while the phone is away');
  await expect(laptop.page.getByText(/waiting in the mailbox/).first()).toBeVisible({ timeout: 30_000 });
  await laptop.close();
  await phone.restartBrowser();
  await phone.send('from the phone, while the laptop is away');
  await expect(phone.page.getByText(/waiting in the mailbox/).first()).toBeVisible({ timeout: 30_000 });
  await phone.close();
  await laptop.restartBrowser();
  await expect(laptop.message('from the phone, while the laptop is away')).toBeVisible({ timeout: 30_000 });
  // Edit one, delete one.
  const menu = laptop.page.getByRole('menu', { name: 'Message actions' });
  await laptop.message('from the laptop: one').locator('.text').click({ button: 'right' });
  await menu.getByRole('menuitem', { name: 'Edit' }).click();
  const edit = laptop.history.getByRole('textbox', { name: 'Edit message' });
  await edit.fill('from the laptop: one (edited)');
  await edit.press('Enter');
  await expect(laptop.message('from the laptop: one (edited)')).toBeVisible();
  const doomed = laptop.message('from the laptop: two (to be deleted)');
  await doomed.getByRole('button', { name: 'Delete message' }).click();
  await expect(laptop.page.getByRole('button', { name: 'Undo' })).toHaveCount(0, { timeout: 15_000 });
  await expect(doomed).toHaveCount(0);
  await laptop.page.waitForTimeout(8_000); // a mailbox visit or two, then quiet

  const texts = await laptop.texts();
  await laptop.openDevices();
  const seen = await laptop.page.getByRole('list', { name: 'Devices in this space' }).innerText();
  const records = await laptop.page.evaluate(async () => {
    const db: IDBDatabase = await new Promise((ok, fail) => {
      const r = indexedDB.open('ferry');
      r.onsuccess = () => ok(r.result);
      r.onerror = () => fail(r.error);
    });
    const tx = db.transaction('kv', 'readonly');
    const store = tx.objectStore('kv');
    const [keys, values] = await Promise.all([
      new Promise<IDBValidKey[]>((ok) => { const r = store.getAllKeys(); r.onsuccess = () => ok(r.result); }),
      new Promise<unknown[]>((ok) => { const r = store.getAll(); r.onsuccess = () => ok(r.result); }),
    ]);
    const b64 = (v: unknown) => {
      const bytes = v instanceof Uint8Array ? v : new Uint8Array(v as ArrayBuffer);
      let s = '';
      for (const b of bytes) s += String.fromCharCode(b);
      return btoa(s);
    };
    return keys.map((k, i) => ({ key: String(k), value: b64(values[i]) }));
  });
  await laptop.close();

  // The stopped download's partial chunks are left out (megabytes; a resumed download
  // fetches them again); everything else is the profile as it was.
  const stopped = records.find((r) => r.key === 'settings/files-stopped');
  const stoppedRoot = stopped ? Buffer.from(stopped.value, 'base64').toString().trim() : '';
  const kept = records.filter((r) => !(stoppedRoot && r.key.startsWith(`blob/${stoppedRoot}/c/`)));
  const fixture = {
    made_by: execSync('git rev-parse HEAD', { cwd: __dirname }).toString().trim(),
    made_at: new Date().toISOString(),
    note: "A laptop's IndexedDB ('ferry' / 'kv'), captured by tests/e2e/profile_fixture.capture.ts; chunks of the stopped download left out.",
    expect: {
      texts,
      device_name: 'Work laptop',
      devices_view: seen,
      ice: [{ urls: ['turn:127.0.0.1:3478'], username: 'ferry', credential: 'secret' }],
      file: { name: 'recipe.txt', sha256: createHash('sha256').update(small).digest('hex') },
      stopped: 'movie.bin',
    },
    records: kept,
  };
  writeFileSync(OUT, JSON.stringify(fixture, null, 1));
  expect(kept.length).toBeGreaterThan(10);
});
