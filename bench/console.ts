// `npm run bench -- console [--changes N] [--loads N]`: the web console's goals,
// in Debian's chromium (headless) against a real flickd with real microVMs (TCG here).
//  - a state change reaches the open console: from the controller's change (its
//    `at`) to the instance row's data-state changing in the page's DOM, over
//    N sleep/wake cycles (cold and hot, woken by requests through the proxy);
//    peer: the same feed read by a plain HTTP client in Node (what the browser adds);
//  - first load: JS + CSS bytes over the wire (gzip) and the time from navigation
//    to the first render of the live list (performance mark 'console-ready'), cold cache.
// Writes bench/results/console.json.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchConsoleBrowser, recordStateLatency, signIn, stateLatencies } from '../src/console/testing.js';
import { api, createRunning, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { sweepLeftovers } from '../src/network/namespace-network.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { argValue, percentile, printTable, writeResults } from './lib.js';

const PREFIX = 'conb-';
const POOL = '10.222.0.0/24';
const IMAGE = 'fixtures/hello:1';
const GOAL_CHANGE_P95_MS = 250;
const GOAL_BYTES = 300_000; // 300 KB
const GOAL_INTERACTIVE_MS = 1000;

function dist(values: number[]) {
  const r = (x: number) => Number(x.toFixed(1));
  return { p50: r(percentile(values, 50)), p95: r(percentile(values, 95)), max: r(Math.max(...values)), n: values.length };
}

/** The console's feed read by a plain HTTP client: ms from each change's `at` to its arrival here. */
function feedClient(f: FlickdUnderTest): { samples: number[]; close(): void } {
  const samples: number[] = [];
  const req = http.get(`${f.base}/console/api/events`, { headers: { authorization: `Bearer ${f.token}` } }, (res) => {
    let buf = '';
    res.setEncoding('utf8').on('data', (d: string) => {
      const now = Date.now();
      buf += d;
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (/^event: instance$/m.test(frame) && data) samples.push(now - Date.parse((JSON.parse(data) as { at: string }).at));
      }
    });
  });
  req.on('error', () => undefined);
  return { samples, close: () => req.destroy() };
}

function viaProxy(port: number, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host: `${name}.localhost` } }, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

async function main(): Promise<void> {
  const cycles = Number(argValue(process.argv, 'changes') ?? 20);
  const loads = Number(argValue(process.argv, 'loads') ?? 10);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-console-'));
  const dataDir = path.join(tmp, 'data');
  await sweepLeftovers(PREFIX);
  const accel = await new QemuDriver({}).accelerator();
  const loadBefore = os.loadavg(); // the figures move with the machine's load (a shared 2-core host here)
  let f: FlickdUnderTest | undefined;
  const browser = await launchConsoleBrowser();
  try {
    f = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--hot-page-out-after', '0'] });
    const proxyPort = Number(/proxy: listening on http:\/\/[^:]+:(\d+)/.exec(f.log())?.[1]);
    await pushFixtureImage(f, IMAGE, 'hello-server');
    await createRunning(f, IMAGE, { name: 'bench', scale_to_zero: { policy: 'on', cooldown_time_ms: 600_000 } });

    // First load, cold cache each time (the session cookie stays).
    const page = await browser.newPage();
    await signIn(page, f.base, f.token);
    const cdp = await browser.context.newCDPSession(page);
    const interactive: number[] = [];
    let wire = { js: 0, css: 0, html: 0 };
    for (let i = 0; i < loads; i++) {
      await cdp.send('Network.clearBrowserCache');
      await page.goto('about:blank'); // a new document each time, not a hash change
      await page.goto(`${f.base}/console/#/instances`);
      await page.locator('tr[data-name="bench"]').waitFor();
      const m = (await page.evaluate(`(() => {
        const mark = performance.getEntriesByName('console-ready')[0];
        const res = performance.getEntriesByType('resource');
        const nav = performance.getEntriesByType('navigation')[0];
        const sum = (ext) => res.filter((r) => new URL(r.name).pathname.endsWith(ext)).reduce((n, r) => n + r.encodedBodySize, 0);
        return { ready: mark ? mark.startTime : null, js: sum('.js'), css: sum('.css'), html: nav ? nav.encodedBodySize : 0 };
      })()`)) as { ready: number | null; js: number; css: number; html: number };
      if (m.ready !== null) interactive.push(m.ready);
      wire = { js: m.js, css: m.css, html: m.html };
    }

    // State changes: cold and hot standby, each woken by a request through the proxy.
    await recordStateLatency(page);
    const feed = feedClient(f);
    const row = (state: string) => page.locator(`tr[data-name="bench"][data-state="${state}"]`).waitFor({ timeout: 30_000 });
    for (let i = 0; i < cycles; i++) {
      const tier = i % 2 === 0 ? 'cold' : 'hot';
      const s = await api(f, 'PUT', `/v1/instances/bench/suspend?tier=${tier}`);
      if (s.status !== 200) throw new Error(`suspend: ${s.status} ${s.text}`);
      await row('standby');
      if ((await viaProxy(proxyPort, 'bench')) !== 200) throw new Error('the wake request failed');
      await row('running');
    }
    await new Promise((r) => setTimeout(r, 200));
    const seen = (await stateLatencies(page)).map((s) => s.ms);
    feed.close();

    const results = {
      state_change_to_console_ms: dist(seen),
      state_change_to_http_client_ms: dist(feed.samples),
      first_load: {
        js_gzip_bytes: wire.js,
        css_gzip_bytes: wire.css,
        js_css_gzip_bytes: wire.js + wire.css,
        html_bytes: wire.html,
        interactive_ms: dist(interactive),
      },
      goals: { state_change_p95_ms: GOAL_CHANGE_P95_MS, js_css_gzip_bytes: GOAL_BYTES, interactive_ms: GOAL_INTERACTIVE_MS },
      cycles,
      loads,
      load_before: loadBefore.map((x) => Number(x.toFixed(2))),
    };
    const r = results;
    printTable([
      ['measure', 'p50', 'p95', 'max', 'n', 'goal'],
      ['state change -> console row (ms)', r.state_change_to_console_ms.p50, r.state_change_to_console_ms.p95, r.state_change_to_console_ms.max, r.state_change_to_console_ms.n, `p95 <= ${GOAL_CHANGE_P95_MS}`],
      ['peer: -> plain HTTP feed client (ms)', r.state_change_to_http_client_ms.p50, r.state_change_to_http_client_ms.p95, r.state_change_to_http_client_ms.max, r.state_change_to_http_client_ms.n, ''],
      ['first load -> interactive (ms)', r.first_load.interactive_ms.p50, r.first_load.interactive_ms.p95, r.first_load.interactive_ms.max, r.first_load.interactive_ms.n, `<= ${GOAL_INTERACTIVE_MS}`],
      ['first load JS+CSS gzip (KiB)', (r.first_load.js_css_gzip_bytes / 1024).toFixed(1), '', '', 1, `<= 300 KB`],
    ]);
    console.log(`load average before: ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`);
    console.log(`accelerator: ${accel}; results in ${await writeResults('console', { accel, results })}`);
  } finally {
    await browser.close();
    await removeFlickd(f, PREFIX, dataDir);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
