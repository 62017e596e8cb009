// Journey: the signaling server a device uses turns hostile (compromised, or a typo'd address
// someone squats). It assigns the device a second id, sends garbage, 8 MiB frames and a peer
// announced twice. Upstream matchbox panics on the second id, which aborts the whole app; Ferry
// ignores what the server sent, keeps working offline, and tells the person in Diagnostics.
import { test, expect, chromium } from '@playwright/test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM_ARGS } from './device';
import { HOSTILE_PORT, startHostileSignaling } from './hostile_signaling';
import { watchForCrashes } from './churn';

test('a hostile signaling server cannot crash the app, and the person is told', async () => {
  // 1. A hostile signaling server, and a device configured to use it.
  const hostile = await startHostileSignaling();
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'ferry-hostile-')), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    baseURL: process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080',
  });
  await context.route('**/config.json', (route) =>
    route.fulfill({ json: { signal: `ws://127.0.0.1:${HOSTILE_PORT}`, ice_servers: [] } }));
  const page = context.pages()[0] ?? (await context.newPage());
  const crashes = watchForCrashes(page);
  await page.goto('/');
  const composer = page.getByRole('textbox', { name: 'Message' });
  await expect(composer).toBeEnabled();

  // 2. The device met the server, and got the whole script.
  await expect.poll(() => hostile.connections()).toBeGreaterThanOrEqual(1);

  // 3. Devices → Diagnostics says the server misbehaves.
  const devices = page.getByRole('button', { name: 'Devices' });
  if ((await devices.getAttribute('aria-expanded')) !== 'true') await devices.click();
  const problem = page.getByRole('note', { name: 'Connection problem' });
  await expect(problem).toContainText('The signaling server misbehaves');
  await expect(problem).toContainText('Ferry ignored what it sent');

  // 4. The app still works: a text can be written and shows.
  await composer.fill('written while the server lies');
  await composer.press('Enter');
  await expect(
    page.getByRole('log', { name: 'Messages' }).getByRole('listitem').filter({ hasText: 'written while the server lies' }),
  ).toBeVisible();
  expect(crashes).toEqual([]);

  await context.close();
  await hostile.close();
});
