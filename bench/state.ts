// `npm run bench -- state [--n 200] [--records 10000]`: the state seam's two
// backends side by side, the embedded SQLite store (src/store/) as the peer of
// the etcd one (src/cluster/etcd-state-store.ts, on a real 3-member etcd on
// this machine, lease-fenced as a cluster host writes):
//   create_ms: one create (a shared write: SQLite's commit; etcd's txn);
//   status_write_ms: one status write as the controller sees it (both: a local
//     fsync; etcd publishes behind);
//   publish_lag_ms (etcd only): a status write → seen by another host's store
//     through its watch;
//   open_ms: a store opening with `--records` records, to its reads served
//     (SQLite: read the table; etcd: list, then watch; the host's own records).
// No VM is involved: the accelerator does not bear on these figures (recorded
// as every result is). Writes bench/results/state.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EtcdClient } from '../src/cluster/etcd-client.js';
import { startEtcdCluster } from '../src/cluster/etcd-cluster.js';
import { EtcdStateStore } from '../src/cluster/etcd-state-store.js';
import { encodeRecord, nameKey, recordKey } from '../src/cluster/etcd-state-feed.js';
import { aliveKey } from '../src/cluster/membership.js';
import { newRecord } from '../src/controller/state/contract.js';
import type { StateStore } from '../src/controller/state/state-store.js';
import { SqliteStateStore } from '../src/store/sqlite-state-store.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { argValue, distribution, forEachLimit, printTable, writeResults } from './lib.js';

const n = Number(argValue(process.argv, 'n') ?? 200);
const recordsN = Number(argValue(process.argv, 'records') ?? 10_000);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-state-'));
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function creates(s: StateStore, tag: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await s.create(newRecord(`${tag}-${i}`));
    out.push(ms(t0));
  }
  return out;
}

function statusWrites(s: StateStore, tag: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${tag}-${i}`;
    const t0 = process.hrtime.bigint();
    s.updateStatus(id, s.get(id)!.revision, { state: 'running', pid: 1000 + i });
    out.push(ms(t0));
  }
  return out;
}

const etcd = await startEtcdCluster({ size: 3, dir: path.join(tmp, 'etcd') });
const client = new EtcdClient({ endpoints: etcd.endpoints });
try {
  // SQLite, the peer.
  const sqlite = SqliteStateStore.open(path.join(tmp, 'sqlite', 'state.db'));
  const sqliteCreate = await creates(sqlite, 's');
  const sqliteStatus = statusWrites(sqlite, 's');
  for (let i = 0; i < recordsN; i++) await sqlite.create(newRecord(`big-${i}`));
  await sqlite.close();
  let t0 = process.hrtime.bigint();
  const reopened = SqliteStateStore.open(path.join(tmp, 'sqlite', 'state.db'));
  const sqliteOpen = ms(t0);
  const sqliteListed = reopened.list().length;
  await reopened.close();

  // etcd: two hosts, each with its lease and liveness key, as membership.ts registers them.
  const prefix = '/flick-bench/';
  const register = async (host: string) => {
    const { id } = await client.leaseGrant(60);
    await client.put(aliveKey(prefix, host), '{}', { lease: id });
    return () => id;
  };
  const a = await EtcdStateStore.open({ etcd: client, hostId: 'h-a', prefix, journalFile: path.join(tmp, 'a', 'journal.db'), lease: await register('h-a') });
  const b = await EtcdStateStore.open({ etcd: client, hostId: 'h-b', prefix, journalFile: path.join(tmp, 'b', 'journal.db'), lease: await register('h-b') });
  const etcdCreate = await creates(a, 'e');
  const lag: number[] = [];
  const etcdStatus: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = `e-${i}`;
    const t = process.hrtime.bigint();
    a.updateStatus(id, a.get(id)!.revision, { state: 'running', pid: 1000 + i });
    etcdStatus.push(ms(t));
    while (b.cluster.get(id)?.status.pid !== 1000 + i) await new Promise((r) => setImmediate(r));
    lag.push(ms(t));
  }
  // A burst: every record's status written at once, to the last one seen by the other host.
  t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) a.updateStatus(`e-${i}`, a.get(`e-${i}`)!.revision, { state: 'standby', pid: null });
  const burstWritesMs = ms(t0); // the writes themselves: each durable in the journal before it returns
  while (a.pendingStatus > 0 || b.cluster.get(`e-${n - 1}`)?.status.state !== 'standby') await new Promise((r) => setTimeout(r, 1));
  const burstMs = ms(t0);
  await Promise.all([a.close(), b.close()]);

  // `--records` records of host h-c, written straight into etcd, then h-c's store opening over them.
  const big = '/flick-bench-big/';
  await forEachLimit(recordsN, 32, async (i) => {
    const rec = { ...newRecord(`c-${i}`), owner: 'h-c', updatedAt: new Date().toISOString() };
    await client.txn([], [{ put: { key: nameKey(big, rec.name), value: rec.id } }, { put: { key: recordKey(big, rec.id), value: encodeRecord(rec) } }]);
  });
  t0 = process.hrtime.bigint();
  const c = await EtcdStateStore.open({ etcd: client, hostId: 'h-c', prefix: big, journalFile: path.join(tmp, 'c', 'journal.db') });
  const etcdOpen = ms(t0);
  const etcdListed = c.list().length;
  await c.close();
  const status = await client.status();

  const d = (v: number[]) => distribution(v, 2);
  const results = {
    n,
    records: recordsN,
    create_ms: { sqlite: d(sqliteCreate), etcd: d(etcdCreate) },
    status_write_ms: { sqlite: d(sqliteStatus), etcd: d(etcdStatus) },
    publish_lag_ms: d(lag),
    status_burst: { writes: n, written_ms: Math.round(burstWritesMs), all_published_ms: Math.round(burstMs) },
    open_ms: { sqlite: Math.round(sqliteOpen), etcd: Math.round(etcdOpen), listed: { sqlite: sqliteListed, etcd: etcdListed } },
    etcd_db_bytes: status.dbSize,
  };
  printTable([
    ['measure', 'SQLite', 'etcd (3 members)'],
    ['create p50 / p99 (ms)', `${results.create_ms.sqlite.p50} / ${results.create_ms.sqlite.p99}`, `${results.create_ms.etcd.p50} / ${results.create_ms.etcd.p99}`],
    ['status write p50 / p99 (ms)', `${results.status_write_ms.sqlite.p50} / ${results.status_write_ms.sqlite.p99}`, `${results.status_write_ms.etcd.p50} / ${results.status_write_ms.etcd.p99}`],
    ['status write → other host p50 / p99 (ms)', '—', `${results.publish_lag_ms.p50} / ${results.publish_lag_ms.p99}`],
    [`${n} status writes at once: written / all seen by the other host (ms)`, '—', `${results.status_burst.written_ms} / ${results.status_burst.all_published_ms}`],
    [`open with ${recordsN} records (ms)`, `${results.open_ms.sqlite} (${sqliteListed})`, `${results.open_ms.etcd} (${etcdListed})`],
  ]);
  const accel = await new QemuDriver({ log: () => {} }).accelerator();
  const file = await writeResults('state', { accel, results, details: { loadavg: os.loadavg(), etcd_members: 3 } });
  console.log(`accelerator: ${accel} (no VM here); load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (a shared machine)`);
  console.log(`\nwrote ${file}`);
} finally {
  await client.close();
  await etcd.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
}
