// `npm run bench [-- <name> [args]]`: runs one benchmark from the registry below
// in its own process (each bench file runs itself when executed directly).
// To add a benchmark: write bench/<name>.ts and add one line here.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCHMARKS: Record<string, { file: string; about: string }> = {
  vmm: { file: 'vmm.js', about: 'microVM cold boot, restore and resume, each to the first HTTP byte' },
  proxy: { file: 'proxy.js', about: 'ingress proxy overhead against a direct connection (wrk)' },
  image: { file: 'image.js', about: 'node hello app: microVM image size against its container image, and build time' },
  wake: { file: 'wake.js', about: 'scale to zero through the proxy: warm, hot and cold wake, a burst; container and bare node peers' },
  'wake-probe': { file: 'wake-probe.js', about: 'restore of a template -> first byte, minimal vs node, variants side by side (driver only)' },
  density: { file: 'density.js', about: 'N standby instances: create rate, RAM, disk, first and N-th wake; idle running instances' },
  console: { file: 'console.js', about: 'web console in chromium: state change -> row (p95), first load bytes and time to interactive; peer: a plain HTTP feed client' },
  cluster: { file: 'cluster.js', about: 'a 3-host cluster on this machine: failover, route propagation, the cross-host hop, creates/s, start-up with 10,000 instances' },
  state: { file: 'state.js', about: 'the state seam: the etcd backend beside SQLite (create, status write, publish lag, open with 10,000 records)' },
  postgres: { file: 'postgres.js', about: 'PostgreSQL on a volume: wake → first query (hot, cold) vs the host\'s pg_ctl start, pgbench proxy vs direct, standby cost' },
  service: { file: 'service.js', about: 'services: a 1,000-request burst at zero against a service (autoscale max=4) beside a single instance' },
  report: { file: 'report.js', about: 'every benchmark, then latest.json, latest.md and the wake chart (the default)' },
};

// No name: the whole report (every benchmark, then latest.json/.md/.svg).
const [name = 'report', ...rest] = process.argv.slice(2);
const bench = BENCHMARKS[name];
if (!bench) {
  console.error(`usage: npm run bench [-- <name> [args]]\n\nbenchmarks:`);
  for (const [n, b] of Object.entries(BENCHMARKS)) console.error(`  ${n.padEnd(8)} ${b.about}`);
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const child = spawn(process.execPath, [path.join(here, bench.file), ...rest], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
