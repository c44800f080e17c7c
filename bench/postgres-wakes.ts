// The PostgreSQL benchmark's wakes and its peer (bench/postgres.ts): the host's own PostgreSQL
// started cold as a process, suspends that wait until the instance sleeps, and timed wakes checked
// against the wake counters and tiers (hot, cold primed, cold unprimed).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../src/network/free-port.js';
import { psql } from '../src/volumes/testing.js';
import type { BenchHost } from './flickd-host.js';
import { percentile } from './lib.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export interface Dist {
  p50: number;
  p90: number;
  p99: number;
  n: number;
}
export const dist = (xs: number[]): Dist => ({ p50: round(percentile(xs, 50)), p90: round(percentile(xs, 90)), p99: round(percentile(xs, 99)), n: xs.length });
export const round = (x: number, d = 1) => Number(x.toFixed(d));

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** The host's own PostgreSQL: a cluster in a temp folder, run as the postgres user (pg_ctl refuses root). */
export class HostPostgres {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-hostpg-'));
  readonly data = path.join(this.dir, 'data');
  port = 0;

  async init(): Promise<void> {
    fs.chownSync(this.dir, uid('postgres'), uid('postgres'));
    this.port = await freePort();
    this.#as(['initdb', '-D', this.data, '--auth=trust', '--username=postgres', '--no-instructions']);
    fs.appendFileSync(path.join(this.data, 'postgresql.conf'), `port = ${this.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${this.dir}'\nshared_buffers = 32MB\n`);
  }

  /** pg_ctl start → the first SELECT 1 answered over TCP. */
  async coldStart(): Promise<number> {
    const t0 = performance.now();
    this.#as(['pg_ctl', 'start', '-D', this.data, '-W', '-l', path.join(this.dir, 'log')]);
    for (;;) {
      if (spawnSync(`${PG_BIN}/pg_isready`, ['-q', '-h', '127.0.0.1', '-p', String(this.port)]).status === 0) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await psql('127.0.0.1', this.port, 'SELECT 1');
    return performance.now() - t0;
  }

  stop(): void {
    this.#as(['pg_ctl', 'stop', '-D', this.data, '-m', 'fast', '-w']);
  }

  close(): void {
    spawnSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, 'stop', '-D', this.data, '-m', 'immediate']);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  #as(args: string[]): void {
    const [cmd, ...rest] = args;
    const r = spawnSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/${cmd}`, ...rest], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  }
}

export function uid(user: string): number {
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  return Number(line?.split(':')[2] ?? 0);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Suspends `name` and waits until it is in standby of that tier. A suspend is a no-op while the
 * proxy still counts the last client's connection in flight (the API answers with the instance
 * still running): psql's exit can come before the proxy has seen the connection close. So it is
 * asked again until the instance sleeps; before this, most of this benchmark's "wakes" were warm
 * queries of a running instance.
 */
export async function suspend(host: BenchHost, name: string, tier: 'hot' | 'cold'): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await host.must('PUT', `/v1/instances/${name}/suspend?tier=${tier}`);
    if (v.state === 'standby' && v.standby_tier === tier) return;
    if (Date.now() > deadline) throw new Error(`instance ${name} did not go to ${tier} standby: it is ${v.state}`);
    await sleep(5);
  }
}

/** Suspends `name`, times `sql` through the proxy, and checks that it was a wake of that tier; with the wake's breakdown. */
export async function wakeQuery(host: BenchHost, name: string, port: number, tier: 'hot' | 'cold', sql = 'SELECT 1'): Promise<{ ms: number; phases: Record<string, number>; tier: string }> {
  await suspend(host, name, tier);
  return await timedWake(host, name, port, tier, sql);
}

/**
 * A cold wake of `name` as flickd serves it (primed/own-primed.ts) — `primed`: once its saved state
 * was restored paused (the wake binds and resumes that VM); `unprimed`: at once after the save,
 * before the prime's delay (the wake restores). Retried (at most 5 times) until the wake was of that kind.
 */
export async function coldWake(host: BenchHost, name: string, port: number, kind: 'primed' | 'unprimed'): Promise<{ ms: number; phases: Record<string, number>; tier: string }> {
  for (let attempt = 0; ; attempt++) {
    await suspend(host, name, 'cold');
    if (kind === 'primed') await waitPrimed(host);
    const w = await timedWake(host, name, port, 'cold');
    if (w.tier === (kind === 'primed' ? 'primed' : 'cold') || attempt >= 4) {
      if (attempt >= 4) throw new Error(`instance ${name}: 5 cold wakes in a row were not ${kind} (${w.tier})`);
      return w;
    }
  }
}

/** Until a primed VM of a stateful instance waits paused (the bench's only stateful standby at that point). */
export async function waitPrimed(host: BenchHost): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (((await host.must('GET', '/v1/metrics')).primed_pool?.stateful?.vms ?? 0) < 1) {
    if (Date.now() > deadline) throw new Error('no primed VM of the stateful instance within 60 s: is the primed pool off (--primed-pool-mb 0)?');
    await sleep(20);
  }
}

/** Times `sql` on a standby instance through the proxy; fails unless exactly one wake of `tier` answered it. */
export async function timedWake(host: BenchHost, name: string, port: number, tier: 'hot' | 'cold', sql = 'SELECT 1'): Promise<{ ms: number; phases: Record<string, number>; tier: string }> {
  const key = tier === 'hot' ? 'wakes_hot' : 'wakes_cold';
  const before = (await host.must('GET', `/v1/instances/${name}`))[key] as number;
  const ms = await timed(() => psql('127.0.0.1', port, sql));
  const v = await host.must('GET', `/v1/instances/${name}`);
  if (v[key] !== before + 1) throw new Error(`instance ${name}: the query was not answered by one ${tier} wake (${key} ${before} → ${v[key]})`);
  return { ms, phases: v.last_wake?.phases_ms ?? {}, tier: v.last_wake?.tier ?? '' };
}

/** p50 of each phase over the wakes. */
export function phaseP50(wakes: Array<{ phases: Record<string, number> }>): Record<string, number> {
  const names = [...new Set(wakes.flatMap((w) => Object.keys(w.phases)))];
  return Object.fromEntries(names.map((k) => [k, round(percentile(wakes.map((w) => w.phases[k] ?? 0), 50))]));
}

