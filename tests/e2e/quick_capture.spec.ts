// Journey: quick capture. Ctrl+Shift+V sends what the clipboard holds as one item: a text as
// a message, a copied image as a file item, wherever the focus is.
import { test, expect } from '@playwright/test';
import { Device } from './device';

test('Ctrl+Shift+V sends the clipboard\'s text or image as one item', async () => {
  const d = await Device.launch('quick-capture');
  await d.context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await d.page.evaluate(() => navigator.clipboard.writeText('copied from another app'));
  await d.page.keyboard.press('Control+Shift+V');
  await expect(d.message('copied from another app')).toBeVisible();
  // Sent as an item, not pasted into the Message box.
  await expect(d.composer).toHaveValue('');

  // A copied image (a screenshot, say) becomes a file item.
  await d.page.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 8;
    canvas.height = 8;
    const ctx = canvas.getContext('2d')!;
    ctx.fillStyle = '#0f6e8c';
    ctx.fillRect(0, 0, 8, 8);
    const blob = await new Promise<Blob>((ok) => canvas.toBlob((b) => ok(b!), 'image/png'));
    await navigator.clipboard.write([new ClipboardItem({ 'image/png': blob })]);
  });
  await d.history.click({ position: { x: 5, y: 5 } });
  await d.page.keyboard.press('Control+Shift+V');
  await expect(d.history.getByRole('listitem').filter({ hasText: /pasted-.*\.png/ })).toHaveCount(1);
  await expect(d.history.getByRole('listitem')).toHaveCount(2);

  // The same from the composer's button (the menu entry for the shortcut).
  await d.page.evaluate(() => navigator.clipboard.writeText('pasted by the button'));
  await d.page.getByRole('button', { name: 'Paste as message' }).click();
  await expect(d.message('pasted by the button')).toBeVisible();
  await expect(d.history.getByRole('listitem')).toHaveCount(3);
  await d.close();
});
