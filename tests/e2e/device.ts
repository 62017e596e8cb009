// A page object for one Ferry device (one browser profile), driven by role and accessible
// name the way a person with a screen reader would use it.
import { chromium, expect, type BrowserContext, type Locator, type Page } from '@playwright/test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

const BASE = process.env.FERRY_APP_URL ?? 'http://127.0.0.1:8080';

export class Device {
  private constructor(
    readonly name: string,
    readonly profileDir: string,
    public context: BrowserContext,
    public page: Page,
  ) {}

  /** A new browser profile (its own IndexedDB): a separate device. `relayOnly` makes every
   *  RTCPeerConnection use TURN relays only, as behind a symmetric NAT (no browser flag does).
   *  `profileDir` puts the profile somewhere chosen (e.g. on a small filesystem); `touch`
   *  makes it a phone (390×844, a touch screen and no mouse). `camera` gives it a camera that
   *  films this Y4M file (Chromium's fake capture device), which the page may use unless
   *  `cameraDenied`. */
  static async launch(name: string, url = '/', opts: { relayOnly?: boolean; profileDir?: string; touch?: boolean; camera?: string; cameraDenied?: boolean } = {}): Promise<Device> {
    const dir = opts.profileDir ?? mkdtempSync(join(tmpdir(), `ferry-${name}-`));
    const { context, page } = await Device.start(dir, url, opts.relayOnly, opts.touch, opts.camera, opts.cameraDenied);
    const d = new Device(name, dir, context, page);
    await d.ready();
    return d;
  }

  /** A device whose config.json points at a signaling server that does not exist. */
  static async launchWithoutServer(name: string): Promise<Device> {
    const dir = mkdtempSync(join(tmpdir(), `ferry-${name}-`));
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS, baseURL: BASE,
    });
    await context.route('**/config.json', (route) =>
      route.fulfill({ json: { signal: 'ws://127.0.0.1:9', ice_servers: [] } }));
    const page = context.pages()[0] ?? (await context.newPage());
    await page.goto('/');
    const d = new Device(name, dir, context, page);
    await d.ready();
    return d;
  }

  private static async start(dir: string, url: string, relayOnly = false, touch = false, camera?: string, cameraDenied = false) {
    const cameraArgs = camera
      ? ['--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${camera}`]
      : [];
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [...CHROMIUM_ARGS, ...cameraArgs],
      baseURL: BASE,
      ...(camera && !cameraDenied ? { permissions: ['camera'] } : {}),
      ...(touch ? { hasTouch: true, isMobile: true, viewport: { width: 390, height: 844 } } : {}),
    });
    if (relayOnly) {
      await context.addInitScript(() => {
        const Original = window.RTCPeerConnection;
        const RelayOnly = function (config?: RTCConfiguration) {
          return new Original({ ...(config ?? {}), iceTransportPolicy: 'relay' });
        } as unknown as typeof RTCPeerConnection;
        RelayOnly.prototype = Original.prototype;
        window.RTCPeerConnection = RelayOnly;
      });
    }
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => console.log(`[${dir}] page error: ${e.message}`));
    // A Rust panic is logged (console_error_panic_hook) before the wasm trap: show it.
    page.on('console', (m) => { if (m.type() === 'error' || (process.env.FERRY_E2E_VERBOSE && /mailbox|outbox/.test(m.text()))) console.log(`[${dir}] console error: ${m.text().slice(0, 2000)}`); });
    await page.goto(url);
    return { context, page };
  }

  /** Closes the whole browser and opens it again on the same profile. */
  async restartBrowser(url = '/'): Promise<void> {
    await this.reopenAt(url);
    await this.ready();
  }

  /** Opens the browser again on the same profile at any page of the app's origin (not
   *  necessarily the app itself), without waiting for the app. */
  async reopenAt(url: string): Promise<void> {
    await this.context.close();
    const { context, page } = await Device.start(this.profileDir, url);
    this.context = context;
    this.page = page;
  }

  /** Another tab of the same browser profile, as a Device sharing this one's context. */
  async newTab(url = '/'): Promise<Device> {
    const page = await this.context.newPage();
    await page.goto(url);
    const tab = new Device(`${this.name}-tab`, this.profileDir, this.context, page);
    await tab.ready();
    return tab;
  }

  async close(): Promise<void> {
    await this.context.close();
  }

  get composer(): Locator {
    return this.page.getByRole('textbox', { name: 'Message' });
  }
  get status(): Locator {
    return this.page.getByRole('status');
  }
  get history(): Locator {
    return this.page.getByRole('log', { name: 'Messages' });
  }
  get alert(): Locator {
    return this.page.getByRole('alert');
  }

  message(text: string): Locator {
    return this.history.getByRole('listitem').filter({ hasText: text });
  }

  async ready(): Promise<void> {
    await expect(this.composer).toBeEnabled();
  }

  /** Types a text and presses Enter. */
  async send(text: string): Promise<void> {
    await this.composer.fill(text);
    await this.composer.press('Enter');
    await expect(this.message(text)).toBeVisible();
  }

  /** Types `n` texts in one go, Enter after each, as fast as the page takes them. */
  async typeMany(n: number, text: (i: number) => string): Promise<void> {
    const texts = Array.from({ length: n }, (_, i) => text(i));
    await this.page.evaluate((texts) => {
      const box = document.querySelector('textarea[aria-label="Message"]') as HTMLTextAreaElement;
      for (const t of texts) {
        box.value = t;
        box.dispatchEvent(new Event('input', { bubbles: true }));
        box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
      }
    }, texts);
  }

  async openDevices(): Promise<void> {
    const toggle = this.page.getByRole('button', { name: 'Devices' });
    if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
  }

  /** Devices → Advanced (connection, mailbox, diagnostics), opened. */
  async openAdvanced(): Promise<void> {
    await this.openDevices();
    const details = this.page.locator('#devices-panel details.advanced');
    if (!(await details.evaluate((el) => (el as HTMLDetailsElement).open))) {
      await details.locator('summary').click();
    }
  }

  async pairingLink(): Promise<string> {
    await this.openDevices();
    const box = this.page.getByRole('textbox', { name: 'Pairing link' });
    await expect(box).toHaveValue(/#pair=/);
    return box.inputValue();
  }

  /** Opens a pairing link and confirms with "Join". */
  async join(link: string): Promise<void> {
    await this.page.goto(link);
    await this.page.getByRole('button', { name: 'Join' }).click();
    await expect(this.page.getByRole('dialog')).toHaveCount(0);
  }

  /** How many sealed entries the mailbox holds for this space, as Devices → Mailbox says
   *  after the last visit (0 before the first). */
  async mailboxEntries(): Promise<number> {
    const held = this.page.getByText(/^The mailbox holds (nothing|\d+ sealed entr)/);
    if ((await held.count()) === 0) return 0;
    const m = ((await held.first().textContent()) ?? '').match(/holds (\d+)/);
    return m ? Number(m[1]) : 0;
  }

  async texts(): Promise<string[]> {
    return this.history.getByRole('listitem').locator('.text').allInnerTexts();
  }

  /** Sends files through the composer's "Attach files" picker (the hidden file input). */
  async attach(paths: string[]): Promise<void> {
    await this.page.getByLabel('Files to send').setInputFiles(paths);
  }

  /** A device whose browser is started through `executablePath` (e.g. a wrapper that runs
   *  Chromium inside another network namespace), with extra Chromium flags. */
  static async launchVia(name: string, executablePath: string, extraArgs: string[] = []): Promise<Device> {
    const dir = mkdtempSync(join(tmpdir(), `ferry-${name}-`));
    const context = await chromium.launchPersistentContext(dir, {
      executablePath, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs], baseURL: BASE,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => console.log(`[${name}] page error: ${e.message}`));
    if (process.env.FERRY_E2E_VERBOSE) page.on('console', (m) => { if (/matchbox|network|signaling/.test(m.text())) console.log(`[${name}] ${((Date.now() / 1000) % 1000).toFixed(1)} ${m.text().slice(0, 300)}`); });
    await page.goto('/');
    const d = new Device(name, dir, context, page);
    await d.ready();
    return d;
  }
}
