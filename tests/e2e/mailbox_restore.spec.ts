// Journey (issue #15, finding 4): the mailbox server loses data (its data dir is restored
// from an earlier copy and it restarts). Devices that are never online together notice,
// start over there and upload again: nothing they wrote is lost, and nobody's uploads stop.
import { test, expect } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from './device';

const APP = 'http://127.0.0.1:8110/';

function startSignal(dataDir: string): Promise<ChildProcess> {
  const child = spawn(process.env.FERRY_SIGNAL_BIN!, [
    '--host', '127.0.0.1', '--port', '3566', '--app-dir', process.env.FERRY_DIST!, '--app-port', '8110',
    '--ice', 'none', '--data-dir', dataDir,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((ready, fail) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('Ferry signaling') && ready(child));
    child.on('exit', (code) => fail(new Error(`ferry-signal exited with ${code}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
}

test('a mailbox restored from an older copy: devices start over there and lose nothing', async () => {
  test.setTimeout(300_000);
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-restore-data-'));
  const copyDir = mkdtempSync(join(tmpdir(), 'ferry-restore-copy-'));
  const dir = mkdtempSync(join(tmpdir(), 'ferry-restore-'));
  const bytes = randomBytes(3 * 1024 * 1024);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const filePath = join(dir, 'scan.pdf');
  writeFileSync(filePath, bytes);
  let signal = await startSignal(dataDir);

  // 1. A, alone: 15 texts. The server's data is copied now (the "backup").
  const a = await Device.launch('restore-a', APP);
  const fromA = Array.from({ length: 15 }, (_, i) => `from A #${i}.`);
  for (const t of fromA) await a.send(t);
  await expect(a.message(fromA[14])).toContainText('waiting in the mailbox', { timeout: 15_000 });
  const link = await a.pairingLink();
  await a.close();
  await stop(signal);
  cpSync(dataDir, copyDir, { recursive: true });
  signal = await startSignal(dataDir);

  // 2. B joins alone, gets A's texts, writes 15 and a 3 MiB file, leaves.
  const b = await Device.launch('restore-b', APP);
  await b.join(link);
  for (const t of fromA) await expect(b.message(t)).toBeVisible({ timeout: 30_000 });
  const fromB = Array.from({ length: 15 }, (_, i) => `from B #${i}.`);
  for (const t of fromB) await b.send(t);
  await b.attach([filePath]);
  await expect(b.page.getByRole('link', { name: 'Save scan.pdf' })).toBeVisible({ timeout: 30_000 });
  await expect(b.message('scan.pdf')).toContainText('waiting in the mailbox', { timeout: 30_000 });
  // Let the file's chunks go up (they wait for a quiet period, then a few per visit).
  await b.openDevices();
  // The manifest and 12 chunks (3 MiB; five 64 KiB entries each), besides history.
  await expect.poll(() => b.mailboxEntries(), { timeout: 90_000 }).toBeGreaterThanOrEqual(61);
  await b.close();

  // 3. A alone again: gets B's texts and file.
  await a.restartBrowser(APP);
  for (const t of fromB) await expect(a.message(t)).toBeVisible({ timeout: 30_000 });
  const save = a.page.getByRole('link', { name: 'Save scan.pdf' });
  await expect(save).toBeVisible({ timeout: 60_000 });
  await a.close();

  // 4. The server is restored from the copy made in step 1 and restarted.
  await stop(signal);
  rmSync(dataDir, { recursive: true, force: true });
  cpSync(copyDir, dataDir, { recursive: true });
  signal = await startSignal(dataDir);

  // 5. A adds 5 texts and leaves; B comes alone and has all 35 items and the file.
  await a.restartBrowser(APP);
  const late = Array.from({ length: 5 }, (_, i) => `after the restore #${i}.`);
  for (const t of late) await a.send(t);
  await expect(a.message(late[4])).toContainText('waiting in the mailbox', { timeout: 30_000 });
  // Its tick says where it is: only the mailbox has it, no device yet.
  await expect(a.message(late[4]).locator('.tick')).toHaveAttribute('data-tick', 'mailbox');
  await a.close();
  await b.restartBrowser(APP);
  for (const t of [...fromA, ...fromB, ...late]) await expect(b.message(t)).toBeVisible({ timeout: 60_000 });
  const [download] = await Promise.all([
    b.page.waitForEvent('download'),
    b.page.getByRole('link', { name: 'Save scan.pdf' }).click(),
  ]);
  const saved = join(dir, 'saved.pdf');
  await download.saveAs(saved);
  expect(createHash('sha256').update(readFileSync(saved)).digest('hex')).toBe(sha);
  await b.close();

  // 6. A, alone once more, learns from the server that B has its late texts.
  await a.restartBrowser(APP);
  await expect(a.message(late[4]).locator('.tick')).toHaveText(/^on /, { timeout: 30_000 });
  await a.close();
  await stop(signal);
});
