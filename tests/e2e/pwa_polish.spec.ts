// Journey: the small things that make Ferry feel like a messenger: sharing photos and files
// into it from another app, a menu on each message (right-click, long press, keyboard), how
// long ago something was written, a join dialog that keeps the keyboard inside it, and the
// "Add to Home Screen" hint on iPhones.
import { test, expect, chromium } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM_ARGS, Device } from './device';

// The specs run from tests/e2e (see netns.sh).
const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

// A 1×1 PNG.
const PNG_1PX = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

async function noViolations(d: Device, what: string) {
  const result = await new AxeBuilder({ page: d.page }).analyze();
  const summary = result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  expect(summary, `axe violations in the ${what} view`).toEqual([]);
}

test('"Share → Ferry" with a photo and a file (POST) becomes a draft, sent once on Send', async () => {
  const d = await Device.launch('share-post');
  await d.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  // Another app shares through the manifest's share_target: a multipart POST to its action.
  const manifest = await (await d.page.request.get('/manifest.webmanifest')).json();
  expect(manifest.share_target).toMatchObject({ method: 'POST', enctype: 'multipart/form-data' });
  await d.page.evaluate((action) => {
    const form = document.createElement('form');
    form.id = 'share';
    form.method = 'post';
    form.enctype = 'multipart/form-data';
    form.action = action;
    form.innerHTML = `<input name="share_title" value="Beach day">
      <input name="share_text" value="Photos from Bondi">
      <input type="file" name="files" multiple id="share-files">
      <button type="submit">share now</button>`;
    document.body.append(form);
  }, manifest.share_target.action);
  await d.page.setInputFiles('#share-files', [
    { name: 'bondi.png', mimeType: 'image/png', buffer: PNG_1PX },
    { name: 'packing list.txt', mimeType: 'text/plain', buffer: Buffer.from('towel\nsunscreen\n') },
  ]);
  await d.page.getByRole('button', { name: 'share now' }).click();
  await d.ready();
  // A draft: in the composer and under "Files to send", nothing in the history yet.
  await expect(d.composer).toHaveValue('Beach day\nPhotos from Bondi');
  const drafts = d.page.getByRole('region', { name: 'Files to send' });
  await expect(drafts.getByRole('listitem')).toHaveText([/bondi\.png/, /packing list\.txt/]);
  await expect(d.history.getByRole('listitem')).toHaveCount(0);
  expect(new URL(d.page.url()).search).toBe('');
  await d.page.getByRole('button', { name: 'Send', exact: true }).click();
  await expect(d.message('Photos from Bondi')).toContainText('Beach day');
  await expect(d.message('bondi.png')).toContainText('image/png');
  await expect(d.message('packing list.txt')).toContainText('text/plain');
  await expect(d.message('bondi.png').getByRole('img', { name: 'Preview of bondi.png' })).toBeVisible();
  await expect(drafts).toHaveCount(0);
  // Taken out of the worker's inbox once sent: a reload does not add or offer them again.
  await d.page.reload();
  await d.ready();
  await expect(d.message('bondi.png')).toBeVisible();
  await expect(d.history.getByRole('listitem')).toHaveCount(3);
  await expect(d.page.getByRole('region', { name: 'Files to send' })).toHaveCount(0);
  expect(await d.page.evaluate(() => caches.has('share-inbox'))).toBe(false);
  // The GET form (text only) is a draft too.
  await d.page.goto('/?share_text=just%20a%20note');
  await d.ready();
  await expect(d.composer).toHaveValue('just a note');
  await expect(d.message('just a note')).toHaveCount(0);
  await d.composer.press('Enter');
  await expect(d.message('just a note')).toHaveCount(1);
  await d.close();
});

test('a web page elsewhere cannot post into the history: what it shares waits as a draft', async () => {
  const d = await Device.launch('share-hostile');
  await d.page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  await d.send('mine');
  // 1. A link on some page navigates here with a query.
  await d.page.goto('/?share_text=' + encodeURIComponent('buy cheap watches at evil.example'));
  await d.ready();
  await expect(d.composer).toHaveValue('buy cheap watches at evil.example');
  // 2. A page POSTs a 5 MiB form to the share target (as a cross-site form could).
  const action = (await (await d.page.request.get('/manifest.webmanifest')).json()).share_target.action;
  await d.page.evaluate((action) => {
    const form = document.createElement('form');
    form.method = 'post';
    form.enctype = 'multipart/form-data';
    form.action = action;
    form.innerHTML = '<input type="file" name="files" id="evil-file"><button type="submit">go</button>';
    document.body.append(form);
  }, action);
  await d.page.setInputFiles('#evil-file', [
    { name: 'payload.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(5 * 1024 * 1024, 7) },
  ]);
  await d.page.getByRole('button', { name: 'go' }).click();
  await d.ready();
  const drafts = d.page.getByRole('region', { name: 'Files to send' });
  await expect(drafts.getByRole('listitem')).toHaveText([/payload\.bin · 5\.0 MB/]);
  // Nothing was added: only what the person wrote.
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  // The person decides: the files go away, the text is cleared by hand.
  await drafts.getByRole('button', { name: "Don't send these files" }).click();
  await expect(drafts).toHaveCount(0);
  await d.page.reload();
  await d.ready();
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await expect(d.page.getByRole('region', { name: 'Files to send' })).toHaveCount(0);
  await d.close();
});

test('each message has a menu: right-click, keyboard and long press; Copy, Edit, Delete', async () => {
  const d = await Device.launch('menu');
  await d.context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await d.send('the door code is 4711');
  const msg = d.message('the door code is 4711');
  // One quiet line: the time (with its machine-readable datetime) and a tick.
  await expect(msg.locator('time')).toHaveAttribute('datetime', /^\d{4}-\d\d-\d\d \d\d:\d\d$/);
  await expect(msg.locator('.meta time')).toHaveText(/^\d\d:\d\d$/);
  // Alone, the message goes to the mailbox at once; its row is re-rendered when its delivery
  // state changes, so open the menu once it has settled.
  await expect(msg).toContainText('waiting in the mailbox');

  // Right-click → Copy.
  await msg.locator('.text').click({ button: 'right' });
  const menu = d.page.getByRole('menu', { name: 'Message actions' });
  await expect(menu).toBeVisible();
  await expect(menu.getByRole('menuitem')).toHaveText(['Copy', 'Edit', 'Pin', 'Delete']);
  await expect(menu.getByRole('menuitem', { name: 'Copy' })).toBeFocused();
  await d.page.keyboard.press('ArrowDown');
  await expect(menu.getByRole('menuitem', { name: 'Edit' })).toBeFocused();
  await d.page.keyboard.press('ArrowUp');
  await d.page.keyboard.press('Enter');
  await expect(menu).toHaveCount(0);
  await expect(d.page.getByText('Copied', { exact: true })).toBeVisible();
  expect(await d.page.evaluate(() => navigator.clipboard.readText())).toBe('the door code is 4711');
  await expect(msg).toBeFocused();

  // Keyboard: Shift+F10 on the focused message; Escape closes and gives focus back.
  await d.page.keyboard.press('Shift+F10');
  await expect(menu.getByRole('menuitem', { name: 'Copy' })).toBeFocused();
  await d.page.keyboard.press('Escape');
  await expect(menu).toHaveCount(0);
  await expect(msg).toBeFocused();

  // ContextMenu key → Edit.
  await d.page.keyboard.press('ContextMenu');
  await menu.getByRole('menuitem', { name: 'Edit' }).click();
  const box = d.history.getByRole('textbox', { name: 'Edit message' });
  await expect(box).toBeFocused();
  await box.fill('the door code is 4712');
  await box.press('Enter');
  await expect(d.message('the door code is 4712')).toBeVisible();

  // Long press (touch) → Delete: the row goes at once, with Undo.
  await d.send('a note to throw away');
  const doomed = d.message('a note to throw away');
  await expect(doomed).toContainText('waiting in the mailbox');
  const at = (await doomed.locator('.text').boundingBox())!;
  await doomed.locator('.text').dispatchEvent('pointerdown', {
    pointerType: 'touch', clientX: at.x + 5, clientY: at.y + 5, isPrimary: true, bubbles: true,
  });
  await expect(menu).toBeVisible();
  await doomed.locator('.text').dispatchEvent('pointerup', { pointerType: 'touch', bubbles: true });
  await d.page.keyboard.press('End');
  await expect(menu.getByRole('menuitem', { name: 'Delete' })).toBeFocused();
  await d.page.keyboard.press('Enter');
  await expect(doomed).toHaveCount(0);
  await expect(d.page.getByRole('button', { name: 'Undo' })).toBeVisible();

  // The hover buttons work alongside the menu; a second delete writes the first at once.
  await d.message('the door code is 4712').getByRole('button', { name: 'Delete message' }).click();
  await expect(d.history.getByRole('listitem')).toHaveCount(0);
  await expect(d.history).toHaveAttribute('data-count', '1');
  await expect(d.history).toHaveAttribute('data-count', '0', { timeout: 10_000 });
  await d.close();
});

test('a file item offers "Save file"; the chat with an open menu has no axe violations', async () => {
  const d = await Device.launch('menu-axe');
  const dir = mkdtempSync(join(tmpdir(), 'ferry-menu-files-'));
  writeFileSync(join(dir, 'ticket.pdf'), Buffer.from('%PDF-1.4 not really a pdf\n'));
  await d.attach([join(dir, 'ticket.pdf')]);
  const item = d.message('ticket.pdf');
  await expect(item.getByRole('link', { name: 'Save ticket.pdf' })).toBeVisible();
  await d.send('boarding at 21:05');
  await item.locator('.file-meta').click({ button: 'right' });
  const menu = d.page.getByRole('menu', { name: 'Message actions' });
  await expect(menu.getByRole('menuitem')).toHaveText(['Add caption', 'Pin', 'Save file', 'Delete']);
  await noViolations(d, 'chat with a file and an open menu');
  mkdirSync(SHOTS, { recursive: true });
  await d.page.screenshot({ path: `${SHOTS}menu-1280x720-light.png` });
  const download = d.page.waitForEvent('download');
  await menu.getByRole('menuitem', { name: 'Save file' }).click();
  expect((await download).suggestedFilename()).toBe('ticket.pdf');
  await expect(menu).toHaveCount(0);
  // A click outside closes the menu too.
  await d.message('boarding at 21:05').locator('.text').click({ button: 'right' });
  await expect(menu).toBeVisible();
  await d.page.mouse.click(5, 5);
  await expect(menu).toHaveCount(0);

  // A file gets a caption from its menu: shown under it, kept after a reload, found by search
  // (as is the file by its name), and edited the same way.
  await item.locator('.file-meta').click({ button: 'right' });
  await menu.getByRole('menuitem', { name: 'Add caption' }).click();
  const caption = item.getByRole('textbox', { name: 'Caption' });
  await expect(caption).toBeFocused();
  await caption.fill('return flight, seat 14C');
  await caption.press('Enter');
  await expect(item.locator('.text')).toHaveText('return flight, seat 14C');
  await d.page.reload();
  await d.ready();
  await expect(item.locator('.text')).toHaveText('return flight, seat 14C');
  const search = d.page.getByRole('searchbox', { name: 'Search messages' });
  await search.fill('seat 14c');
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await expect(d.history.getByRole('listitem').first()).toContainText('ticket.pdf');
  await search.fill('TICKET');
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await search.fill('');
  await item.locator('.file-meta').click({ button: 'right' });
  await expect(menu.getByRole('menuitem')).toHaveText(['Copy', 'Edit caption', 'Pin', 'Save file', 'Delete']);
  await menu.getByRole('menuitem', { name: 'Edit caption' }).click();
  await item.getByRole('textbox', { name: 'Caption' }).fill('return flight, seat 15A');
  await item.getByRole('textbox', { name: 'Caption' }).press('Enter');
  await expect(item.locator('.text')).toHaveText('return flight, seat 15A');
  await noViolations(d, 'a file with a caption');
  await d.close();
});

test('the join dialog keeps Tab inside, Escape cancels and focus goes back', async () => {
  const other = await Device.launch('dialog-other');
  const link = await other.pairingLink();
  const d = await Device.launch('dialog');
  await d.openDevices();
  await d.page.getByRole('textbox', { name: 'Join another space with its link' }).fill(link);
  const use = d.page.getByRole('button', { name: 'Use link' });
  await use.click();
  const dialog = d.page.getByRole('dialog');
  const join_ = dialog.getByRole('button', { name: 'Join' });
  const cancel = dialog.getByRole('button', { name: 'Cancel' });
  await expect(join_).toBeFocused();
  await d.page.keyboard.press('Tab');
  await expect(cancel).toBeFocused();
  await d.page.keyboard.press('Tab');
  await expect(join_).toBeFocused();
  await d.page.keyboard.press('Shift+Tab');
  await expect(cancel).toBeFocused();
  await d.page.keyboard.press('Escape');
  await expect(dialog).toHaveCount(0);
  await expect(use).toBeFocused();
  await d.close();
  await other.close();
});

test('on an iPhone, Safari shows how to add Ferry to the Home Screen, until dismissed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-iphone-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
    baseURL: process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080',
    userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
    viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto('/');
  const hint = page.getByText('Install: tap Share');
  await expect(hint).toContainText('Add to Home Screen');
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}ios-hint-390x844-light.png` });
  await page.getByRole('button', { name: 'Got it' }).click();
  await expect(hint).toHaveCount(0);
  await page.reload();
  await expect(page.getByRole('textbox', { name: 'Message' })).toBeEnabled();
  await expect(hint).toHaveCount(0);
  await context.close();

  const desktop = await Device.launch('no-hint');
  await expect(desktop.page.getByText('Install: tap Share')).toHaveCount(0);
  await desktop.close();
});
