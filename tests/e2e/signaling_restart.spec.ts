// Journey: the signaling server goes away (crash, deploy) while two devices are connected.
// Their texts keep flowing peer-to-peer, and once it is back a third device can join.
import { test, expect } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { Device } from './device';

const APP = 'http://127.0.0.1:8090/';

function startSignal(): Promise<ChildProcess> {
  const child = spawn(process.env.FERRY_SIGNAL_BIN!, [
    '--host', '127.0.0.1', '--port', '3546', '--app-dir', process.env.FERRY_DIST!, '--app-port', '8090', '--ice', 'none', '--no-mailbox',
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((ready, fail) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('Ferry signaling') && ready(child));
    child.on('exit', (code) => fail(new Error(`ferry-signal exited with ${code}`)));
  });
}

test('texts keep flowing while signaling is down; a new device joins after it is back', async () => {
  let signal = await startSignal();
  const laptop = await Device.launch('restart-laptop', APP);
  const phone = await Device.launch('restart-phone', APP);
  const link = await laptop.pairingLink();
  await phone.join(link);
  await expect(laptop.status).toHaveText('1 device connected');

  // 1. The signaling server dies without a goodbye.
  signal.kill('SIGKILL');
  await new Promise((r) => signal.once('exit', r));
  await laptop.send('sent while signaling is down');
  await expect(phone.message('sent while signaling is down')).toBeVisible();
  await phone.send('reply while signaling is down');
  await expect(laptop.message('reply while signaling is down')).toBeVisible();

  // 2. It comes back; a third device joins and gets everything.
  signal = await startSignal();
  const tablet = await Device.launch('restart-tablet', APP);
  await tablet.join(link);
  await expect(tablet.message('sent while signaling is down')).toBeVisible({ timeout: 60_000 });
  await expect(tablet.message('reply while signaling is down')).toBeVisible();
  await expect(laptop.status).toHaveText('2 devices connected', { timeout: 60_000 });
  for (const d of [laptop, phone, tablet]) await d.close();
  signal.kill();
});
