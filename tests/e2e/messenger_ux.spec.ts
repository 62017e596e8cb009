// Journey: using Ferry like a messenger: links open, days are labelled, search finds one
// item among a thousand, "Share → Ferry" from another app lands in the history.
import { test, expect } from '@playwright/test';
import { Device } from './device';

test('search finds an item among 1,000 and highlights it; links are clickable', async () => {
  const d = await Device.launch('search');
  await d.typeMany(1000, (i) => (i === 617 ? 'the wifi password is Zebra-Crossing-42' : `filler note ${i}`));
  await expect(d.history.getByRole('listitem')).toHaveCount(1000);
  await expect(d.page.getByRole('separator', { name: 'Today' })).toHaveCount(1);
  await d.page.getByRole('searchbox', { name: 'Search messages' }).fill('zebra');
  await expect(d.history.getByRole('listitem')).toHaveCount(1);
  await expect(d.page.getByText('1 message matches')).toBeVisible();
  await expect(d.history.locator('mark')).toHaveText('Zebra');
  await d.page.getByRole('searchbox', { name: 'Search messages' }).fill('');
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
