// Journey: a shopping list as tasks. Written on the laptop, checked off on the phone: the
// laptop shows it checked, also after a reload, and unchecking comes back the other way.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { resolve } from 'node:path';
import { Device } from './device';

const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

test('a task checked on one device is checked on the other, also after a reload; filters show tasks, links, files', async () => {
  const laptop = await Device.launch('tasks-laptop');
  const phone = await Device.launch('tasks-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');

  // New task → the textbox "Task"; Enter adds one and keeps the box for the next.
  await laptop.page.getByRole('button', { name: 'New task' }).click();
  const box = laptop.page.getByRole('textbox', { name: 'Task' });
  await expect(box).toBeFocused();
  await box.fill('buy milk');
  await box.press('Enter');
  await expect(box).toHaveValue('');
  await box.fill('call the plumber');
  await box.press('Enter');
  await box.press('Escape');
  await expect(box).toHaveCount(0);
  await expect(laptop.composer).toBeFocused();

  const milkOnPhone = phone.page.getByRole('checkbox', { name: 'buy milk' });
  await expect(milkOnPhone).not.toBeChecked();
  await expect(phone.page.getByRole('checkbox', { name: 'call the plumber' })).not.toBeChecked();
  await milkOnPhone.check();
  const milkOnLaptop = laptop.page.getByRole('checkbox', { name: 'buy milk' });
  await expect(milkOnLaptop).toBeChecked();
  await expect(laptop.page.getByRole('checkbox', { name: 'call the plumber' })).not.toBeChecked();
  await laptop.page.screenshot({ path: `${SHOTS}tasks-1280x720.png` });
  // The task list, the open Task box and the filters have no axe violations (WCAG AA).
  await laptop.page.getByRole('button', { name: 'New task' }).click();
  const axe = await new AxeBuilder({ page: laptop.page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  expect(axe.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(', ')}`)).toEqual([]);
  await laptop.page.getByRole('textbox', { name: 'Task' }).press('Escape');

  // Filters: Tasks lists the two tasks (from the whole history), Links the text with a link.
  await laptop.send('read later https://example.org/article');
  await laptop.send('an ordinary note');
  const filters = laptop.page.getByRole('group', { name: 'Show' });
  await filters.getByRole('button', { name: 'Tasks', exact: true }).click();
  await expect(filters.getByRole('button', { name: 'Tasks', exact: true })).toHaveAttribute('aria-pressed', 'true');
  await expect(laptop.history.getByRole('listitem')).toHaveCount(2);
  await expect(laptop.page.getByRole('checkbox', { name: 'call the plumber' })).toBeVisible();
  await filters.getByRole('button', { name: 'Links', exact: true }).click();
  await expect(laptop.history.getByRole('listitem')).toHaveCount(1);
  await expect(laptop.message('read later https://example.org/article')).toBeVisible();
  await filters.getByRole('button', { name: 'Files', exact: true }).click();
  await expect(laptop.history.getByRole('listitem')).toHaveCount(0);
  await filters.getByRole('button', { name: 'All', exact: true }).click();
  await expect(laptop.history.getByRole('listitem')).toHaveCount(4);

  await laptop.page.reload();
  await laptop.ready();
  await expect(laptop.page.getByRole('checkbox', { name: 'buy milk' })).toBeChecked();
  await laptop.page.getByRole('checkbox', { name: 'buy milk' }).uncheck();
  await expect(milkOnPhone).not.toBeChecked();
  await phone.page.reload();
  await phone.ready();
  await expect(phone.page.getByRole('checkbox', { name: 'buy milk' })).not.toBeChecked();
  await laptop.close();
  await phone.close();
});

test('the installed app\'s "New task" shortcut opens the Task box, once', async () => {
  const d = await Device.launch('task-shortcut');
  const manifest = await (await d.page.request.get('/manifest.webmanifest')).json();
  const shortcut = manifest.shortcuts.find((s: { name: string }) => s.name === 'New task');
  expect(shortcut.url).toBe('./?new=task');
  await d.page.goto(new URL(shortcut.url, d.page.url()).href);
  await d.ready();
  const box = d.page.getByRole('textbox', { name: 'Task' });
  await expect(box).toBeFocused();
  expect(new URL(d.page.url()).search).toBe('');
  await box.fill('water the plants');
  await box.press('Enter');
  await expect(d.page.getByRole('checkbox', { name: 'water the plants' })).not.toBeChecked();
  // A reload does not open it again.
  await d.page.reload();
  await d.ready();
  await expect(d.page.getByRole('textbox', { name: 'Task' })).toHaveCount(0);
  await d.close();
});
