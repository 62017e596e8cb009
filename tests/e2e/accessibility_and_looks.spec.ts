// Journey: the app as a screen reader and a sighted person meet it. axe-core finds no
// violations in the chat, devices and join views; screenshots at phone and desktop sizes, in
// light and dark themes, are saved as artifacts to look at.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Device } from './device';

// The specs run from tests/e2e (see netns.sh).
const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

async function noViolations(d: Device, what: string) {
  const result = await new AxeBuilder({ page: d.page }).analyze();
  const summary = result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  expect(summary, `axe violations in the ${what} view`).toEqual([]);
}

test('chat, devices and join views have no axe violations', async () => {
  const d = await Device.launch('axe');
  await d.send('a message with a link https://example.org and some text');
  await noViolations(d, 'chat');
  await d.openDevices();
  await noViolations(d, 'devices');
  const other = await Device.launch('axe-other');
  await d.page.goto(await other.pairingLink());
  await expect(d.page.getByRole('button', { name: 'Join' })).toBeVisible();
  await noViolations(d, 'join dialog');
  await d.close();
  await other.close();
});

for (const scheme of ['light', 'dark'] as const) {
  test(`screenshots in the ${scheme} theme`, async () => {
    mkdirSync(SHOTS, { recursive: true });
    const d = await Device.launch(`shots-${scheme}`);
    await d.page.emulateMedia({ colorScheme: scheme });
    for (const text of ['Buy milk\nand bread', 'Flight QF1 departs 21:35 from gate 14', 'Notes: https://example.org/notes']) {
      await d.composer.fill(text);
      await d.composer.press('Enter');
    }
    await expect(d.history.getByRole('listitem')).toHaveCount(3);
    for (const [w, h] of [[390, 844], [1280, 800]]) {
      await d.page.setViewportSize({ width: w, height: h });
      await d.page.screenshot({ path: `${SHOTS}chat-${w}x${h}-${scheme}.png` });
      await d.openDevices();
      await d.page.screenshot({ path: `${SHOTS}devices-${w}x${h}-${scheme}.png` });
      await d.page.getByRole('button', { name: 'Devices' }).click();
    }
    await d.close();
  });
}
