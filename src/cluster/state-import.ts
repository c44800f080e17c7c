// A cluster host's state store (EtcdStateStore, its journal in the data dir),
// opened once what its SQLite days left is imported. A host that ran on SQLite (a host of its own, or a cluster host of an earlier
// flickd, whose records stayed in its state.db) brings its records into etcd
// once, before its first reconcile there: each record of <data-dir>/state.db
// goes in as this host's, in one txn that requires its id and its name to be
// free in etcd (so a replay changes nothing), then state.db is renamed
// state.db.imported. A flickd killed half way imports the rest at its next start
// (records already in etcd are skipped). A record whose name another host's
// instance holds fails the start (NAME_TAKEN, naming both) before state.db is
// renamed: nothing of it is dropped or orphaned; the user removes one and restarts.
import fs from 'node:fs';
import path from 'node:path';
import { SqliteStateStore } from '../store/sqlite-state-store.js';
import type { EtcdClient } from './etcd-client.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { encodeRecord, nameKey, recordKey, tryDecode } from './etcd-state-feed.js';
import { unavailable } from './etcd-state-txn.js';
import { EtcdStateStore } from './etcd-state-store.js';
import { describeError } from '../errors.js';
import { StateError } from '../controller/state/state-store.js';

export interface ImportResult {
  imported: number;
  /** Already in etcd (a start killed half way, or imported by hand). */
  present: number;
  /** Names another host's instance holds: `name (id)`. */
  nameTaken: string[];
  /** The same, each with the host holding its name (undefined: unreadable). */
  taken: Array<{ name: string; id: string; holder: string | undefined }>;
}

/** Puts `records` into etcd as `hostId`'s, each in one txn requiring its id and its name free. */
async function putRecords(c: { etcd: EtcdClient; prefix: string; hostId: string }, records: readonly InstanceRecord[], what: string): Promise<ImportResult> {
  const result: ImportResult = { imported: 0, present: 0, nameTaken: [], taken: [] };
  for (const rec of records) {
    const key = recordKey(c.prefix, rec.id);
    const names = nameKey(c.prefix, rec.name);
    const r = await c.etcd
      .txn(
        [{ key: names, target: 'CREATE', result: 'EQUAL', value: 0 }, { key, target: 'CREATE', result: 'EQUAL', value: 0 }],
        [{ put: { key: names, value: rec.id } }, { put: { key, value: encodeRecord({ ...rec, owner: c.hostId }) } }],
        [{ range: { key } }, { range: { key: names } }],
      )
      .catch((err: unknown) => unavailable(err, `importing instance "${rec.name}" ${what} into the cluster's state`));
    if (r.succeeded) result.imported++;
    else if (r.ranges[0]?.[0] !== undefined) result.present++;
    else {
      result.nameTaken.push(`${rec.name} (${rec.id})`);
      const holderId = r.ranges[1]?.[0]?.value;
      const kv = holderId === undefined ? undefined : await c.etcd.get(recordKey(c.prefix, holderId)).catch(() => undefined);
      result.taken.push({ name: rec.name, id: rec.id, holder: kv ? tryDecode(kv)?.owner : undefined });
    }
  }
  return result;
}

/** Imports `<dataDir>/state.db` into etcd as `hostId`'s records, if there is one; undefined if there was none. */
export async function importSqliteState(c: { etcd: EtcdClient; prefix: string; hostId: string; dataDir: string; log: (line: string) => void }): Promise<ImportResult | undefined> {
  const file = path.join(c.dataDir, 'state.db');
  if (!fs.existsSync(file)) return undefined;
  const sqlite = SqliteStateStore.open(file, { hostId: c.hostId });
  let result: ImportResult;
  try {
    result = await putRecords(c, sqlite.list(), `of ${file}`);
  } finally {
    await sqlite.close();
  }
  if (result.taken.length > 0) {
    // Before the rename: the start fails, and the next one imports the rest once the user chose.
    const each = result.taken.map((t) => `instance "${t.name}" (${t.id}) of ${file}: ${t.holder ? `host ${t.holder}` : 'another host'} has that name; remove one of them ('flick rm ${t.name}' there) and restart flickd`);
    throw new StateError('NAME_TAKEN', `cannot join the cluster: ${each.join('; ')}`, { kind: 'user', details: { taken: result.taken } });
  }
  for (const suffix of ['', '-wal', '-shm']) if (fs.existsSync(file + suffix)) fs.renameSync(file + suffix, `${file}.imported${suffix}`);
  c.log(`cluster: imported ${result.imported} instance record(s) of ${file} into etcd (${result.present} there already); the file is now ${path.basename(file)}.imported`);
  return result;
}

/**
 * The store a cluster host's controller runs on: its state.db imported first (if any), then
 * EtcdStateStore with its journal at `<dataDir>/cluster-state.db`. `lease` is undefined until the
 * host joins (it reconciles first): shared writes are NOT_OWNER, status publishes wait until then.
 */
export async function openClusterState(c: { etcd: EtcdClient; prefix: string; hostId: string; dataDir: string; lease: () => string | undefined; log: (line: string) => void }): Promise<EtcdStateStore> {
  await importSqliteState(c);
  const store = await EtcdStateStore.open({
    etcd: c.etcd,
    prefix: c.prefix,
    hostId: c.hostId,
    journalFile: path.join(c.dataDir, 'cluster-state.db'),
    lease: c.lease,
    onTrouble: (err) => c.log(`cluster state: ${describeError(err)}`),
  });
  await restoreVanished(store, c).catch(async (err: unknown) => {
    await store.close();
    throw err;
  });
  return store;
}

/**
 * This host's records as it last knew them that etcd no longer has at all. If etcd's revision is below
 * the one this host last saw (the journal keeps it: etcd was emptied, or restored from an older backup,
 * while this host was down), they were lost: they go back in as its own, as an import does, before it
 * reconciles (one whose name another instance took meanwhile stays out, logged). Otherwise they were
 * removed (flick rm on another host) while it was down: left out, for the agent to release.
 */
async function restoreVanished(store: EtcdStateStore, c: { etcd: EtcdClient; prefix: string; hostId: string; log: (line: string) => void }): Promise<void> {
  const vanished = store.leftWhileAway.filter((r) => store.cluster.get(r.id) === undefined);
  if (vanished.length === 0) return;
  if (!store.etcdLost) {
    c.log(`cluster: ${vanished.length} instance record(s) of this host were removed from the cluster while it was down (${vanished.map((r) => r.name).join(', ')}): released here`);
    return;
  }
  const result = await putRecords(c, vanished, 'from this host\'s cache');
  // Read back through the store's watch before reconcile runs on it.
  for (const deadline = Date.now() + 10_000; Date.now() < deadline && vanished.some((r) => store.cluster.get(r.id) === undefined); ) await new Promise((r) => setTimeout(r, 20));
  const taken = result.nameTaken.length > 0 ? `; not restored, their names taken meanwhile: ${result.nameTaken.join(', ')}` : '';
  c.log(`cluster: ${vanished.length} instance record(s) of this host were no longer in etcd (emptied or restored while it was down): ${result.imported} put back as this host's${taken}`);
}
