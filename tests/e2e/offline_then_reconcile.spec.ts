// Journey: devices that are never online at the same moment still end up with the same
// history, with edits and deletes applied everywhere; a tab killed right after sending keeps
// what it showed.
import { test, expect } from '@playwright/test';
import { Device } from './device';

test('write, edit and delete while apart; both reconcile when they meet', async () => {
  // 1. Paired and in sync.
  const laptop = await Device.launch('laptop');
  const phone = await Device.launch('phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  await laptop.send('shopping list: milk');
  await laptop.send('to be deleted');
  await expect(phone.message('to be deleted')).toBeVisible();

  // 2. The phone is closed. The laptop writes, edits and deletes alone.
  await phone.context.close();
  await expect(laptop.status).toHaveText('No other devices connected');
  await laptop.send('written while the phone was off');
  // With the mailbox on (as here), it is on its way at once: honest about where it is.
  await expect(laptop.message('written while the phone was off')).toContainText('waiting in the mailbox');
  await expect(laptop.page.getByText(/^Last synced \d{4}-\d\d-\d\d \d\d:\d\d$/)).toBeVisible();
  const item = laptop.message('shopping list: milk');
  await item.getByRole('button', { name: 'Edit message' }).click();
  const editor = laptop.page.getByRole('textbox', { name: 'Edit message' });
  await editor.fill('shopping list: milk, eggs');
  await editor.press('Enter');
  await expect(laptop.message('shopping list: milk, eggs')).toContainText('edited');
  const doomed = laptop.message('to be deleted');
  const before = Number(await laptop.history.getAttribute('data-count'));
  await doomed.getByRole('button', { name: 'Delete message' }).click();
  await expect(laptop.message('to be deleted')).toHaveCount(0);
  // Undo is offered for 5 s; then the delete is stored (the history's count drops).
  await expect(laptop.page.getByRole('button', { name: 'Undo' })).toBeVisible();
  await expect(laptop.history).toHaveAttribute('data-count', String(before - 1), { timeout: 15_000 });
  await expect(laptop.page.getByRole('button', { name: 'Undo' })).toHaveCount(0);

  // 3. The laptop is closed; the phone comes back alone and writes.
  await laptop.context.close();
  await phone.restartBrowser();
  await expect(phone.status).toHaveText('No other devices connected');
  await phone.send('written while the laptop was off');

  // 4. Both are open again: everything arrives both ways, edits and deletes included.
  await laptop.restartBrowser();
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(laptop.message('written while the laptop was off')).toBeVisible();
  await expect(phone.message('written while the phone was off')).toBeVisible();
  await expect(laptop.message('written while the phone was off')).not.toContainText('not yet on other devices');
  await expect(phone.message('written while the laptop was off')).not.toContainText('not yet on other devices');
  await expect(phone.message('shopping list: milk, eggs')).toBeVisible();
  await expect(phone.message('to be deleted')).toHaveCount(0);
  expect(await phone.texts()).toEqual(await laptop.texts());
  expect(await phone.texts()).toHaveLength(3);
  await laptop.close();
  await phone.close();
});

test('a tab killed right after a message shows as sent still has it after reopening', async () => {
  const device = await Device.launch('crashy');
  await device.composer.fill('sent just before the crash');
  await device.composer.press('Enter');
  await expect(device.message('sent just before the crash')).toBeVisible();
  // No goodbye: the browser goes away at once.
  await device.context.close();
  await device.restartBrowser();
  await expect(device.message('sent just before the crash')).toBeVisible();
  await device.close();
});

test('a reload in the middle of syncing 1,000 items converges afterwards', async () => {
  const big = await Device.launch('big');
  // 1,000 texts typed in one go (Enter after each), as fast as the page takes them.
  await big.typeMany(1000, (i) => `bulk item ${i}`);
  await expect(big.history.getByRole('listitem')).toHaveCount(1000, { timeout: 120_000 });
  const fresh = await Device.launch('fresh');
  await fresh.join(await big.pairingLink());
  // Reload while the history is streaming in.
  await fresh.page.reload();
  await fresh.ready();
  await expect(fresh.history.getByRole('listitem')).toHaveCount(1000, { timeout: 60_000 });
  expect(await fresh.texts()).toEqual(await big.texts());
  await big.close();
  await fresh.close();
});
