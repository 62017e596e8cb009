// Journey: the signaling server a device uses turns hostile (compromised, or a typo'd address
// someone squats). It assigns the device a second id, sends garbage, 8 MiB frames and a peer
// announced twice, then one 64 MiB frame. Upstream matchbox panics on the second id, which
// aborts the whole app, and copies every frame into wasm memory before looking at its size
// (wasm memory never shrinks: a few such frames and the app runs out). Ferry refuses big frames
// unread, ignores the rest of what the server sent, keeps working offline, and tells the
// person in Diagnostics.
import { test, expect, chromium, type BrowserContext, type Page } from '@playwright/test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM_ARGS } from './device';
import { HOSTILE_PORT, startHostileSignaling } from './hostile_signaling';
import { watchForCrashes } from './churn';

/** Keeps the app's WebAssembly.Memory where the test can read it (from the next navigation
 *  on). Trunk's loader dispatches `TrunkApplicationStarted` with the wasm-bindgen `init` result
 *  (the instance's exports, `memory` among them) in `detail.wasm`: a documented hook that needs
 *  no change to the build. JS heap figures (`performance.memory`) would not do: a frame refused
 *  unread still sits in the JS heap for a while, and wasm memory is not part of them. */
async function watchWasmMemory(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    addEventListener('TrunkApplicationStarted', (e) => {
      (window as any).ferryWasmMemory = (e as CustomEvent).detail.wasm.memory;
    });
  });
}

/** The size of the app's wasm memory, in bytes. It only ever grows, so a later reading also
 *  covers any peak in between. */
function wasmMemoryBytes(page: Page): Promise<number> {
  return page.evaluate(() => ((window as any).ferryWasmMemory as WebAssembly.Memory).buffer.byteLength);
}

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
  await watchWasmMemory(context);
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

  // 4. The server sends a 64 MiB frame. Ferry says it refused it (so the frame reached the app),
  //    yet the app's wasm memory grew by far less than the frame: it was never copied in.
  const MiB = 1 << 20;
  const HUGE = 64 * MiB;
  const before = await wasmMemoryBytes(page);
  expect(await hostile.sendHuge(HUGE)).toBeGreaterThanOrEqual(1);
  await expect(problem).toContainText(`${HUGE} bytes`);
  expect((await wasmMemoryBytes(page)) - before).toBeLessThan(16 * MiB);

  // 5. The app still works: a text can be written and shows.
  await composer.fill('written while the server lies');
  await composer.press('Enter');
  await expect(
    page.getByRole('log', { name: 'Messages' }).getByRole('listitem').filter({ hasText: 'written while the server lies' }),
  ).toBeVisible();
  expect(crashes).toEqual([]);

  await context.close();
  await hostile.close();
});
