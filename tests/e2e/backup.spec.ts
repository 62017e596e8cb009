// Journey: a backup a person can keep. Devices → Export backup downloads one .ferry file: a
// ZIP that JSZip opens, whose messages.json holds every live item (a deleted one is absent),
// whose files/<hash> are the file's exact bytes, whose history.automerge the reference JS
// automerge loads, and whose index.html shows the messages offline. "Export without
// history" leaves the history out.
import { test, expect, type Download } from '@playwright/test';
import JSZip from 'jszip';
import * as Automerge from '@automerge/automerge';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

async function zipOf(download: Download): Promise<JSZip> {
  const path = await download.path();
  return JSZip.loadAsync(readFileSync(path!));
}

test('Export backup writes a ZIP with messages, files, the history and an offline viewer', async () => {
  test.setTimeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-backup-'));
  const photo = join(dir, 'holiday.jpg');
  const bytes = randomBytes(700 * 1024);
  writeFileSync(photo, bytes);

  const d = await Device.launch('backup');
  await d.send('a message to keep');
  await d.send('a message to delete');
  await d.page.getByRole('button', { name: 'New task' }).click();
  await d.page.getByRole('textbox', { name: 'Task' }).fill('renew passport');
  await d.page.getByRole('textbox', { name: 'Task' }).press('Enter');
  await d.page.getByRole('textbox', { name: 'Task' }).press('Escape');
  await d.page.getByRole('button', { name: 'New note' }).click();
  const note = d.page.getByRole('dialog', { name: /note/i });
  await note.getByRole('textbox', { name: 'Note title' }).fill('Packing');
  await note.getByRole('textbox', { name: 'Note text' }).fill('socks\n- [ ] charger');
  await note.getByRole('button', { name: 'Save note' }).click();
  await d.attach([photo]);
  await expect(d.page.getByRole('link', { name: 'Save holiday.jpg' })).toBeVisible({ timeout: 30_000 });
  const doomed = d.message('a message to delete');
  const before = Number(await d.history.getAttribute('data-count'));
  await doomed.getByRole('button', { name: 'Delete message' }).click();
  await expect(d.history).toHaveAttribute('data-count', String(before - 1), { timeout: 15_000 });

  await d.openDevices();
  const [download] = await Promise.all([
    d.page.waitForEvent('download'),
    d.page.getByRole('button', { name: 'Export backup' }).click(),
  ]);
  expect(download.suggestedFilename()).toMatch(/^ferry-\d{4}-\d\d-\d\d\.ferry$/);
  await expect(d.page.getByText(/^Exported ferry-.*: 4 items, 1 files$/)).toBeVisible();
  const zip = await zipOf(download);
  const names = Object.keys(zip.files).sort();
  const fileEntries = names.filter((n) => n.startsWith('files/'));
  expect(fileEntries).toHaveLength(1);
  expect(names).toEqual(['history.automerge', 'index.html', 'manifest.json', 'messages.json', ...fileEntries].sort());

  // The file's bytes, exactly.
  const stored = await zip.file(fileEntries[0])!.async('nodebuffer');
  expect(stored.equals(bytes)).toBe(true);

  // messages.json: the live items, the deleted one absent.
  const messages = JSON.parse(await zip.file('messages.json')!.async('string'));
  expect(messages.map((m: { kind: string }) => m.kind)).toEqual(['text', 'task', 'note', 'file']);
  expect(messages[0].text).toBe('a message to keep');
  expect(messages[1]).toMatchObject({ text: 'renew passport', done: false });
  expect(messages[2]).toMatchObject({ text: 'Packing', body: 'socks\n- [ ] charger' });
  expect(messages[3].file).toMatchObject({ name: 'holiday.jpg', size: bytes.length, hash: fileEntries[0].slice(6) });
  expect(JSON.stringify(messages)).not.toContain('a message to delete');

  // manifest.json: every other entry with its size.
  const manifest = JSON.parse(await zip.file('manifest.json')!.async('string'));
  expect(manifest).toMatchObject({ format: 'ferry-backup', version: 1, with_history: true, missing_files: [] });
  expect(manifest.entries.map((e: { path: string }) => e.path).sort()).toEqual(names.filter((n) => n !== 'manifest.json').sort());
  for (const e of manifest.entries) {
    expect((await zip.file(e.path)!.async('nodebuffer')).length).toBe(e.size);
    expect(e.blake3).toMatch(/^[0-9a-f]{64}$/);
  }

  // history.automerge: the reference JS automerge loads it, with every item in it.
  // (Automerge 3 reads a scalar string as an ImmutableString and a text object as a string.)
  const history = Automerge.load<{ items: Record<string, { kind: unknown; body?: string }> }>(
    new Uint8Array(await zip.file('history.automerge')!.async('uint8array')),
  );
  for (const m of messages) expect(String(history.items[m.id]?.kind)).toBe(m.kind);
  expect(history.items[messages[2].id].body).toBe('socks\n- [ ] charger');

  // index.html shows the messages offline, from the unzipped folder.
  const unzipped = mkdtempSync(join(tmpdir(), 'ferry-unzipped-'));
  writeFileSync(join(unzipped, 'index.html'), await zip.file('index.html')!.async('nodebuffer'));
  const viewer = await d.context.newPage();
  await viewer.goto(`file://${unzipped}/index.html`);
  const list = viewer.getByRole('list', { name: 'Messages' });
  await expect(list.getByRole('listitem')).toHaveCount(4);
  await expect(list).toContainText('renew passport');
  await expect(list).toContainText('charger');
  await viewer.getByRole('searchbox', { name: 'Search' }).fill('socks');
  await expect(list.getByRole('listitem')).toHaveCount(1);
  await viewer.close();

  // Export without history: the current state only.
  const [lean] = await Promise.all([
    d.page.waitForEvent('download'),
    d.page.getByRole('button', { name: 'Export without history' }).click(),
  ]);
  const leanZip = await zipOf(lean);
  expect(Object.keys(leanZip.files)).not.toContain('history.automerge');
  const leanManifest = JSON.parse(await leanZip.file('manifest.json')!.async('string'));
  expect(leanManifest.with_history).toBe(false);
  for (const name of Object.keys(leanZip.files)) {
    expect((await leanZip.file(name)!.async('string'))).not.toContain('a message to delete');
  }
  await d.close();
});

test('Import backup merges a backup into a space, twice without duplicates; another space asks first; a damaged one changes nothing', async () => {
  test.setTimeout(150_000);
  const dir = mkdtempSync(join(tmpdir(), 'ferry-import-'));
  const doc = join(dir, 'lease.pdf');
  const bytes = randomBytes(300 * 1024);
  writeFileSync(doc, bytes);

  // A device of its own space writes and exports, then is gone for good.
  const old = await Device.launch('import-old');
  await old.send('from the old phone');
  await old.attach([doc]);
  await expect(old.page.getByRole('link', { name: 'Save lease.pdf' })).toBeVisible({ timeout: 30_000 });
  await old.openDevices();
  const [download] = await Promise.all([
    old.page.waitForEvent('download'),
    old.page.getByRole('button', { name: 'Export backup' }).click(),
  ]);
  const backup = join(dir, download.suggestedFilename());
  await download.saveAs(backup);
  await old.close();

  // Another device, another space: the import asks first, then merges.
  const d = await Device.launch('import-new');
  await d.send('already here');
  await d.openDevices();
  await d.page.getByLabel('Backup file to import').setInputFiles(backup);
  const offer = d.page.getByRole('alertdialog');
  await expect(offer).toContainText('This backup is of another space');
  await offer.getByRole('button', { name: 'Merge into this space' }).click();
  await expect(d.page.getByText(/^Imported .*: 2 new items/)).toBeVisible();
  await d.page.getByRole('button', { name: 'Back to chat' }).click();
  await expect(d.message('from the old phone')).toBeVisible();
  await expect(d.message('already here')).toBeVisible();
  // The file's bytes came with it: saved from this device, they are the same.
  const save = d.page.getByRole('link', { name: 'Save lease.pdf' });
  await expect(save).toBeVisible({ timeout: 30_000 });
  const [saved] = await Promise.all([d.page.waitForEvent('download'), save.click()]);
  expect(readFileSync((await saved.path())!).equals(bytes)).toBe(true);

  // The same backup again: nothing new, nothing twice.
  await d.openDevices();
  await d.page.getByLabel('Backup file to import').setInputFiles(backup);
  await d.page.getByRole('alertdialog').getByRole('button', { name: 'Merge into this space' }).click();
  await expect(d.page.getByText(/^Imported .*: 0 new items/)).toBeVisible();
  await expect(d.history.getByRole('listitem')).toHaveCount(3);

  // A damaged backup (cut short): a clear error, and the history is as it was.
  const damaged = join(dir, 'damaged.ferry');
  writeFileSync(damaged, readFileSync(backup).subarray(0, 200_000));
  await d.page.getByLabel('Backup file to import').setInputFiles(damaged);
  await expect(d.alert).toContainText(/Cannot import damaged\.ferry: .*Nothing was changed/);
  await expect(d.history.getByRole('listitem')).toHaveCount(3);
  await d.page.reload();
  await d.ready();
  await expect(d.history.getByRole('listitem')).toHaveCount(3);
  await d.close();
});
