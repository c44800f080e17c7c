// The web console in a real browser, for test/console.test.ts and
// bench/console.ts: Debian's chromium driven by playwright-core, headless, kept
// off the network, with a fresh profile; every console error and uncaught
// exception of every page is collected so a test can fail on them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export interface ConsoleBrowser {
  context: BrowserContext;
  /** "page: message" for each console error and uncaught exception so far. */
  errors: string[];
  newPage(): Promise<Page>;
  /** Closes the browser and removes its profile. Safe to call twice. */
  close(): Promise<void>;
}

export async function launchConsoleBrowser(opts: { viewport?: { width: number; height: number } } = {}): Promise<ConsoleBrowser> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: opts.viewport ?? { width: 1280, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'],
  });
  const errors: string[] = [];
  const watch = (page: Page) => {
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  let closing: Promise<void> | undefined;
  return {
    context,
    errors,
    newPage: () => context.newPage(),
    close: () =>
      (closing ??= (async () => {
        await context.close().catch(() => undefined);
        fs.rmSync(profile, { recursive: true, force: true });
      })()),
  };
}

/** Opens the console and signs in with the token through its form; resolves once the live feed is connected. */
export async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/console/`);
  await page.getByLabel('Host token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('main[data-ready="true"]').waitFor({ timeout: 15_000 });
}

/**
 * Starts recording, in the page, how long each instance row's state change took
 * to show: the time its `data-state` changed in the DOM minus the controller's
 * time of the change (the row's `data-at`; same host, same clock).
 */
// Runs in the page (a string: this package compiles without the DOM's types).
const RECORD_LATENCY = `(() => {
  window.__flickLatency = [];
  const seen = new WeakMap();
  new MutationObserver((records) => {
    const now = Date.now();
    for (const r of records) {
      const el = r.target;
      // One change can move two attributes (state and tier): count it once.
      if (el.tagName !== 'TR' || !el.dataset.at || seen.get(el) === el.dataset.at) continue;
      seen.set(el, el.dataset.at);
      window.__flickLatency.push({ name: el.dataset.name || '', state: el.dataset.state || '', tier: el.dataset.tier || '', ms: now - Date.parse(el.dataset.at) });
    }
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-state', 'data-tier'] });
})()`;

export interface StateLatency {
  name: string;
  state: string;
  tier: string;
  /** From the controller's change to the row showing it. */
  ms: number;
}

/**
 * Starts recording, in the page, how long each instance row's state change took
 * to show: the time its `data-state` changed in the DOM minus the controller's
 * time of the change (the row's `data-at`; same host, same clock).
 */
export async function recordStateLatency(page: Page): Promise<void> {
  await page.evaluate(RECORD_LATENCY);
}

export function stateLatencies(page: Page): Promise<StateLatency[]> {
  return page.evaluate('window.__flickLatency') as Promise<StateLatency[]>;
}
