// Journeys: notes. A note's body merges by character: written on the laptop, edited at its
// end on the laptop and at its start on the phone while they are never online together, both
// show both edits once they meet. An open editor shows the other device's typing live without
// moving the caret; a note's checklist checks everywhere; Notes and search find notes.
import { test, expect, type Locator } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { resolve } from 'node:path';
import { Device } from './device';

const SHOTS = resolve(process.cwd(), '../../target/e2e-results/screenshots') + '/';

/** The note editor of a device. */
function editor(d: Device): { dialog: Locator; title: Locator; text: Locator } {
  const dialog = d.page.getByRole('dialog', { name: /note/i });
  return {
    dialog,
    title: dialog.getByRole('textbox', { name: 'Note title' }),
    text: dialog.getByRole('textbox', { name: 'Note text' }),
  };
}

/** Opens the note titled `title` from the history. */
async function openNote(d: Device, title: string): Promise<void> {
  await d.message(title).getByRole('button', { name: 'Open note' }).click();
  await expect(editor(d).dialog).toBeVisible();
}

async function mailboxOff(d: Device): Promise<void> {
  await d.openAdvanced();
  const toggle = d.page.getByRole('checkbox', { name: /Use the encrypted mailbox/ });
  await toggle.uncheck();
  await expect(toggle).not.toBeChecked();
  await d.page.getByRole('button', { name: 'Devices' }).click();
}

test('a note edited at its end on one device and at its start on the other, apart, keeps both edits', async () => {
  test.setTimeout(150_000);
  const laptop = await Device.launch('notes-laptop');
  const phone = await Device.launch('notes-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');
  // The devices are never online together below: with no mailbox either, the two edits are
  // truly concurrent and only automerge's merge can keep both.
  await mailboxOff(laptop);
  await mailboxOff(phone);

  // 1. A note on the laptop reaches the phone.
  await laptop.page.getByRole('button', { name: 'New note' }).click();
  const l = editor(laptop);
  await expect(l.title).toBeFocused();
  await l.title.fill('Trip');
  await l.text.fill('pack\nbook train');
  await l.dialog.getByRole('button', { name: 'Save note' }).click();
  await expect(l.dialog).toHaveCount(0);
  await expect(laptop.composer).toBeFocused();
  await expect(phone.message('Trip')).toContainText('book train');

  // 2. The phone closes; the laptop edits the end of the note.
  await phone.context.close();
  await expect(laptop.status).toHaveText('No other devices connected');
  await openNote(laptop, 'Trip');
  await expect(l.text).toBeFocused();
  await laptop.page.keyboard.press('Control+End');
  await laptop.page.keyboard.type('\ncall hotel');
  await expect(l.text).toHaveValue('pack\nbook train\ncall hotel');
  // Escape closes the editor and keeps what was typed (it saves as it goes).
  await laptop.page.keyboard.press('Escape');
  await expect(l.dialog).toHaveCount(0);
  await expect(laptop.message('Trip').getByRole('button', { name: 'Open note' })).toBeFocused();

  // 3. The laptop closes; the phone comes back alone and edits the start.
  await laptop.context.close();
  await phone.restartBrowser();
  await expect(phone.status).toHaveText('No other devices connected');
  await openNote(phone, 'Trip');
  const p = editor(phone);
  await expect(p.text).toHaveValue('pack\nbook train');
  await phone.page.keyboard.press('Control+Home');
  await phone.page.keyboard.type('passport\n');
  await p.dialog.getByRole('button', { name: 'Save note' }).click();

  // 4. Both open again: both show both edits.
  await laptop.restartBrowser();
  await expect(laptop.status).toHaveText('1 device connected');
  const both = 'passport\npack\nbook train\ncall hotel';
  for (const d of [laptop, phone]) {
    await expect(d.message('Trip')).toContainText('passport');
    await openNote(d, 'Trip');
    await expect(editor(d).text).toHaveValue(both);
    await d.page.keyboard.press('Escape');
  }
  await laptop.close();
  await phone.close();
});

test('an open note shows the other device\'s typing live, the caret stays; checklists check everywhere; Notes and search find notes', async () => {
  test.setTimeout(150_000);
  const laptop = await Device.launch('live-note-laptop');
  const phone = await Device.launch('live-note-phone');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected');

  await laptop.page.getByRole('button', { name: 'New note' }).click();
  const l = editor(laptop);
  await l.title.fill('Groceries');
  await l.text.fill('milk\neggs');
  await expect(phone.message('Groceries')).toContainText('eggs');

  // The laptop keeps its editor open with the caret after "milk"; the phone types in front.
  await l.text.focus();
  await l.text.evaluate((t: HTMLTextAreaElement) => t.setSelectionRange(4, 4));
  await openNote(phone, 'Groceries');
  const p = editor(phone);
  await phone.page.keyboard.press('Control+Home');
  await phone.page.keyboard.type('oat ');
  await expect(l.text).toHaveValue('oat milk\neggs');
  await expect(l.text).toBeFocused();
  expect(await l.text.evaluate((t: HTMLTextAreaElement) => [t.selectionStart, t.selectionEnd])).toEqual([8, 8]);
  // What the laptop types now lands where its caret is, on both.
  await laptop.page.keyboard.type(' (2 l)');
  await expect(p.text).toHaveValue('oat milk (2 l)\neggs');
  await expect(l.text).toHaveValue('oat milk (2 l)\neggs');

  // A checklist: added on the phone, checked on the laptop, checked everywhere.
  await p.dialog.getByRole('button', { name: 'Add checklist item' }).click();
  await expect(p.text).toBeFocused();
  await phone.page.keyboard.type('bread');
  const breadOnLaptop = l.dialog.getByRole('checkbox', { name: 'bread' });
  await expect(breadOnLaptop).not.toBeChecked();
  await breadOnLaptop.check();
  await expect(p.dialog.getByRole('checkbox', { name: 'bread' })).toBeChecked();
  await expect(p.text).toHaveValue('oat milk (2 l)\neggs\n- [x] bread');
  await laptop.page.setViewportSize({ width: 1280, height: 800 });
  await laptop.page.screenshot({ path: `${SHOTS}note-editor-1280x800.png` });
  // The editor has no axe violations (WCAG AA).
  const axe = await new AxeBuilder({ page: laptop.page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  expect(axe.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(', ')}`)).toEqual([]);
  await l.dialog.getByRole('button', { name: 'Save note' }).click();
  await p.dialog.getByRole('button', { name: 'Save note' }).click();

  // In the history the note shows its checklist, checkable there too.
  const card = phone.message('Groceries');
  await expect(card.getByRole('checkbox', { name: 'bread' })).toBeChecked();
  await card.getByRole('checkbox', { name: 'bread' }).uncheck();
  await expect(laptop.message('Groceries').getByRole('checkbox', { name: 'bread' })).not.toBeChecked();
  await laptop.page.screenshot({ path: `${SHOTS}note-card-1280x800.png` });
  const axeCard = await new AxeBuilder({ page: laptop.page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  expect(axeCard.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(', ')}`)).toEqual([]);

  // Notes lists only notes; search looks into note bodies.
  await laptop.send('just a message');
  const filters = laptop.page.getByRole('group', { name: 'Show' });
  await filters.getByRole('button', { name: 'Notes', exact: true }).click();
  await expect(laptop.history.getByRole('listitem')).toHaveCount(1);
  await expect(laptop.message('Groceries')).toBeVisible();
  await filters.getByRole('button', { name: 'All', exact: true }).click();
  await expect(laptop.history.getByRole('listitem')).toHaveCount(2);
  await laptop.page.getByRole('searchbox').fill('2 l');
  await expect(laptop.history.getByRole('listitem')).toHaveCount(1);
  await expect(laptop.message('Groceries')).toBeVisible();
  await laptop.page.getByRole('searchbox').fill('');

  // What was saved survives a reload.
  await phone.page.reload();
  await phone.ready();
  await openNote(phone, 'Groceries');
  await expect(editor(phone).text).toHaveValue('oat milk (2 l)\neggs\n- [ ] bread');
  await laptop.close();
  await phone.close();
});

test('the installed app\'s "New note" shortcut opens a new note; a new note left empty is not kept', async () => {
  const d = await Device.launch('note-shortcut');
  const manifest = await (await d.page.request.get('/manifest.webmanifest')).json();
  const shortcut = manifest.shortcuts.find((s: { name: string }) => s.name === 'New note');
  expect(shortcut.url).toBe('./?new=note');
  await d.page.goto(new URL(shortcut.url, d.page.url()).href);
  await d.ready();
  const e = editor(d);
  await expect(e.title).toBeFocused();
  expect(new URL(d.page.url()).search).toBe('');
  // Typed and emptied again: nothing is kept.
  await d.page.keyboard.type('x');
  await d.page.keyboard.press('Backspace');
  await d.page.keyboard.press('Escape');
  await expect(e.dialog).toHaveCount(0);
  await d.send('a message');
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await d.page.reload();
  await d.ready();
  await expect(e.dialog).toHaveCount(0);
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await d.close();
});

test('on a phone, New note is under More actions, and the editor fits the screen', async () => {
  const d = await Device.launch('note-phone', '/', { touch: true });
  const more = d.page.getByRole('button', { name: 'More actions' });
  await expect(d.page.getByRole('button', { name: 'New note' })).toBeHidden();
  await more.tap();
  await expect(more).toHaveAttribute('aria-expanded', 'true');
  await d.page.screenshot({ path: `${SHOTS}composer-more-390x844.png` });
  await d.page.getByRole('button', { name: 'New note' }).tap();
  await expect(more).toHaveAttribute('aria-expanded', 'false');
  const e = editor(d);
  await e.title.fill('Ideas');
  await e.text.fill('a boat\n- [ ] sails');
  const box = (await e.dialog.boundingBox())!;
  expect(box.width).toBeLessThanOrEqual(390);
  await d.page.screenshot({ path: `${SHOTS}note-editor-390x844.png` });
  await e.dialog.getByRole('button', { name: 'Save note' }).tap();
  await expect(d.message('Ideas').getByRole('checkbox', { name: 'sails' })).not.toBeChecked();
  await d.close();
});
