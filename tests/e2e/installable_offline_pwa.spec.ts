// Journey: Ferry as an installed app: a valid manifest with icons, a service worker that
// starts it with no network, and updates that wait for the person to choose "Reload".
import { test, expect } from '@playwright/test';
import { PNG } from 'pngjs';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Device } from './device';

test('the manifest is complete and its icons load at their declared sizes', async () => {
  const d = await Device.launch('manifest');
  const href = await d.page.locator('link[rel=manifest]').getAttribute('href');
  const res = await d.page.request.get(new URL(href!, d.page.url()).toString());
  expect(res.ok()).toBe(true);
  const m = await res.json();
  expect(m).toMatchObject({ name: expect.any(String), short_name: 'Ferry', start_url: './', scope: './', display: 'standalone' });
  expect(m.theme_color).toMatch(/^#[0-9a-f]{6}$/i);
  expect(m.background_color).toMatch(/^#[0-9a-f]{6}$/i);
  const purposes = new Set<string>();
  for (const icon of m.icons) {
    const bytes = await (await d.page.request.get(new URL(icon.src, res.url()).toString())).body();
    const png = PNG.sync.read(bytes);
    expect(`${png.width}x${png.height}`).toBe(icon.sizes);
    purposes.add(`${icon.sizes}/${icon.purpose}`);
  }
  expect([...purposes].sort()).toEqual(['192x192/any', '512x512/any', '512x512/maskable']);
  await d.close();
});

test('with no network at all, a reload still shows the app and the stored history', async () => {
  const d = await Device.launch('offline-start');
  await d.send('readable on the train');
  await d.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  await d.context.setOffline(true);
  await d.page.reload();
  await d.ready();
  await expect(d.message('readable on the train')).toBeVisible();
  await d.send('written in a tunnel');
  await d.context.setOffline(false);
  await d.close();
});

test('a new version waits for "Reload" and never reloads by itself', async () => {
  const d = await Device.launch('update');
  await d.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  // A new build is deployed: same app, new service worker version (written into the
  // directory the server serves, restored afterwards).
  const swPath = join(process.env.FERRY_DIST!, 'sw.js');
  const current = readFileSync(swPath, 'utf8');
  const next = current.replace(/const VERSION = '([^']+)'/, "const VERSION = '$1-next'");
  expect(next).not.toBe(current);
  writeFileSync(swPath, next);
  try {
    await d.composer.fill('half-typed thought');
    await d.page.evaluate(async () => (await navigator.serviceWorker.getRegistration())!.update());
    await expect(d.page.getByText('Update available')).toBeVisible();
  } finally {
    writeFileSync(swPath, current);
  }
  // Nothing reloaded on its own: the draft is still there.
  await expect(d.composer).toHaveValue('half-typed thought');
  // Listen before clicking: the reload can finish before a later listener would attach.
  const reloaded = d.page.waitForEvent('load');
  await d.page.getByRole('button', { name: 'Reload' }).click();
  await reloaded;
  await d.ready();
  await expect(d.page.getByText('Update available')).toHaveCount(0);
  const version = await d.page.evaluate(async () => {
    const keys = await caches.keys();
    return keys.filter((k) => k.startsWith('ferry-'));
  });
  expect(version).toHaveLength(1);
  expect(version[0]).toMatch(/-next$/);
  await d.close();
});
