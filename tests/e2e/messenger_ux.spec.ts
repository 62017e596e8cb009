// Journey: using Ferry like a messenger: links open, days are labelled, search finds one
// item among a thousand, "Share → Ferry" from another app lands in the history.
import { test, expect } from '@playwright/test';
import { Device } from './device';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';

// Screenshots of each state, to look at (the specs run from tests/e2e).
const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';
mkdirSync(SHOTS, { recursive: true });

test('search finds an item among 1,000, lists matches with dates and jumps to one in context; links are clickable', async () => {
  const d = await Device.launch('search');
  await d.typeMany(1000, (i) => (i === 617 ? 'the wifi password is Zebra-Crossing-42' : `filler note ${i}`));
  // A row by its whole text: "filler note 6" followed by its time "16:13" reads "filler note
  // 616:13", so a substring match would find the wrong row between 16:00 and 16:59.
  const note = (n: number) => d.history.getByRole('listitem')
    .filter({ has: d.page.locator('.text', { hasText: new RegExp(`^filler note ${n}$`) }) });
  await expect(d.history.getByRole('listitem')).toHaveCount(1000);
  await expect(d.page.getByRole('separator', { name: 'Today' })).toHaveCount(1);
  await d.page.getByRole('searchbox', { name: 'Search messages' }).fill('zebra');
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await expect(d.page.getByText('1 message matches')).toBeVisible();
  await expect(d.history.locator('mark')).toHaveText('Zebra');
  // Each match carries its date.
  await expect(d.message('Zebra').locator('time')).toHaveText(/^\d{4}-\d\d-\d\d \d\d:\d\d$/);
  // Choosing it shows it in context: its neighbours around it, scrolled to, focused, marked.
  await d.message('Zebra').click();
  const hit = d.message('Zebra');
  await expect(d.history.getByRole('listitem')).toHaveCount(1000);
  await expect(hit).toBeFocused();
  await expect(hit).toHaveClass(/jumped/);
  await expect(hit).toBeInViewport();
  await expect(note(616)).toBeInViewport();
  await expect(note(618)).toBeInViewport();
  await expect(d.page.getByRole('group', { name: 'Search matches' })).toContainText('Match 1 of 1');
  await d.page.screenshot({ path: `${SHOTS}search-in-context-1280x720.png` });
  // ↑/↓ in the box (or Previous/Next) move between matches, here among the ten "note 61…" ones.
  const box = d.page.getByRole('searchbox', { name: 'Search messages' });
  await box.fill('note 61');
  await expect(d.page.getByText('10 messages match')).toBeVisible();
  await box.press('Enter');
  await expect(note(619)).toBeFocused();
  await expect(d.page.getByRole('group', { name: 'Search matches' })).toContainText('Match 10 of 10');
  await expect(d.page.getByRole('button', { name: 'Next match' })).toBeDisabled();
  await d.page.getByRole('button', { name: 'Previous match' }).click();
  await expect(note(618)).toBeFocused();
  await box.focus();
  await box.press('ArrowUp');
  await expect(note(616)).toHaveClass(/jumped/);
  await box.press('ArrowDown');
  await expect(note(618)).toHaveClass(/jumped/);
  await d.page.getByRole('button', { name: 'Show all matches' }).click();
  await expect(d.history.getByRole('listitem')).toHaveCount(10);
  // Escape clears the search.
  await box.press('Escape');
  await expect(box).toHaveValue('');
  await expect(d.history.getByRole('listitem')).toHaveCount(1000);

  await d.send('docs at https://example.org/ferry/guide.');
  const link = d.message('docs at').getByRole('link', { name: 'https://example.org/ferry/guide' });
  await expect(link).toHaveAttribute('href', 'https://example.org/ferry/guide');
  await expect(link).toHaveAttribute('rel', /noopener/);
  await d.close();
});

test('"Share → Ferry" from another app becomes a draft, sent once', async () => {
  const d = await Device.launch('share');
  await d.page.goto('/?share_title=Recipe&share_text=Pancakes%20for%20Sunday&share_url=https%3A%2F%2Fexample.org%2Fpancakes');
  await d.ready();
  await expect(d.composer).toHaveValue('Recipe\nPancakes for Sunday\nhttps://example.org/pancakes');
  expect(new URL(d.page.url()).search).toBe('');
  await expect(d.message('Pancakes for Sunday')).toHaveCount(0);
  await d.composer.press('Enter');
  await expect(d.message('Pancakes for Sunday')).toContainText('https://example.org/pancakes');
  await d.page.reload();
  await d.ready();
  await expect(d.message('Pancakes for Sunday')).toHaveCount(1);
  await d.close();
});

test('keyboard: the composer has the focus, grows, ↑ edits the last message, Escape cancels, delete then Undo, focus comes back', async () => {
  const d = await Device.launch('composer-keys');
  // Ready to write at once.
  await expect(d.composer).toBeFocused();
  // "Attach files" is the one control for files (the picker behind it is not a second one).
  await expect(d.page.getByRole('button', { name: 'Attach files' })).toBeVisible();
  await expect(d.page.getByRole('button', { name: 'Files to send' })).toHaveCount(0);
  const oneLine = (await d.composer.boundingBox())!.height;
  await d.page.keyboard.type('first line');
  await d.page.keyboard.press('Shift+Enter');
  await d.page.keyboard.type('second line');
  await expect(d.composer).toHaveValue('first line\nsecond line');
  // The box grows with its text…
  await expect.poll(async () => (await d.composer.boundingBox())!.height).toBeGreaterThan(oneLine + 10);
  // …to about six lines, then scrolls.
  await d.composer.fill(Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n'));
  const tall = (await d.composer.boundingBox())!.height;
  expect(tall).toBeLessThan(oneLine * 6);
  expect(await d.composer.evaluate((el) => el.scrollHeight > el.clientHeight)).toBe(true);
  await d.composer.fill('first line\nsecond line');
  await d.page.keyboard.press('Enter');
  await expect(d.message('first line')).toContainText('second line');
  await expect(d.composer).toHaveValue('');
  await expect(d.composer).toBeFocused();
  await expect.poll(async () => (await d.composer.boundingBox())!.height).toBeLessThan(oneLine + 2);

  // ↑ in the empty box: the last message, in its edit box, with the focus there.
  const edit = d.page.getByRole('textbox', { name: 'Edit message' });
  await d.page.keyboard.press('ArrowUp');
  await expect(edit).toBeFocused();
  await expect(edit).toHaveValue('first line\nsecond line');
  await d.page.keyboard.type(' changed');
  // Escape cancels: nothing saved, the box closes, the focus is back in the composer.
  await d.page.keyboard.press('Escape');
  await expect(edit).toHaveCount(0);
  await expect(d.composer).toBeFocused();
  await expect(d.message('first line')).not.toContainText('changed');
  // Again, and Enter saves.
  await d.page.keyboard.press('ArrowUp');
  await expect(edit).toHaveValue('first line\nsecond line');
  await edit.fill('edited with the keyboard');
  await d.page.keyboard.press('Enter');
  await expect(d.message('edited with the keyboard')).toContainText('edited');
  await expect(d.composer).toBeFocused();
  // The bubble's Edit button puts the focus in the box too; Cancel brings it back.
  await d.message('edited with the keyboard').getByRole('button', { name: 'Edit message' }).click();
  await expect(edit).toBeFocused();
  await d.page.getByRole('button', { name: 'Cancel' }).click();
  await expect(d.composer).toBeFocused();
  // An edit in progress survives its row's delivery wording changing (once the outbox
  // reaches the mailbox) while keys are typed: the box keeps the focus and every key.
  await d.send('typed while the row changes');
  await d.page.keyboard.press('ArrowUp');
  await d.page.keyboard.type(' and more', { delay: 50 });
  const row = d.history.getByRole('listitem').last();
  await expect(row).toContainText('waiting in the mailbox', { timeout: 20_000 });
  await expect(edit).toBeFocused();
  await expect(edit).toHaveValue('typed while the row changes and more');
  await d.page.keyboard.press('Enter');
  await expect(d.message('typed while the row changes and more')).toBeVisible();
  // The history is one Tab stop (roving tabindex): Shift+Tab from the composer reaches the
  // newest row, ↑/↓ move between rows, and Tab comes back to the row last focused.
  const newest = d.message('typed while the row changes and more');
  const older = d.message('edited with the keyboard');
  await d.composer.focus();
  await d.page.keyboard.press('Shift+Tab');
  await expect(newest).toBeFocused();
  await d.page.keyboard.press('ArrowUp');
  await expect(older).toBeFocused();
  await d.page.keyboard.press('ArrowDown');
  await expect(newest).toBeFocused();
  await d.page.keyboard.press('Home');
  await expect(older).toBeFocused();
  await d.page.keyboard.press('Shift+Tab');
  await expect(older).not.toBeFocused();
  expect(await d.history.evaluate((h) => h.contains(document.activeElement))).toBe(false);
  await d.page.keyboard.press('Tab');
  await expect(older).toBeFocused();
  // Delete from the keyboard (the row's menu), then Undo: the row goes at once and the
  // focus is back in the composer; Undo (one Shift+Tab away) brings the message back.
  const kept = d.message('edited with the keyboard');
  await kept.focus();
  await d.page.keyboard.press('Shift+F10');
  const menu = d.page.getByRole('menu', { name: 'Message actions' });
  await expect(menu).toBeVisible();
  await d.page.keyboard.press('End');
  await expect(menu.getByRole('menuitem', { name: 'Delete' })).toBeFocused();
  await d.page.keyboard.press('Enter');
  await expect(kept).toHaveCount(0);
  await expect(d.composer).toBeFocused();
  await d.page.screenshot({ path: `${SHOTS}undo-delete-1280x720.png` });
  const undo = d.page.getByRole('button', { name: 'Undo' });
  await expect(undo).toBeVisible();
  await expect(d.page.getByText('Message deleted')).toBeVisible();
  await d.page.keyboard.press('Shift+Tab');
  await expect(undo).toBeFocused();
  await d.page.keyboard.press('Enter');
  await expect(kept).toBeVisible();
  await expect(undo).toHaveCount(0);
  await expect(d.composer).toBeFocused();
  // Undone for good: past the undo time and after a reload it is still there.
  await d.page.waitForTimeout(6_000);
  await d.page.reload();
  await expect(d.message('edited with the keyboard')).toBeVisible();
  // Without Undo the delete is written after 5 s and survives a reload.
  const count = Number(await d.history.getAttribute('data-count'));
  await d.message('edited with the keyboard').getByRole('button', { name: 'Delete message' }).click();
  await expect(d.message('edited with the keyboard')).toHaveCount(0);
  await expect(d.history).toHaveAttribute('data-count', String(count - 1), { timeout: 15_000 });
  await d.page.reload();
  await expect(d.message('typed while the row changes and more')).toBeVisible();
  await expect(d.message('edited with the keyboard')).toHaveCount(0);
  await d.close();
});

test('touch: Enter starts a new line, the Send button sends, a long press opens the menu beside the message and the lift keeps it', async () => {
  const d = await Device.launch('composer-touch', '/', { touch: true });
  // No keyboard pops up by itself on a phone.
  await expect(d.composer).not.toBeFocused();
  await expect(d.composer).toHaveAttribute('enterkeyhint', 'enter');
  await d.composer.tap();
  await d.page.keyboard.type('milk');
  await d.page.keyboard.press('Enter');
  await d.page.keyboard.type('eggs');
  await expect(d.composer).toHaveValue('milk\neggs');
  await expect(d.history.getByRole('listitem')).toHaveCount(0);
  await d.page.getByRole('button', { name: 'Send', exact: true }).tap();
  await expect(d.message('milk')).toContainText('eggs');
  await expect(d.composer).toHaveValue('');
  // Every visible control on a phone is at least 44×44 px (the chat and Devices).
  const small = async () => d.page.evaluate(() => [...document.querySelectorAll('button, input, summary, a')]
    .filter((e) => (e as HTMLElement).offsetParent !== null && !e.closest('.item .text, .visually-hidden') && !e.classList.contains('visually-hidden'))
    // A checkbox's target is its whole label.
    .map((e) => ({ e, r: (e.matches('[type=checkbox]') ? e.closest('label') ?? e : e).getBoundingClientRect() }))
    .filter(({ r }) => r.width > 0 && (r.width < 44 || r.height < 44))
    .map(({ e, r }) => `${e.tagName} "${(e.getAttribute('aria-label') ?? e.textContent ?? '').trim()}" ${Math.round(r.width)}×${Math.round(r.height)}`));
  expect(await small(), 'controls under 44 px in the chat').toEqual([]);
  await d.openDevices();
  expect(await small(), 'controls under 44 px in Devices').toEqual([]);
  await d.openAdvanced();
  expect(await small(), 'controls under 44 px in Devices → Advanced').toEqual([]);
  await d.page.getByRole('button', { name: 'Back to chat' }).tap();
  // No hover on touch: Edit and Delete are in the menu (long press), not on the bubble.
  await expect(d.message('milk').getByRole('button', { name: 'Edit message' })).toBeHidden();
  await d.page.screenshot({ path: `${SHOTS}chat-touch-390x844.png` });

  // A real long press (CDP touch events, held 800 ms): the menu opens beside the message,
  // the lift never closes it, and a tap elsewhere does. Five times over.
  const cdp = await d.context.newCDPSession(d.page);
  const menu = d.page.getByRole('menu', { name: 'Message actions' });
  const row = d.message('milk');
  for (let round = 0; round < 5; round++) {
    const t = (await row.locator('.text').boundingBox())!;
    const at = { x: Math.round(t.x + 12), y: Math.round(t.y + t.height / 2) };
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at] });
    await d.page.waitForTimeout(800);
    await expect(menu).toBeVisible();
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    await d.page.waitForTimeout(400);
    await expect(menu, `round ${round}: the lift left the menu open`).toBeVisible();
    const m = (await menu.boundingBox())!;
    const r = (await row.boundingBox())!;
    expect(m.y >= r.y + r.height - 1 || m.y + m.height <= r.y + 1, 'the menu leaves the message visible').toBe(true);
    if (round === 0) await d.page.screenshot({ path: `${SHOTS}long-press-menu-390x844.png` });
    const away = { x: 195, y: Math.round(m.y > 300 ? 150 : 700) };
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [away] });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    await expect(menu).toBeHidden();
  }
  await d.close();
});

test('a rename shows on every message at once, here and on the other device', async () => {
  const laptop = await Device.launch('rename-laptop');
  const phone = await Device.launch('rename-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
  await phone.send('written before the rename');
  await expect(laptop.message('written before the rename')).toBeVisible();
  // Calm bubbles: equal default names are numbered by join order, the author is named only
  // where it changes, and the phone's own row ticks twice once the laptop has it.
  await expect(laptop.message('written before the rename').locator('.author')).toHaveText('Chrome on Linux 2');
  await phone.send('and a second one');
  await expect(laptop.message('and a second one')).toBeVisible();
  await expect(laptop.message('and a second one').locator('.author')).toHaveCount(0);
  await expect(phone.message('and a second one').locator('.tick')).toHaveAttribute('data-tick', 'all', { timeout: 15_000 });
  await expect(phone.message('and a second one').locator('.tick')).toHaveAttribute('title', 'on Chrome on Linux');
  await phone.openDevices();
  await phone.page.getByRole('textbox', { name: "This device's name" }).fill('Bus phone');
  await phone.page.getByRole('button', { name: 'Rename' }).click();
  // No reload on either side: the message already says the new name.
  await expect(phone.message('written before the rename')).toContainText('Bus phone');
  await expect(laptop.message('written before the rename')).toContainText('Bus phone', { timeout: 15_000 });
  await laptop.close();
  await phone.close();
});
