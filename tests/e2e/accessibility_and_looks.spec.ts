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
  await d.page.getByText('Advanced', { exact: true }).click();
  await expect(d.page.getByRole('textbox', { name: 'STUN or TURN server' })).toBeVisible();
  await noViolations(d, 'devices, advanced');
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
      // Devices: a side panel beside the chat on a computer, the whole screen on a phone;
      // its heading has the focus, and Escape or "Back to chat" closes it, focus back on
      // the toggle.
      const toggle = d.page.getByRole('button', { name: 'Devices' });
      await d.openDevices();
      const screen = d.page.getByRole('region', { name: 'Devices' });
      await expect(screen.getByRole('heading', { name: 'Devices' })).toBeFocused();
      const box = (await screen.boundingBox())!;
      if (w < 900) expect(box.width).toBe(w);
      else {
        expect(box.width).toBeLessThan(w / 2);
        // The chat stays usable beside it.
        await expect(d.composer).toBeInViewport();
        await expect(d.message('Buy milk')).toBeInViewport();
      }
      await d.page.screenshot({ path: `${SHOTS}devices-${w}x${h}-${scheme}.png` });
      if (w < 900) await screen.getByRole('button', { name: 'Back to chat' }).click();
      else await d.page.keyboard.press('Escape');
      await expect(screen).toHaveCount(0);
      await expect(toggle).toBeFocused();
      await expect(toggle).toHaveAttribute('aria-expanded', 'false');
    }
    await d.close();
  });
}
