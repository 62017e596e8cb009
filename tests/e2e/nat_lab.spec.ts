// NAT lab journey (run by natlab.sh only): two devices, each in its own network namespace
// behind its own symmetric NAT (MASQUERADE --random-fully), with coturn and ferry-signal on a
// "public" namespace. No relay policy is forced: the NAT alone rules out the direct path, so
// with the person's TURN server they sync relayed, and without one the app says to add one.
import { test, expect } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { Device } from './device';

const LAB = process.env.FERRY_NATLAB === '1';
const APP = process.env.FERRY_APP_URL ?? '';
const TURN = process.env.FERRY_TURN ?? '';
const STUN = process.env.FERRY_STUN ?? '';
const TURN_TCP = process.env.FERRY_TURN_TCP ?? '';
const TURN_TLS = process.env.FERRY_TURN_TLS ?? '';
const FIREWALL = process.env.FERRY_NATLAB_FIREWALL ?? '';
/**
 * The NAT routers' firewalls: `udp-blocked` drops every UDP packet, `tls-only` lets out only
 * TCP to port 443 (and the lab's signaling and app ports), `off` lets everything pass.
 */
const firewall = (mode: 'udp-blocked' | 'tls-only' | 'off') => execFileSync(FIREWALL, [mode]);
const blockUdp = (on: boolean) => firewall(on ? 'udp-blocked' : 'off');
const CHROMIUM_A = process.env.FERRY_NATLAB_CHROMIUM_A ?? '';
const CHROMIUM_B = process.env.FERRY_NATLAB_CHROMIUM_B ?? '';
// The app is served over plain http from a non-loopback address: let Chromium treat it as a
// secure context, as a real deployment over https would be.
const ARGS = [`--unsafely-treat-insecure-origin-as-secure=${APP}`];

test.skip(!LAB, 'the NAT lab runs only from natlab.sh (cargo xtask test)');

async function configure(d: Device, server: string, user?: string): Promise<void> {
  await d.openAdvanced();
  await d.page.getByRole('textbox', { name: 'STUN or TURN server' }).fill(server);
  if (user) {
    await d.page.getByRole('textbox', { name: 'Username (TURN)' }).fill(user);
    await d.page.getByLabel('Credential (TURN)').fill('secret');
  }
  await d.page.getByRole('button', { name: 'Save connection settings' }).click();
  await expect(d.page.getByText('Connection settings saved.')).toBeVisible();
}

test('devices behind two symmetric NATs sync through TURN', async () => {
  const laptop = await Device.launchVia('nat-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('nat-phone', CHROMIUM_B, ARGS);
  // Only the laptop is configured: the pairing link carries its TURN settings to the phone.
  await configure(laptop, TURN, 'ferry');
  await expect(laptop.page.getByText(`This device uses: ${TURN} (user ferry)`)).toBeVisible();
  const started = Date.now();
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
  await expect(phone.status).toHaveText('1 device connected');
  console.log(`connected through both NATs in ${Date.now() - started} ms`);
  await laptop.openDevices();
  const list = laptop.page.getByRole('list', { name: 'Devices in this space' });
  // The relay may be on either end here; the transport is named when it is on this one.
  await expect(list).toContainText(/online · relayed via TURN( \(UDP\))? · \d+ ms round trip/);
  console.log(`laptop's device list: ${(await list.innerText()).replace(/\s+/g, ' ')}`);
  let t = Date.now();
  await laptop.send('from behind NAT A');
  await expect(phone.message('from behind NAT A')).toBeVisible();
  console.log(`A -> B text in ${Date.now() - t} ms`);
  t = Date.now();
  await phone.send('and back from NAT B');
  await expect(laptop.message('and back from NAT B')).toBeVisible();
  console.log(`B -> A text in ${Date.now() - t} ms`);
  await laptop.close();
  await phone.close();
});

test('without a relay the symmetric NATs keep the devices apart, and the app says why', async () => {
  // STUN only (coturn answers binding requests): each device learns its public address, but
  // a symmetric NAT maps every destination to a new port, so hole punching cannot work.
  test.setTimeout(180_000);
  const laptop = await Device.launchVia('nat-stun-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('nat-stun-phone', CHROMIUM_B, ARGS);
  await configure(laptop, STUN);
  await phone.join(await laptop.pairingLink());
  await laptop.openDevices();
  const problem = laptop.page.getByRole('note', { name: 'Connection problem' });
  const started = Date.now();
  await expect(problem).toContainText('no relay is configured — add a TURN server', { timeout: 90_000 });
  console.log(`no direct path: reported after ${Date.now() - started} ms`);
  await expect(laptop.status).toHaveText('No other devices connected');
  await expect(phone.status).toHaveText('No other devices connected');
  await laptop.close();
  await phone.close();
});

// Networks that block UDP entirely: only TURN over TCP or TLS gets through. The lab's TLS
// listener has a self-signed certificate, so those browsers are told to accept it.
for (const [transport, server, extra, wall, where] of [
  ['TCP', TURN_TCP, [], 'udp-blocked', 'on a network that blocks UDP'],
  ['TLS', TURN_TLS, ['--ignore-certificate-errors'], 'tls-only', 'on a network that lets out only TCP to port 443'],
] as const) {
  test(`${where}, devices sync through TURN over ${transport}`, async () => {
    firewall(wall);
    try {
      const laptop = await Device.launchVia(`udp-blocked-${transport}-laptop`, CHROMIUM_A, [...ARGS, ...extra]);
      const phone = await Device.launchVia(`udp-blocked-${transport}-phone`, CHROMIUM_B, [...ARGS, ...extra]);
      await configure(laptop, server, 'ferry');
      const started = Date.now();
      await phone.join(await laptop.pairingLink());
      await expect(laptop.status).toHaveText('1 device connected', { timeout: 45_000 });
      await expect(phone.status).toHaveText('1 device connected');
      console.log(`${where}: connected over TURN/${transport} in ${Date.now() - started} ms`);
      await laptop.openDevices();
      const list = laptop.page.getByRole('list', { name: 'Devices in this space' });
      await expect(list).toContainText(new RegExp(`online · relayed via TURN \\(${transport}\\) · \\d+ ms round trip`), { timeout: 20_000 });
      await laptop.send(`through the firewall over ${transport}`);
      await expect(phone.message(`through the firewall over ${transport}`)).toBeVisible();
      await phone.send(`and back over ${transport}`);
      await expect(laptop.message(`and back over ${transport}`)).toBeVisible();
      await laptop.close();
      await phone.close();
    } finally {
      blockUdp(false);
    }
  });
}

test('on a network that blocks UDP, a relay over UDP alone is not enough, and the app says UDP is blocked', async () => {
  test.setTimeout(180_000);
  blockUdp(true);
  try {
    const laptop = await Device.launchVia('udp-blocked-udp-laptop', CHROMIUM_A, ARGS);
    const phone = await Device.launchVia('udp-blocked-udp-phone', CHROMIUM_B, ARGS);
    await configure(laptop, TURN, 'ferry');
    await phone.join(await laptop.pairingLink());
    await laptop.openDevices();
    const problem = laptop.page.getByRole('note', { name: 'Connection problem' });
    const started = Date.now();
    await expect(problem).toContainText('UDP is blocked on this network and no TCP/TLS relay is configured', { timeout: 90_000 });
    console.log(`UDP blocked, UDP relay only: reported after ${Date.now() - started} ms`);
    await expect(laptop.status).toHaveText('No other devices connected');
    await laptop.close();
    await phone.close();
  } finally {
    blockUdp(false);
  }
});

test('a TURN server over TLS whose certificate the browser refuses is named', async () => {
  // The lab's certificate is self-signed: without being told to accept it, the browser
  // refuses the TLS relay, and the symmetric NATs leave no other path.
  test.setTimeout(180_000);
  const laptop = await Device.launchVia('tls-refused-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('tls-refused-phone', CHROMIUM_B, ARGS);
  await configure(laptop, TURN_TLS, 'ferry');
  await phone.join(await laptop.pairingLink());
  await laptop.openDevices();
  const problem = laptop.page.getByRole('note', { name: 'Connection problem' });
  const started = Date.now();
  await expect(problem).toContainText('the TURN server refused TLS', { timeout: 90_000 });
  console.log(`TLS relay refused: reported after ${Date.now() - started} ms`);
  await expect(laptop.status).toHaveText('No other devices connected');
  await laptop.close();
  await phone.close();
});

const MOVE = process.env.FERRY_NATLAB_MOVE ?? '';

/** Records every wording the device list shows, so a passing state is not missed. */
async function watchDeviceList(d: Device): Promise<void> {
  await d.page.evaluate(() => {
    const w = window as unknown as { __listSaw: string[]; __notReloaded: boolean };
    w.__listSaw = [];
    w.__notReloaded = true;
    const note = () => {
      const list = document.querySelector('[aria-label="Devices in this space"]');
      if (list) w.__listSaw.push(list.textContent ?? '');
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

/**
 * Moves the laptop to another address (and its NAT to another public address) while both
 * devices write, and returns how long until the laptop's text arrived on the phone.
 */
async function moveWhileTalking(laptop: Device, phone: Device, how: string, args: string[]): Promise<number> {
  console.log(execFileSync(MOVE, args).toString().trim());
  const moved = Date.now();
  await laptop.send(`written during the move (${how})`);
  await phone.send(`answered during the move (${how})`);
  await expect(phone.message(`written during the move (${how})`)).toBeVisible({ timeout: 60_000 });
  const recoveredMs = Date.now() - moved;
  await expect(laptop.message(`answered during the move (${how})`)).toBeVisible({ timeout: 10_000 });
  console.log(`network change (${how}): texts flow again after ${recoveredMs} ms`);
  await laptop.send(`first text once moved (${how})`);
  await expect(phone.message(`first text once moved (${how})`)).toBeVisible();
  await phone.send(`reply once moved (${how})`);
  await expect(laptop.message(`reply once moved (${how})`)).toBeVisible();
  await expect(laptop.status).toHaveText('1 device connected');
  await expect(phone.status).toHaveText('1 device connected');
  return recoveredMs;
}

test('a device that changes network keeps talking: ICE restarts, nothing is lost, no reload', async () => {
  test.setTimeout(240_000);
  const laptop = await Device.launchVia('moving-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('moving-phone', CHROMIUM_B, ARGS);
  await configure(laptop, TURN, 'ferry');
  const joining = Date.now();
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
  await expect(phone.status).toHaveText('1 device connected');
  const firstConnectMs = Date.now() - joining;
  await laptop.send('before the move');
  await expect(phone.message('before the move')).toBeVisible();
  await laptop.openDevices();
  await phone.openDevices();
  await watchDeviceList(laptop);
  await watchDeviceList(phone);

  // Wi-Fi to cellular: the link drops and comes back with a new address, route and public
  // address; the browser reports it. Then back, the address changing under a live link: the
  // browser reports nothing, and only the silence on the connection tells.
  const withEvent = await moveWhileTalking(laptop, phone, 'link down and up', []);
  const silent = await moveWhileTalking(laptop, phone, 'address changed under a live link', ['--keep-link']);

  // Nothing was lost or doubled, the page never reloaded (the marker set before the moves is
  // still there), and the device list said what was going on while it happened.
  const texts = ['before the move'];
  for (const how of ['link down and up', 'address changed under a live link']) {
    for (const t of ['written during the move', 'answered during the move', 'first text once moved', 'reply once moved']) {
      texts.push(`${t} (${how})`);
    }
  }
  for (const d of [laptop, phone]) {
    for (const text of texts) await expect(d.message(text)).toHaveCount(1);
    const seen = await d.page.evaluate(() => {
      const w = window as unknown as { __listSaw: string[]; __notReloaded?: boolean };
      return { saw: w.__listSaw, notReloaded: w.__notReloaded === true };
    });
    expect(seen.notReloaded).toBe(true);
    console.log(`${d === laptop ? 'laptop' : 'phone'} list said: ${[...new Set(seen.saw.map((t) => t.replace(/\s+/g, ' ')))].join(' | ')}`);
  }
  const said = [laptop, phone].map((d) => d.page.evaluate(() => (window as unknown as { __listSaw: string[] }).__listSaw.join('\n')));
  expect((await Promise.all(said)).join('\n')).toContain('reconnecting after a network change');
  if (process.env.FERRY_BENCH_OUT) {
    const fs = await import('node:fs');
    fs.mkdirSync(process.env.FERRY_BENCH_OUT, { recursive: true });
    fs.writeFileSync(`${process.env.FERRY_BENCH_OUT}/network_change.json`,
      JSON.stringify({ link_down_up_ms: withEvent, address_under_live_link_ms: silent, first_connect_ms: firstConnectMs, at: new Date().toISOString() }));
  }
  await laptop.close();
  await phone.close();
});

test('when an ICE restart cannot bring a connection back, the devices connect anew and nothing is lost', async () => {
  // UDP is cut (the only relay is TURN over UDP) for longer than a restart may take: each
  // restart fails, the connection is closed after 20 s, and once UDP is back a new connection
  // (a new socket, a fresh handshake) carries what was written meanwhile.
  test.setTimeout(180_000);
  const laptop = await Device.launchVia('restart-fails-laptop', CHROMIUM_A, ARGS);
  const phone = await Device.launchVia('restart-fails-phone', CHROMIUM_B, ARGS);
  await configure(laptop, TURN, 'ferry');
  await phone.join(await laptop.pairingLink());
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 30_000 });
  await expect(phone.status).toHaveText('1 device connected');
  await laptop.send('before the outage');
  await expect(phone.message('before the outage')).toBeVisible();
  await laptop.openDevices();
  const list = laptop.page.getByRole('list', { name: 'Devices in this space' });
  blockUdp(true);
  const cut = Date.now();
  try {
    await laptop.send('written during the outage');
    await expect(list).toContainText('reconnecting after a network change', { timeout: 15_000 });
    await expect(laptop.status).toHaveText('No other devices connected', { timeout: 60_000 });
    console.log(`restart gave up after ${Date.now() - cut} ms`);
  } finally {
    blockUdp(false);
  }
  const restored = Date.now();
  await expect(laptop.status).toHaveText('1 device connected', { timeout: 60_000 });
  await expect(phone.status).toHaveText('1 device connected');
  console.log(`connected anew ${Date.now() - restored} ms after UDP came back`);
  await expect(list).toContainText(/online · relayed via TURN/, { timeout: 10_000 });
  await expect(phone.message('written during the outage')).toHaveCount(1);
  await phone.send('reply on the new connection');
  await expect(laptop.message('reply on the new connection')).toBeVisible();
  await laptop.close();
  await phone.close();
});
