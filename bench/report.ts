// `npm run bench` (no argument): runs every benchmark, one after another, each
// in its own process, then collects bench/results/<name>.json into
// bench/results/latest.json (with the accelerator, the date and the machine),
// the Markdown table bench/results/latest.md (each figure beside its peer and
// its goal) and the chart bench/results/wake-latency.svg.
//
//   node dist/bench/report.js [--quick] [--only wake,density] [--no-run]
// --quick: small N everywhere (for development; the figures are noisier);
// --only: run only these, and report every result file there is;
// --no-run: only re-render from the result files.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACKAGE_ROOT } from '../src/paths.js';
import { argValue } from './lib.js';
import { renderMarkdown, renderSvg, type Latest, type Series } from './report-render.js';

/** In the order they run: the cheap ones first, density (the longest) last. */
const ORDER = ['image', 'vmm', 'proxy', 'wake', 'service', 'console', 'density', 'jail', 'cluster', 'state', 'postgres'] as const;
const QUICK_ARGS: Record<string, string[]> = {
  vmm: ['--runs', '4'],
  proxy: ['--runs', '1', '--duration', '2s'],
  wake: ['--runs', '5', '--burst', '200'],
  service: ['--burst', '200', '--rounds', '1'],
  console: ['--changes', '6', '--loads', '3'],
  postgres: ['--n', '5', '--standby', '2', '--pgbench-seconds', '5'],
  density: ['--n', '100', '--running-max', '10', '--netns-probe', '50', '--minutes', '10'],
  cluster: ['--failovers', '2', '--creates', '20', '--hops', '50', '--catalog', '2000'],
  state: ['--n', '50', '--records', '2000'],
};

const here = path.dirname(fileURLToPath(import.meta.url));
const resultsDir = path.join(PACKAGE_ROOT, 'bench', 'results');

function runBench(name: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    console.log(`\n=== ${name} ${args.join(' ')}`);
    const child = spawn(process.execPath, [path.join(here, `${name}.js`), ...args], { stdio: 'inherit' });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

function readResult(name: string): any {
  try {
    return JSON.parse(fs.readFileSync(path.join(resultsDir, `${name}.json`), 'utf8'));
  } catch {
    return undefined;
  }
}

function machine(): Latest['machine'] {
  const osRelease = fs.existsSync('/etc/os-release') ? /^PRETTY_NAME="?([^"\n]*)"?/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] : undefined;
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    ram_bytes: os.totalmem(),
    kernel: os.release(),
    os: osRelease ?? os.platform(),
    load_before: os.loadavg(),
  };
}

/** The wake chart's rows, from wake.json's raw samples. */
export function wakeSeries(wake: any): Series[] {
  const s = wake?.samples ?? {};
  return [
    { label: 'minimal: warm request', samples: s.warm_min ?? [], color: '#2b8a3e' },
    { label: 'minimal: hot wake', samples: s.wake_hot_min ?? [], color: '#e8590c' },
    { label: 'minimal: hot wake, RAM resident', samples: s.wake_hot_resident_min ?? [], color: '#f08c00' },
    { label: 'minimal: cold wake', samples: s.wake_cold_min ?? [], color: '#1971c2' },
    { label: 'node: warm request', samples: s.warm_node ?? [], color: '#2b8a3e' },
    { label: 'node: hot wake', samples: s.wake_hot_node ?? [], color: '#e8590c' },
    { label: 'node: hot wake, RAM resident', samples: s.wake_hot_resident_node ?? [], color: '#f08c00' },
    { label: 'node: cold wake', samples: s.wake_cold_node ?? [], color: '#1971c2' },
    { label: 'node: container (podman + runc)', samples: s.container_cold ?? [], color: '#868e96' },
    { label: 'node: bare node server.js', samples: s.bare_node ?? [], color: '#495057' },
  ];
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const only = argValue(process.argv, 'only')?.split(',');
  const load = os.loadavg();
  const failed: string[] = [];
  if (!process.argv.includes('--no-run')) {
    for (const name of ORDER) {
      if (only && !only.includes(name)) continue;
      if (!fs.existsSync(path.join(here, `${name}.js`))) continue;
      const code = await runBench(name, quick ? (QUICK_ARGS[name] ?? []) : []);
      if (code !== 0) failed.push(`${name} (exit ${code})`);
    }
  }
  const results: Record<string, unknown> = {};
  for (const name of ORDER) {
    const r = readResult(name);
    if (r !== undefined) results[name] = r;
  }
  const wake = results.wake as any;
  const accel = wake?.accel ?? (results.vmm as any)?.accel ?? (results.density as any)?.accel ?? 'unknown';
  const latest: Latest = { accel, date: new Date().toISOString(), machine: { ...machine(), load_before: load }, results };
  fs.writeFileSync(path.join(resultsDir, 'latest.json'), `${JSON.stringify(latest, null, 2)}\n`);
  fs.writeFileSync(path.join(resultsDir, 'latest.md'), renderMarkdown(latest));
  fs.writeFileSync(path.join(resultsDir, 'wake-latency.svg'), renderSvg(wakeSeries(wake), `Time to the first byte through the proxy (${accel.toUpperCase()}, n = ${wake?.results?.warm_ms?.n ?? 0} each)`));
  console.log(`\n${fs.readFileSync(path.join(resultsDir, 'latest.md'), 'utf8')}`);
  console.log(`wrote ${path.relative(PACKAGE_ROOT, resultsDir)}/latest.json, latest.md, wake-latency.svg`);
  if (failed.length > 0) {
    console.error(`failed: ${failed.join(', ')}; their figures are from an earlier run, if any`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
