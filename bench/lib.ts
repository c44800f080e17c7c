// Helpers every benchmark shares: percentiles, a plain-text table, and the
// results file (bench/results/<name>.json) that closing notes quote.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

/** Percentiles of a sample (nearest rank, rounded) and its size. */
export interface Distribution {
  p50: number;
  p90: number;
  p99: number;
  n: number;
}

/** A distribution without its tail, for samples too small to have one. */
export type Summary = Omit<Distribution, 'p99'>;

/** Nearest-rank percentile of `values` (p in 0..100). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

export function distribution(values: number[], digits = 1): Distribution {
  const round = (x: number) => Number(x.toFixed(digits));
  return { p50: round(percentile(values, 50)), p90: round(percentile(values, 90)), p99: round(percentile(values, 99)), n: values.length };
}

export function summarize(values: number[], digits = 1): Summary {
  const { p99: _tail, ...summary } = distribution(values, digits);
  return summary;
}

/** Runs `fn(i)` for i in [0, n) with at most `limit` at once; stops early when `stop()` says so. Resolves with how many ran. */
export async function forEachLimit(n: number, limit: number, fn: (i: number) => Promise<void>, stop: () => boolean = () => false): Promise<number> {
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < n && !stop()) {
      const i = next++;
      await fn(i);
      done++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return done;
}

/** Prints rows as an aligned table; the first row is the header. */
export function printTable(rows: Array<Array<string | number>>): void {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length))) ?? [];
  for (const [n, r] of cells.entries()) {
    console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '));
    if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

/** Writes bench/results/<name>.json and returns its path. */
export async function writeResults(name: string, data: unknown): Promise<string> {
  const file = path.join(PACKAGE_ROOT, 'bench', 'results', `${name}.json`);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** The value after `--name` in argv, if any. */
export function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? undefined : argv[i + 1];
}

/** CPU time (µs) process `pid` has used so far, from /proc/<pid>/stat (utime + stime, in clock ticks of 10 ms). */
export function processCpuUs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/**
 * CPU time (µs) process `pid` has run so far, summed over its threads from
 * /proc/<pid>/task/<tid>/schedstat (the scheduler's own nanoseconds): exact at
 * the 0.05 %-of-a-core scale, where utime + stime (10 ms ticks) is one tick in 20 s.
 */
export function processRunUs(pid: number): number {
  let ns = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1000;
}
