// A full host disk under a database: flickd's volumes live on a small tmpfs this
// file mounts (and unmounts), PostgreSQL (examples/postgres, the cached image of
// src/volumes/testing.ts) fills its volume from the host's psql until the host
// has no space left. What a user must see: the instance failed with the reason
// (not a VM hanging while its record says running), no restart into the same
// wall, a volume that is not corrupt, and, once there is space again, a start
// that brings back every committed row.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { api as apiOf, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { freePort } from '../src/network/free-port.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';
import { flickCli, psql as psqlAt, pushPostgresImage, waitState as waitStateOf } from '../src/volumes/testing.js';

const exec = promisify(execFile);
const PREFIX = runPrefix('dfull');
const POOL = runPool(227);
const IMAGE = 'postgres:15';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-full-'));
const dataDir = path.join(tmp, 'data');
const volumesDir = path.join(dataDir, 'volumes');
let mounted = false;
let flickd: FlickdUnderTest | undefined;

/** The tmpfs of a run of this file that died before its `after` (named by its pid): unmounted, its folder removed. */
async function sweepDeadMounts(): Promise<void> {
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [source, target] = line.split(' ');
    const pid = /^flick-test-full-(\d+)$/.exec(source ?? '')?.[1];
    if (pid === undefined || target === undefined || fs.existsSync(`/proc/${pid}`)) continue;
    await exec('umount', ['-l', target]).catch(() => {});
    if (/\/flick-test-full-[^/]+\/data\/volumes$/.test(target)) fs.rmSync(path.dirname(path.dirname(target)), { recursive: true, force: true });
  }
}

before(async () => {
  await sweepDeadRuns('dfull');
  await sweepDeadMounts();
  // Room for the volume's ext4 and initdb (~45 MiB), not for what the test then inserts.
  fs.mkdirSync(volumesDir, { recursive: true });
  await exec('mount', ['-t', 'tmpfs', '-o', 'size=128m,mode=0700', `flick-test-full-${process.pid}`, volumesDir]);
  mounted = true;
  flickd = await startFlickd({ dataDir, prefix: PREFIX, pool: POOL, args: ['--proxy-listen', '127.0.0.1:0', '--hot-standby-budget', '0', '--ready-timeout', '600000'] });
  await pushPostgresImage(flickd.base, flickd.token, IMAGE);
});

after(async () => {
  await removeFlickd(flickd, PREFIX, dataDir);
  if (mounted) await exec('umount', [volumesDir]).catch(() => exec('umount', ['-l', volumesDir]));
  fs.rmSync(tmp, { recursive: true, force: true });
});

function api(method: string, p: string, body?: unknown): ReturnType<typeof apiOf> {
  return apiOf(flickd!, method, p, body);
}
const flick = (...args: string[]) => flickCli(flickd!, ...args);
const waitState = (ref: string, state: string, timeoutMs?: number) => waitStateOf(flickd!, ref, state, timeoutMs);



test('a full host disk: the write pauses the VM, the instance fails saying so and is not restarted, the volume is not corrupt; with space again every committed row is back', async () => {
  assert.equal((await flick('volume', 'create', 'full', '--size', '512M')).code, 0);
  const port = await freePort();
  const created = await api('POST', '/v1/instances', {
    image: IMAGE,
    name: 'db',
    memory_mb: 256,
    ports: [{ port, guest_port: 5432, protocol: 'tcp' }],
    volumes: [{ name: 'full', path: '/data' }],
    restart_policy: 'on-failure',
  });
  assert.equal(created.status, 201, created.text);
  await waitState('db', 'running');
  const psql = (sql: string) => psqlAt('127.0.0.1', port, sql);
  await psql('CREATE TABLE kept (v int); INSERT INTO kept VALUES (42); CREATE TABLE fill (v text)');

  // ~1 KB rows stored inline, uncompressed (below the TOAST threshold): far more than the tmpfs holds.
  const filling = psql("INSERT INTO fill SELECT repeat(md5(random()::text), 30) FROM generate_series(1, 400000)");
  await assert.rejects(filling, 'the client loses its connection: the insert is never committed');

  const failed = await waitState('db', 'failed', 300_000);
  assert.match(failed.error, /the host disk is full: a write to volume "full" failed \(No space left on device\).*free space on the filesystem of .*volumes\/full, then 'flick start db'/);
  assert.equal(failed.pid, null, 'the paused VM was ended');
  const get = await flick('get', 'db');
  assert.match(get.stdout, /state:\s+failed/);
  assert.match(get.stdout, /error:\s+the host disk is full/);
  assert.match((await flick('ls')).stdout, /db\s+failed/);

  // qemu-img check: 0 = clean, 3 = clusters leaked by the failed allocation (space, no harm to data); 2 would be corruption.
  const file = (await api('GET', '/v1/volumes/full')).json.data;
  const check = await exec('qemu-img', ['check', path.join(volumesDir, 'full', 'disk.qcow2')]).then(
    () => 0,
    (e: { code: number; stdout: string }) => {
      assert.doesNotMatch(e.stdout, /corrupt/i, e.stdout);
      return e.code;
    },
  );
  assert.ok(check === 0 || check === 3, `qemu-img check exit ${check}`);
  assert.equal(file.state, 'attached', 'the volume stays with its instance');

  // Not restarted into the same wall, whatever its restart policy says.
  await new Promise((r) => setTimeout(r, 3000));
  const still = (await api('GET', '/v1/instances/db')).json.data;
  assert.equal(still.state, 'failed');
  assert.equal(still.restarts, 0);

  // Space again: the start replays the WAL; the committed row is there, the interrupted insert is not.
  await exec('mount', ['-o', 'remount,size=1g', volumesDir]);
  assert.equal((await api('PUT', '/v1/instances/db/start')).status, 200);
  await waitState('db', 'running');
  assert.equal(await psql('SELECT v FROM kept'), '42');
  assert.equal(await psql('SELECT count(*) FROM fill'), '0');
  assert.equal((await api('DELETE', '/v1/instances/db?force=true')).status, 200);
});
