// Volumes with a real database: one flickd with its proxy, the unchanged
// Dockerfile of examples/postgres (built once and cached, see
// src/volumes/testing.ts), Debian's PostgreSQL 15 in real microVMs, and the
// host's own psql talking to it through the proxy's TCP port. Every test
// asserts what a psql user sees: the rows they committed, or a clear refusal.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api as apiOf, removeFlickd, startFlickd, until, type FlickdUnderTest } from '../src/daemon/testing.js';
import { isAlive } from '../src/vmm/qemu/qemu-process.js';
import { freePort, stablePort } from '../src/network/free-port.js';
import { DEFAULT_NETNS_POOL_SIZE } from '../src/network/namespace-pool.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import { flickCli, psql as psqlAt, pushPostgresImage, waitState as waitStateOf } from '../src/volumes/testing.js';

// Run-scoped (src/network/run-scoped.ts): two runs of this file at once (two worktrees) never sweep each other's.
const PREFIX = runPrefix('pgvt');
const POOL = runPool(219);
const IMAGE = 'postgres:15';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-pg-'));
const dataDir = path.join(tmp, 'data');
let flickd: FlickdUnderTest | undefined;
let pgPort = 0;

// initdb at a first start takes minutes under TCG on a busy machine.
const FLICKD_ARGS = ['--proxy-listen', '127.0.0.1:0', '--hot-standby-budget', '0', '--ready-timeout', '600000'];

before(async () => {
  await sweepDeadRuns('pgvt');
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: FLICKD_ARGS });
  await pushPostgresImage(flickd.base, flickd.token, IMAGE);
  pgPort = await stablePort();
});

after(async () => {
  await removeFlickd(flickd, PREFIX, dataDir);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function api(method: string, p: string, body?: unknown): ReturnType<typeof apiOf> {
  return apiOf(flickd!, method, p, body);
}
const flick = (...args: string[]) => flickCli(flickd!, ...args);
const waitState = (ref: string, state: string, timeoutMs?: number) => waitStateOf(flickd!, ref, state, timeoutMs);

/** psql from the host through the proxy's TCP port: the rows, one per line (-At). */
function psql(port: number, sql: string): Promise<string> {
  return psqlAt('127.0.0.1', port, sql);
}


async function runPostgres(name: string, volume: string, port: number, extra: Record<string, unknown> = {}): Promise<any> {
  const r = await api('POST', '/v1/instances', {
    image: IMAGE,
    name,
    memory_mb: 256,
    ports: [{ port, guest_port: 5432, protocol: 'tcp' }],
    volumes: [{ name: volume, path: '/data' }],
    scale_to_zero: { policy: 'idle', cooldown_time_ms: 3000, stateful: true },
    ...extra,
  });
  assert.equal(r.status, 201, r.text);
  return waitState(name, 'running');
}

test('a database on a volume: initdb at first start, rows survive standby + wake through the proxy and a stop + start', async () => {
  const created = await flick('volume', 'create', 'pgdata', '--size', '1G', '-o', 'json');
  assert.equal(created.code, 0, created.stderr);
  assert.equal(JSON.parse(created.stdout).size_bytes, 2 ** 30);
  await runPostgres('pg', 'pgdata', pgPort);
  await psql(pgPort, 'CREATE TABLE t (v int); INSERT INTO t VALUES (1)');
  const ls = await flick('volume', 'ls');
  assert.match(ls.stdout, /pgdata\s+1G\s+\S+\s+attached/);

  const asleep = await waitState('pg', 'standby', 60_000);
  assert.equal(asleep.pid, null, 'stateful cold standby: no VMM process');
  assert.equal(await psql(pgPort, 'SELECT v FROM t'), '1', 'the next connection wakes it, the row is there');
  assert.ok((await api('GET', '/v1/instances/pg')).json.data.wakes >= 1);

  assert.equal((await api('PUT', '/v1/instances/pg/stop')).status, 200);
  assert.equal((await api('PUT', '/v1/instances/pg/start')).status, 200);
  await waitState('pg', 'running');
  assert.equal(await psql(pgPort, 'SELECT v FROM t'), '1');
});

test('crash safety: QEMU killed -9 right after a committed insert, then flickd killed -9: no committed row is lost', async () => {
  await psql(pgPort, 'INSERT INTO t VALUES (2)');
  const { pid } = (await api('GET', '/v1/instances/pg')).json.data;
  assert.ok(pid > 0, 'the instance runs');
  process.kill(pid, 'SIGKILL');
  const dead = await waitState('pg', 'failed', 30_000);
  assert.match(dead.error, /exited/);
  assert.equal((await api('PUT', '/v1/instances/pg/start')).status, 200);
  await waitState('pg', 'running');
  assert.equal(await psql(pgPort, 'SELECT string_agg(v::text, \',\' ORDER BY v) FROM t'), '1,2');

  await psql(pgPort, 'INSERT INTO t VALUES (3)');
  flickd!.process.kill('SIGKILL');
  await flickd!.stop();
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: FLICKD_ARGS });
  await waitState('pg', 'running');
  assert.equal(await psql(pgPort, 'SELECT string_agg(v::text, \',\' ORDER BY v) FROM t'), '1,2,3');
});

test('one writer: a second attach is 409 and leaves nothing; rm of an attached volume is 409; a clone sees the data and diverges; rm + a new instance on the same volume', async () => {
  const second = await api('POST', '/v1/instances', { image: IMAGE, name: 'pg2', volumes: [{ name: 'pgdata', path: '/data' }] });
  assert.equal(second.status, 409, second.text);
  assert.equal(second.json.error.code, 'VOLUME_IN_USE');
  assert.match(second.json.error.message, /volume "pgdata" is attached to instance .*one writer at a time/);
  assert.equal((await api('GET', '/v1/instances/pg2')).status, 404, 'the refused instance was not created');
  const rm = await flick('volume', 'rm', 'pgdata');
  assert.notEqual(rm.code, 0);
  assert.match(rm.stderr, /attached to instance/);

  // A volume open in a VMM process cannot be cloned (unit-tested in src/volumes); in cold standby it can. Not
  // asserted here: with a 3 s cooldown the instance may already be asleep, which is the case this test wants.
  assert.equal((await api('PUT', '/v1/instances/pg/suspend?tier=cold')).status, 200);
  const clone = await flick('volume', 'clone', 'pgdata', 'pgcopy', '-o', 'json');
  assert.equal(clone.code, 0, clone.stderr);
  assert.ok(JSON.parse(clone.stdout).allocated_bytes < 1024 * 1024, 'a clone is under 1 MiB until written');

  // The source, woken from its snapshot over its new head, still has its rows.
  assert.equal(await psql(pgPort, 'SELECT count(*) FROM t'), '3');
  assert.equal((await api('DELETE', '/v1/instances/pg?force=true')).status, 200);
  await runPostgres('pgb', 'pgdata', pgPort);
  assert.equal(await psql(pgPort, 'SELECT string_agg(v::text, \',\' ORDER BY v) FROM t'), '1,2,3', 'a new instance on the same volume');

  const copyPort = await freePort();
  await runPostgres('pgc', 'pgcopy', copyPort);
  assert.equal(await psql(copyPort, 'SELECT count(*) FROM t'), '3', 'the clone starts with the source data');
  await psql(copyPort, 'INSERT INTO t VALUES (4)');
  await psql(pgPort, 'INSERT INTO t VALUES (5)');
  assert.equal(await psql(copyPort, 'SELECT string_agg(v::text, \',\' ORDER BY v) FROM t'), '1,2,3,4');
  assert.equal(await psql(pgPort, 'SELECT string_agg(v::text, \',\' ORDER BY v) FROM t'), '1,2,3,5');
  assert.equal((await api('DELETE', '/v1/instances/pgc?force=true')).status, 200);
});

test(':ro mounts refuse writes', async () => {
  // The entrypoint skips initdb (the clone has a database) and runs the command given instead of postgres.
  const r = await flick('run', '--name', 'ro', '-d', '-v', 'pgcopy:/data:ro', IMAGE, 'sh', '-c', 'touch /data/probe && echo WROTE || echo REFUSED; cat /data/pgdata/PG_VERSION');
  assert.equal(r.code, 0, r.stderr);
  // Its command ends before anything listens on the image's port, so the start ends (in `failed`); the log says why.
  const deadline = Date.now() + 300_000;
  while ((await api('GET', '/v1/instances/ro')).json.data.state === 'starting' && Date.now() < deadline) await new Promise((res) => setTimeout(res, 500));
  const log = (await api('GET', '/v1/instances/ro/log')).text;
  assert.match(log, /Read-only file system/);
  assert.match(log, /REFUSED\r?\n15/);
  assert.equal((await api('DELETE', '/v1/instances/ro')).status, 200);
});

test('bad input is refused with a clear 4xx and leaves nothing half-made', async () => {
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['/v1/volumes', { name: 'x1', size: 'lots' }, 400, 'VOLUME_INVALID', /size "lots" is not a size: give a size such as 1G/],
    ['/v1/volumes', { name: 'x1', size: '1M' }, 400, 'VOLUME_INVALID', /too small/],
    ['/v1/volumes', { name: '../etc', size: '1G' }, 400, 'VOLUME_INVALID', /volume name "..\/etc" is not valid/],
    ['/v1/volumes', { name: 'pgdata', size: '1G' }, 409, 'VOLUME_EXISTS', /already exists/],
    ['/v1/instances', { image: IMAGE, name: 'nov', volumes: [{ name: 'missing', path: '/data' }] }, 404, 'VOLUME_NOT_FOUND', /volume "missing" not found: create it with 'flick volume create missing/],
    ['/v1/instances', { image: IMAGE, name: 'badp', volumes: [{ name: 'pgcopy', path: '/proc' }] }, 400, 'VOLUME_INVALID', /system folder/],
    ['/v1/volumes/pgdata/clone', { name: 'a/../b' }, 400, 'VOLUME_INVALID', /is not valid/],
  ];
  for (const [p, body, status, code, message] of cases) {
    const r = await api('POST', p, body);
    assert.equal(r.status, status, `${p} ${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.error.code, code);
    assert.match(r.json.error.message, message);
  }
  const run = await flick('run', '-d', '-v', 'pgdata', IMAGE);
  assert.equal(run.code, 64, 'a malformed -v is a usage error');
  assert.match(run.stderr, /is not NAME:\/path or NAME:\/path:ro/);
  const names = (await api('GET', '/v1/volumes')).json.data.volumes.map((v: { name: string }) => v.name);
  assert.deepEqual(names.sort(), ['pgcopy', 'pgdata']);
  const instances = (await api('GET', '/v1/instances')).json.data.instances.map((i: { name: string }) => i.name);
  assert.deepEqual(instances, ['pgb']);
  assert.deepEqual(fs.readdirSync(path.join(dataDir, 'volumes', '.tmp')), []);
});

test('fork: of a standby database and of a running one (mid-query), each fork sees the source rows, then they diverge; bad forks make nothing', async () => {
  const rows = (port: number) => psql(port, "SELECT string_agg(v::text, ',' ORDER BY v) FROM t");
  // A standby source: its saved state copied, its volume cloned copy-on-write.
  assert.equal((await api('PUT', '/v1/instances/pgb/suspend?tier=cold')).status, 200);
  await waitState('pgb', 'standby', 120_000);
  const forkPort = await stablePort();
  const cold = await flick('fork', 'pgb', 'pgf', '-p', `${forkPort}:5432`, '-o', 'json');
  assert.equal(cold.code, 0, cold.stderr);
  const pgf = JSON.parse(cold.stdout);
  assert.equal(pgf.state, 'standby');
  assert.equal(pgf.fork.mode, 'cold');
  assert.deepEqual(pgf.volumes, [{ name: 'pgf-pgdata', path: '/data', read_only: false }]);
  const vol = (await api('GET', '/v1/volumes/pgf-pgdata')).json.data;
  assert.equal(vol.cloned_from, 'pgdata');
  assert.ok(vol.allocated_bytes < 1024 * 1024, `a standby fork's volume is a clone: ${vol.allocated_bytes} bytes`);
  assert.equal(await rows(forkPort), '1,2,3,5', 'the fork wakes with the source rows');
  await psql(forkPort, 'INSERT INTO t VALUES (6)');
  await psql(pgPort, 'INSERT INTO t VALUES (7)');
  assert.equal(await rows(forkPort), '1,2,3,5,6');
  assert.equal(await rows(pgPort), '1,2,3,5,7');

  // A running source, with a client's query in flight (so it cannot go to standby meanwhile):
  // paused, its volume cloned copy-on-write while QEMU moves to the new head, saved, resumed; the
  // client's query still gets its answer.
  const inFlight = psql(pgPort, 'SELECT count(*) FROM t, pg_sleep(20)');
  inFlight.catch(() => {});
  const deadline = Date.now() + 120_000;
  while ((await psql(pgPort, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' AND pid <> pg_backend_pid()")) !== '1') {
    assert.ok(Date.now() < deadline, 'the sleeping query shows up in pg_stat_activity');
    await new Promise((r) => setTimeout(r, 200));
  }
  const before = (await api('GET', '/v1/instances/pgb')).json.data;
  assert.equal(before.state, 'running');
  const livePort = await stablePort();
  const live = await api('POST', '/v1/instances/pgb/fork', { name: 'pgl', ports: [{ port: livePort, guest_port: 5432, protocol: 'tcp' }] });
  assert.equal(live.status, 201, live.text);
  assert.equal(live.json.data.fork.mode, 'live');
  const after = (await api('GET', '/v1/instances/pgb')).json.data;
  assert.equal(after.state, 'running', 'the source runs on');
  assert.equal(after.pid, before.pid, 'in the same QEMU process');
  assert.equal(await inFlight, '5', "the source's client got its answer across the fork");
  const liveVol = (await api('GET', '/v1/volumes/pgl-pgdata')).json.data;
  assert.equal(liveVol.cloned_from, 'pgdata');
  assert.ok(liveVol.allocated_bytes < 1024 * 1024, `a live fork's volume is a copy-on-write clone: ${liveVol.allocated_bytes} bytes`);
  assert.equal(await rows(livePort), '1,2,3,5,7', 'the live fork wakes with the source rows');
  await psql(livePort, 'INSERT INTO t VALUES (8)');
  await psql(pgPort, 'INSERT INTO t VALUES (9)');
  assert.equal(await rows(livePort), '1,2,3,5,7,8');
  assert.equal(await rows(pgPort), '1,2,3,5,7,9');
  assert.equal(await rows(forkPort), '1,2,3,5,6');
  // Both keep what they committed after the split: the source across a cold standby (its next QEMU
  // opens the new head by name), the fork across a stop and a boot (PostgreSQL recovers from its disk).
  assert.equal((await api('PUT', '/v1/instances/pgb/suspend?tier=cold')).status, 200);
  await waitState('pgb', 'standby', 120_000);
  assert.equal(await rows(pgPort), '1,2,3,5,7,9', 'the source woke with its rows after the split');
  assert.equal((await flick('stop', 'pgl')).code, 0);
  assert.equal((await flick('start', 'pgl')).code, 0);
  await waitState('pgl', 'running', 300_000);
  assert.equal(await rows(livePort), '1,2,3,5,7,8', 'the fork booted with its rows after the split');

  // Bad forks: a clear 4xx, and nothing made.
  assert.equal((await api('POST', '/v1/instances', { image: IMAGE, name: 'plain', autostart: false })).status, 201);
  const free = await stablePort();
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['ghost', { name: 'x1', ports: [{ port: free, guest_port: 5432, protocol: 'tcp' }] }, 404, 'INSTANCE_NOT_FOUND', /instance "ghost" not found/],
    ['pgb', { name: 'pgf', ports: [{ port: free, guest_port: 5432, protocol: 'tcp' }] }, 409, 'NAME_TAKEN', /"pgf" already exists/],
    ['pgb', { name: 'x1' }, 400, 'INVALID_SPEC', /serves TCP on host port \d+ \(guest 5432\): give the fork a host port of its own/],
    ['pgb', { name: 'x1', ports: [{ port: pgPort, guest_port: 5432, protocol: 'tcp' }] }, 400, 'INVALID_SPEC', /host port \d+ is taken by instance "pgb"/],
    ['pgb', { name: 'x1', ports: [{ port: free, guest_port: 5432, protocol: 'tcp' }], volumes: { pgdata: 'pgcopy' } }, 409, 'VOLUME_EXISTS', /volume "pgcopy" already exists/],
    ['pgb', { name: 'Bad_Name' }, 400, 'INVALID_SPEC', /instance name "Bad_Name" is not valid/],
    ['plain', { name: 'x1' }, 409, 'ILLEGAL_TRANSITION', /it is stateless/],
  ];
  for (const [src, body, status, code, message] of cases) {
    const r = await api('POST', `/v1/instances/${src}/fork`, body);
    assert.equal(r.status, status, `fork ${src} ${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.error.code, code);
    assert.match(r.json.error.message, message);
  }
  assert.equal((await api('DELETE', '/v1/instances/plain')).status, 200);
  const names = (await api('GET', '/v1/volumes')).json.data.volumes.map((v: { name: string }) => v.name);
  assert.deepEqual(names.sort(), ['pgcopy', 'pgdata', 'pgf-pgdata', 'pgl-pgdata']);
  const instances = (await api('GET', '/v1/instances')).json.data.instances;
  assert.deepEqual(instances.map((i: { name: string }) => i.name).sort(), ['pgb', 'pgf', 'pgl']);
  assert.deepEqual(fs.readdirSync(path.join(dataDir, 'instances')).sort(), instances.map((i: { id: string }) => i.id).sort(), 'no folder of a refused fork');
  assert.deepEqual(fs.readdirSync(path.join(dataDir, 'volumes', '.tmp')), []);
});

/** Bytes a folder takes on disk (allocated blocks), files counted once. */
function du(dir: string): number {
  let total = 0;
  if (!fs.existsSync(dir)) return 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += fs.statSync(path.join(e.parentPath, e.name)).blocks * 512;
  }
  return total;
}

test('shared forks (the density path): many forks of one standby database share its saved state, each is a few hundred KiB, sees the rows, diverges, and keeps its own state across standby', async () => {
  // On failure, what flickd said (a wake that failed says so only there).
  const rows = (port: number) => psql(port, "SELECT string_agg(v::text, ',' ORDER BY v) FROM t").catch((e: unknown) => {
    throw new Error(`${String(e)}\n${flickd!.log().slice(-8000)}`);
  });
  // (A shared fork of a running instance is refused: unit-tested in src/controller/fork.test.ts.)
  assert.equal((await api('PUT', '/v1/instances/pgb/suspend?tier=cold')).status, 200);
  await waitState('pgb', 'standby', 120_000);
  const forks: Array<{ name: string; port: number; id: string }> = [];
  for (const name of ['pgs0', 'pgs1', 'pgs2']) {
    const port = await stablePort();
    const r = await flick('fork', 'pgb', name, '-p', `${port}:5432`, '--shared', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const view = JSON.parse(r.stdout);
    assert.equal(view.fork.mode, 'shared');
    assert.equal(view.state, 'standby');
    forks.push({ name, port, id: view.id });
  }
  // Until it wakes, a shared fork is its record, its folder and its volume's head.
  for (const f of forks) {
    const bytes = du(path.join(dataDir, 'instances', f.id)) + du(path.join(dataDir, 'volumes', `${f.name}-pgdata`));
    assert.ok(bytes < 1024 * 1024, `${f.name} takes ${bytes} bytes of disk`);
  }
  assert.equal(fs.readdirSync(path.join(dataDir, 'templates')).filter((n) => n.startsWith('fork-')).length, 1, 'one shared template for all of them');

  assert.equal(await rows(forks[0]!.port), '1,2,3,5,7,9', 'a shared fork wakes with the source rows');
  assert.equal(await rows(forks[1]!.port), '1,2,3,5,7,9');
  await psql(forks[0]!.port, 'INSERT INTO t VALUES (10)');
  await psql(forks[1]!.port, 'INSERT INTO t VALUES (11)');
  assert.equal(await rows(forks[0]!.port), '1,2,3,5,7,9,10');
  assert.equal(await rows(forks[1]!.port), '1,2,3,5,7,9,11');
  // Its next standby saves state of its own (the guest's RAM was the template's, copy-on-write); the wake after it has its row.
  assert.equal((await api('PUT', `/v1/instances/${forks[0]!.name}/suspend?tier=cold`)).status, 200);
  await waitState(forks[0]!.name, 'standby', 120_000);
  assert.equal(await rows(forks[0]!.port), '1,2,3,5,7,9,10', 'the fork keeps its own state across standby');
  assert.equal(await rows(pgPort), '1,2,3,5,7,9', 'the source wakes from its own state, untouched');
  assert.equal(await rows(forks[2]!.port), '1,2,3,5,7,9', 'a fork that slept through all of it still starts from the shared state');
});

/** The primed VMs (data dir's primed/) whose VM config names `volume`'s disk: folder, QEMU pid (if one runs) and namespace. */
function primedOn(volume: string): Array<{ dir: string; pid: number | undefined; netns: string | undefined }> {
  const root = path.join(dataDir, 'primed');
  const out: Array<{ dir: string; pid: number | undefined; netns: string | undefined }> = [];
  for (const n of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    const dir = path.join(root, n);
    let config: { drives?: Array<{ file: string }>; network?: { netns?: string } } = {};
    try {
      config = JSON.parse(fs.readFileSync(path.join(dir, 'vm.json'), 'utf8')).config;
    } catch {
      continue; // being made or removed
    }
    if (!(config.drives ?? []).some((d) => d.file.includes(`/volumes/${volume}/`))) continue;
    const pid = fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)).map(Number).find((p) => {
      try {
        const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
        return cmd.includes('qemu-system') && cmd.includes(`${dir}/run/`) && isAlive(p);
      } catch {
        return false;
      }
    });
    out.push({ dir, pid, netns: config.network?.netns });
  }
  return out;
}

/**
 * This run's namespaces with no process in them. The pool keeps up to DEFAULT_NETNS_POOL_SIZE ready
 * ones, made ahead and named by slot (a released slot's name is soon made again), so a namespace a
 * dropped VM left behind shows only as one more than that.
 */
function idleNamespaces(): string[] {
  const names = fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => n.startsWith(PREFIX)) : [];
  return names.filter((n) => {
    try {
      return execFileSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).trim() === '';
    } catch {
      return false; // removed meanwhile
    }
  });
}

test('primed standby database: soon after it sleeps its saved state is restored paused; the wake resumes that VM with every committed row; a volume clone, a fork and an rm each end it first, leaving no QEMU, namespace or folder', async () => {
  const rows = (port: number) => psql(port, "SELECT string_agg(v::text, ',' ORDER BY v) FROM t").catch((e: unknown) => {
    throw new Error(`${String(e)}\n${flickd!.log().slice(-8000)}`);
  });
  const sleepPrimed = async (what: string) => {
    await until(`pgb in cold standby (${what})`, async () => {
      const v = (await api('PUT', '/v1/instances/pgb/suspend?tier=cold')).json.data;
      return v?.state === 'standby' && v.standby_tier === 'cold' ? true : undefined;
    }, 120_000);
    const [primed] = await until(`a primed VM of pgb's saved state (${what})`, async () => {
      const p = primedOn('pgdata');
      return p.length === 1 && p[0]!.pid !== undefined ? p : undefined;
    }, 120_000);
    assert.equal((await api('GET', '/v1/instances/pgb')).json.data.pid, null, 'the instance itself holds no VM in cold standby');
    return primed!;
  };
  const gone = async (p: { dir: string; pid: number | undefined; netns: string | undefined }, after: string) => {
    assert.deepEqual(primedOn('pgdata'), [], `no primed VM of pgb after ${after}`);
    assert.ok(!isAlive(p.pid!), `its QEMU ${p.pid} ended (${after})`);
    assert.ok(!fs.existsSync(p.dir), `its folder went (${after})`);
    assert.ok(p.netns?.startsWith(PREFIX), `it ran in a namespace of the pool: ${p.netns}`);
    // No namespace without a VM beyond the pool's ready ones (the pool may still be refilling: polled).
    await until(`no namespace left behind (${after})`, async () => (idleNamespaces().length <= DEFAULT_NETNS_POOL_SIZE ? true : undefined), 30_000);
  };

  await psql(pgPort, 'INSERT INTO t VALUES (12)');
  const first = await sleepPrimed('after a commit');
  assert.equal(await rows(pgPort), '1,2,3,5,7,9,12', 'woken through the primed VM, every committed row is there');
  const woken = (await api('GET', '/v1/instances/pgb')).json.data;
  assert.equal(woken.last_wake?.tier, 'primed', JSON.stringify(woken.last_wake));
  assert.equal(woken.pid, first.pid, 'the instance runs in the primed QEMU');
  await psql(pgPort, 'INSERT INTO t VALUES (13)');

  // A volume clone ends the primed VM before it freezes the disk that VM holds open.
  const beforeClone = await sleepPrimed('before a volume clone');
  const clone = await flick('volume', 'clone', 'pgdata', 'pgp-copy', '-o', 'json');
  assert.equal(clone.code, 0, clone.stderr);
  await gone(beforeClone, 'a volume clone');
  assert.equal(await rows(pgPort), '1,2,3,5,7,9,12,13', 'woken after the clone (restored afresh over its new head)');
  assert.equal((await api('GET', '/v1/instances/pgb')).json.data.last_wake?.tier, 'cold');

  // A fork of the standby database, likewise; the fork has the rows.
  const beforeFork = await sleepPrimed('before a fork');
  const forkPort = await stablePort();
  const fork = await flick('fork', 'pgb', 'pgp-f', '-p', `${forkPort}:5432`, '-o', 'json');
  assert.equal(fork.code, 0, fork.stderr);
  await gone(beforeFork, 'a fork');
  assert.equal(await rows(forkPort), '1,2,3,5,7,9,12,13', 'the fork wakes with the source rows');
  assert.equal((await api('DELETE', '/v1/instances/pgp-f?force=true')).status, 200);

  // rm of the standby database.
  assert.equal(await rows(pgPort), '1,2,3,5,7,9,12,13');
  const beforeRm = await sleepPrimed('before rm');
  assert.equal((await api('DELETE', '/v1/instances/pgb?force=true')).status, 200);
  await gone(beforeRm, 'rm');
  for (const v of ['pgp-copy', 'pgp-f-pgdata']) assert.equal((await flick('volume', 'rm', v)).code, 0, `volume ${v} removed`);
});
