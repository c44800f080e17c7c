// What one idle running minimal VM costs the host, by part, for a handful of
// clones through a real flickd (the per-lever probe behind the density
// benchmark's idle-running ramp): K scale-to-zero instances woken by one
// request each (clones of one shared template), idle a moment, then each
// VMM's /proc/<pid>/smaps grouped into the TCG translation buffer, QEMU's
// heap, guest RAM written since the restore, other anonymous memory, library
// and binary pages, plus its page tables, and its idle CPU. Private bytes are
// what a VM costs at large N (shared pages spread over all of them).
// Prints a table and JSON; writes nothing.
//
//   node dist/bench/idle-ram.js [--k 6] [--memory 64] [--idle-ms 5000] [--flickd-arg=--x=y ...]
import fs from 'node:fs';
import { BenchHost, APP_PORT, meminfo } from './flickd-host.js';
import { argValue, forEachLimit, processRunUs } from './lib.js';

const log = (l: string) => console.log(l);

export interface VmParts {
  /** bytes by part: private (what one more VM costs) and PSS */
  private: Record<string, number>;
  pss: Record<string, number>;
  pageTables: number;
  /** bytes of its pages KSM merged with identical pages elsewhere (ksm_stat) */
  merged: number;
}

/** The part of a QEMU mapping: from its smaps header line. */
function partOf(header: string, sizeKb: number): string {
  const f = header.trim().split(/\s+/);
  const perms = f[1] ?? '';
  const name = f.slice(5).join(' ');
  if (name === '[heap]') return 'heap';
  if (name.startsWith('[stack')) return 'anon';
  if (name.startsWith('[')) return 'other';
  if (name === '' && perms.startsWith('rwx')) return 'tb';
  if (name === '') return sizeKb >= 32 * 1024 && perms === 'rw-p' ? 'guest-anon?' : 'anon';
  if (/\.so|\/qemu-system/.test(name)) return 'libs';
  return name.includes('(deleted)') || /mem|ram|template/.test(name) ? 'guest' : 'file';
}

export function vmParts(pid: number): VmParts | undefined {
  let text: string;
  let status: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const priv: Record<string, number> = {};
  const pss: Record<string, number> = {};
  let part = 'other';
  for (const line of text.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      const [lo, hi] = line.split(' ')[0]!.split('-').map((h) => parseInt(h, 16)) as [number, number];
      part = partOf(line, (hi - lo) / 1024);
      continue;
    }
    const m = /^(Pss|Private_Clean|Private_Dirty):\s+(\d+) kB/.exec(line);
    if (!m) continue;
    const bytes = Number(m[2]) * 1024;
    if (m[1] === 'Pss') pss[part] = (pss[part] ?? 0) + bytes;
    else priv[part] = (priv[part] ?? 0) + bytes;
  }
  const pte = /^VmPTE:\s+(\d+) kB/m.exec(status);
  let merged = 0;
  try {
    merged = Number(/^ksm_merging_pages (\d+)/m.exec(fs.readFileSync(`/proc/${pid}/ksm_stat`, 'utf8'))?.[1] ?? 0) * 4096;
  } catch {
    // no KSM in this kernel
  }
  return { private: priv, pss, pageTables: pte ? Number(pte[1]) * 1024 : 0, merged };
}

function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

async function main(): Promise<void> {
  const k = Number(argValue(process.argv, 'k') ?? 6);
  const memoryMb = Number(argValue(process.argv, 'memory') ?? 64);
  const idleMs = Number(argValue(process.argv, 'idle-ms') ?? 5000);
  const flickdArgs = process.argv.filter((a) => a.startsWith('--flickd-arg=')).map((a) => a.slice('--flickd-arg='.length));
  const host = await BenchHost.start({ tag: 'fbi', pool: '10.219.0.0/16', args: ['--hot-standby-budget', '0', '--primed-pool-mb', '0', ...flickdArgs], log });
  try {
    await host.pushMinimal('bench/hello-min:1');
    const avail0 = meminfo('MemAvailable');
    const pids: number[] = [];
    const wakes: number[] = [];
    const start = async (i: number): Promise<void> => {
      const name = `idle-${i}`;
      const r = await host.api('POST', '/v1/instances', {
        image: 'bench/hello-min:1',
        name,
        memory_mb: memoryMb,
        ports: [{ port: APP_PORT, protocol: 'http' }],
        scale_to_zero: { policy: 'on', cooldown_time_ms: 86_400_000 },
      });
      if (r.status !== 201) throw new Error(`create: HTTP ${r.status} ${r.text}`);
      wakes.push(await host.firstByte(name));
      const view = await host.waitFor(name, 'running', 300_000);
      pids[i] = view.pid;
    };
    await start(0); // boots and makes the template; the rest are its clones
    await forEachLimit(k - 1, 2, (i) => start(i + 1));
    await new Promise((r) => setTimeout(r, idleMs));
    // The first is the VM that booted (the template's): the clones are the rest.
    const clones = pids.filter((_, i) => i > 0);
    const cpu0 = new Map(clones.map((p) => [p, processRunUs(p)]));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 20_000));
    const cpu = clones.map((p) => ((processRunUs(p) - cpu0.get(p)!) / ((performance.now() - t0) * 1000)) * 100);
    // KSM (when the host runs ksmd) merges over a few of its scans: give it time before reading.
    await new Promise((r) => setTimeout(r, Number(argValue(process.argv, 'merge-wait-ms') ?? 0)));
    const parts = clones.map(vmParts).filter((x): x is VmParts => x !== undefined);
    const keys = [...new Set(parts.flatMap((p) => Object.keys(p.private)))].sort();
    const MiB = (b: number) => (b / 2 ** 20).toFixed(2);
    const row: Record<string, number> = {};
    log(`| part | private MiB each | PSS MiB each |`);
    log(`| --- | --- | --- |`);
    for (const key of keys) {
      row[key] = mean(parts.map((p) => p.private[key] ?? 0));
      log(`| ${key} | ${MiB(row[key]!)} | ${MiB(mean(parts.map((p) => p.pss[key] ?? 0)))} |`);
    }
    const privTotal = mean(parts.map((p) => Object.values(p.private).reduce((a, b) => a + b, 0)));
    const pssTotal = mean(parts.map((p) => Object.values(p.pss).reduce((a, b) => a + b, 0)));
    const pte = mean(parts.map((p) => p.pageTables));
    log(`| total | ${MiB(privTotal)} | ${MiB(pssTotal)} |`);
    log(`| page tables | ${MiB(pte)} | |`);
    const merged = mean(parts.map((p) => p.merged));
    log(`| merged by KSM (not in private) | ${MiB(merged)} | |`);
    const drop = (avail0 - meminfo('MemAvailable')) / pids.length;
    const out = { k, clones: clones.length, flickdArgs, env: Object.fromEntries(Object.entries(process.env).filter(([n]) => /^(MALLOC|GLIBC|FLICK_)/.test(n))), private_each: row, private_total_each: privTotal, pss_total_each: pssTotal, page_tables_each: pte, ksm_merged_each: merged, mem_available_drop_each: drop, cpu_percent_each: mean(cpu), cpu_percent_worst: Math.max(...cpu), wake_ms: wakes, load: fs.readFileSync('/proc/loadavg', 'utf8').trim() };
    log(JSON.stringify(out));
    const holdMs = Number(argValue(process.argv, 'hold-ms') ?? 0);
    if (holdMs > 0) {
      log(`holding ${holdMs} ms; clone pids ${clones.join(' ')}`);
      await new Promise((r) => setTimeout(r, holdMs));
    }
  } finally {
    await host.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
