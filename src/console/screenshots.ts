// Makes the console screenshots in docs/ (README): a flickd with a few real
// microVMs in each state, some hot and cold wakes, then the main views in
// chromium at desktop and phone width.
//   node dist/src/console/screenshots.js [out-dir (default docs)]
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { api, createRunning, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../daemon/testing.js';
import { sweepLeftovers } from '../network/namespace-network.js';
import { PACKAGE_ROOT } from '../paths.js';
import { launchConsoleBrowser, signIn } from './testing.js';

const PREFIX = 'cshot-';
const POOL = '10.223.0.0/24';
const IMAGE = 'hello:1';

function get(port: number, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host: `${name}.localhost` } }, (res) => res.resume().on('end', resolve)).on('error', reject);
  });
}

async function main(): Promise<void> {
  const out = path.resolve(process.argv[2] ?? path.join(PACKAGE_ROOT, 'docs'));
  fs.mkdirSync(out, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-shots-'));
  const dataDir = path.join(tmp, 'data');
  await sweepLeftovers(PREFIX);
  let f: FlickdUnderTest | undefined;
  const desktop = await launchConsoleBrowser({ viewport: { width: 1280, height: 800 } });
  try {
    f = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--hot-page-out-after', '0'] });
    const proxy = Number(/proxy: listening on http:\/\/[^:]+:(\d+)/.exec(f.log())?.[1]);
    await pushFixtureImage(f, IMAGE, 'hello-server');
    const manual = { policy: 'on', cooldown_time_ms: 600_000 };
    await createRunning(f, IMAGE, { name: 'web', scale_to_zero: manual });
    await createRunning(f, IMAGE, { name: 'api', scale_to_zero: { ...manual, stateful: true }, memory_mb: 256 });
    await createRunning(f, IMAGE, { name: 'always-on', scale_to_zero: { policy: 'off' } });
    await api(f, 'POST', '/v1/instances', { image: IMAGE, name: 'batch', autostart: false, memory_mb: 128 });
    // Wakes for the histograms: web mostly hot, some cold.
    for (let i = 0; i < 14; i++) {
      await api(f, 'PUT', `/v1/instances/web/suspend?tier=${i % 4 === 3 ? 'cold' : 'hot'}`);
      await get(proxy, 'web');
    }
    for (let i = 0; i < 4; i++) {
      await api(f, 'PUT', `/v1/instances/api/suspend?tier=${i % 2 ? 'cold' : 'hot'}`);
      await get(proxy, 'api');
    }
    await api(f, 'PUT', '/v1/instances/api/suspend?tier=hot');
    await createRunning(f, IMAGE, { name: 'worker', scale_to_zero: manual });
    await api(f, 'PUT', '/v1/instances/worker/suspend?tier=cold');
    await api(f, 'POST', '/v1/volumes', { name: 'pgdata', size: '1G' });
    await api(f, 'POST', '/v1/services', { name: 'shop', replicas: 3, image: IMAGE, memory_mb: 128, scale_to_zero: manual });

    const page = await desktop.newPage();
    await signIn(page, f.base, f.token);
    await page.locator('tr[data-name="worker"][data-state="standby"]').waitFor();
    await page.locator('tr[data-name^="shop-"]').nth(2).waitFor({ timeout: 120_000 });
    await get(proxy, 'shop'); // one member wakes; the others sleep on
    await new Promise((r) => setTimeout(r, 2500)); // a memory sample
    await page.screenshot({ path: path.join(out, 'console-instances.png') });
    await page.goto(`${f.base}/console/#/instances/web`);
    await page.getByTestId('log').filter({ hasText: 'listening' }).waitFor();
    await page.getByRole('img', { name: /hot and .* cold wakes/ }).waitFor();
    await new Promise((r) => setTimeout(r, 500));
    await page.screenshot({ path: path.join(out, 'console-instance.png'), fullPage: true });
    await page.goto(`${f.base}/console/#/run`);
    await page.getByLabel('Name').fill('shop');
    await page.getByLabel('HTTP port').fill('8080');
    await page.getByLabel('Memory (MiB)').fill('256');
    await page.getByLabel('Scale to zero').selectOption('on');
    await page.getByLabel('Cooldown (ms)').fill('2000');
    await page.getByLabel('Environment').fill('NODE_ENV=production');
    await page.getByLabel('Volumes').fill('pgdata:/var/lib/data');
    await page.screenshot({ path: path.join(out, 'console-run.png'), fullPage: true });
    await page.goto(`${f.base}/console/#/services`);
    await page.locator('tr[data-key="shop"]').getByText('1 running / 3').waitFor({ timeout: 60_000 });
    await page.screenshot({ path: path.join(out, 'console-services.png') });
    await page.goto(`${f.base}/console/#/images`);
    await page.locator('tr[data-ref]').first().waitFor();
    await page.screenshot({ path: path.join(out, 'console-images.png') });

    const phone = await desktop.context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(`${f.base}/console/#/instances`);
    await phone.locator('tr[data-name="worker"]').waitFor();
    await new Promise((r) => setTimeout(r, 2500));
    await phone.screenshot({ path: path.join(out, 'console-phone.png') });
    if (desktop.errors.length > 0) throw new Error(`console errors: ${desktop.errors.join('\n')}`);
    console.log(`screenshots in ${out}`);
  } finally {
    await desktop.close();
    if (f) await api(f, 'DELETE', '/v1/services/shop').catch(() => undefined);
    if (f) await api(f, 'DELETE', '/v1/volumes/pgdata').catch(() => undefined);
    await removeFlickd(f, PREFIX, dataDir);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
