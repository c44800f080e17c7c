// The cluster's instance catalog in etcd: one key per instance name,
//   <prefix>instances/<name> → { owner, id on the owner, the config to create it again, … }
// Names are unique across the cluster. Every write of an entry is an ownership
// write, fenced in one txn on two things: the entry's mod_revision as the writer
// last saw it (CREATE == 0 for a new name), and the writer's own liveness key
// being held by the writer's current lease, so a host whose lease lapsed (cut
// off, stalled, killed) can no longer take, keep or hand on anything.
import { z } from 'zod';
import { FlickError } from '../errors.js';
import { EtcdError, type EtcdClient, type KeyValue } from './etcd-client.js';
import { aliveKey } from './membership.js';
import { holdsLease, leaseFence } from './etcd-state-txn.js';
import { parseImageReference } from '../registry/names.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';

export type CatalogErrorCode = 'CLUSTER_UNAVAILABLE' | 'NAME_TAKEN' | 'NOT_OWNER' | 'HOST_DOWN' | 'HOST_UNKNOWN';
export class CatalogError extends FlickError<CatalogErrorCode> {}

export const CatalogEntrySchema = z.object({
  version: z.literal(1),
  name: z.string(),
  owner: z.string(),
  /** The instance's id on its owner; null while it is being created there. */
  id: z.string().nullable(),
  /** creating: the owner took the name and is creating it; placed: it exists there; failed: the owner could not create it. */
  state: z.enum(['creating', 'placed', 'failed']),
  /** The controller's create input (InstanceConfig), the image pinned by digest once placed. */
  config: z.record(z.string(), z.unknown()).and(z.object({ image: z.string() })),
  /** Saves its own state at suspend, or mounts a volume: it lives where its state is and does not move when its host dies. */
  stateful: z.boolean(),
  /** The host name the proxies route to it (`web.localhost`), if it serves HTTP. */
  http: z.object({ hostname: z.string(), guestPort: z.number() }).nullable(),
  /** Its raw TCP services by host port: every host's proxy listens on those ports and tunnels to its host (absent: none). */
  tcp: z.array(z.object({ hostPort: z.number(), guestPort: z.number() })).optional(),
  /** The host it was moved from, when it was re-created after its host died. */
  movedFrom: z.string().optional(),
  error: z.string().optional(),
  updatedAt: z.string(),
});
export type CatalogEntry = z.infer<typeof CatalogEntrySchema>;

export const catalogPrefix = (prefix: string) => `${prefix}instances/`;
export const catalogKey = (prefix: string, name: string) => `${catalogPrefix(prefix)}${name}`;

/**
 * The entry of an instance that exists on `host`: the config to create it again (its image pinned by
 * digest). Stateful when it saves its own state or mounts a volume: it lives where that is and is
 * never moved on failover.
 */
export function placedEntry(rec: InstanceRecord, host: string, extra: Partial<CatalogEntry> = {}): CatalogEntry {
  const repo = parseImageReference(rec.spec.image.ref)?.name;
  return {
    version: 1,
    name: rec.name,
    owner: host,
    id: rec.id,
    state: 'placed',
    config: {
      image: repo ? `${repo}@${rec.spec.image.digest}` : rec.spec.image.ref,
      name: rec.name,
      args: rec.spec.args,
      env: rec.spec.env,
      memoryMb: rec.spec.memoryMb,
      vcpus: rec.spec.vcpus,
      service: rec.spec.service,
      autostart: rec.spec.autostart,
      restartPolicy: rec.spec.restartPolicy,
      scaleToZero: rec.spec.scaleToZero,
      ...(rec.spec.volumes && rec.spec.volumes.length > 0 ? { volumes: rec.spec.volumes } : {}),
    },
    stateful: rec.spec.scaleToZero.stateful || (rec.spec.volumes?.length ?? 0) > 0,
    http: rec.spec.service.http ? { hostname: rec.spec.service.http.hostname, guestPort: rec.spec.service.http.guestPort } : null,
    ...(rec.spec.service.tcp.length > 0 ? { tcp: rec.spec.service.tcp.map((t) => ({ hostPort: t.hostPort, guestPort: t.guestPort })) } : {}),
    updatedAt: new Date().toISOString(),
    ...extra,
  };
}

export function parseEntry(kv: KeyValue): CatalogEntry | undefined {
  try {
    return CatalogEntrySchema.safeParse(JSON.parse(kv.value)).data;
  } catch {
    return undefined;
  }
}

function unavailable(err: unknown, what: string): never {
  if (err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE') {
    throw new CatalogError('CLUSTER_UNAVAILABLE', `${what}: the cluster's state (etcd) is unreachable, so nothing can be created or moved until it returns; running instances keep serving`, { cause: err });
  }
  throw err;
}

export interface Fence {
  etcd: EtcdClient;
  prefix: string;
  /** This host's name and its lease now. */
  host: string;
  lease: () => string;
}

/**
 * Writes `entry` if the key is still at `expected` (0: the name is free) and
 * this host still holds its lease; the new mod_revision. NAME_TAKEN / NOT_OWNER otherwise.
 */
export async function fencedPut(f: Fence, entry: CatalogEntry, expected: number): Promise<number> {
  const key = catalogKey(f.prefix, entry.name);
  const alive = aliveKey(f.prefix, f.host);
  const r = await f.etcd
    .txn(
      [
        expected === 0 ? { key, target: 'CREATE', result: 'EQUAL', value: 0 } : { key, target: 'MOD', result: 'EQUAL', value: expected },
        leaseFence(alive, f.lease()),
      ],
      [{ put: { key, value: JSON.stringify(entry) } }],
      [{ range: { key } }, { range: { key: alive } }],
    )
    .catch((err: unknown) => unavailable(err, `instance "${entry.name}"`));
  if (r.succeeded) return r.revision;
  const [current, mine] = [r.ranges[0]?.[0], r.ranges[1]?.[0]];
  if (!holdsLease(mine, f.lease())) {
    throw new CatalogError('NOT_OWNER', `instance "${entry.name}": this host's lease lapsed (it was cut off from etcd); it re-registers, then try again`);
  }
  const holder = current ? parseEntry(current) : undefined;
  throw new CatalogError('NAME_TAKEN', `an instance named "${entry.name}" already exists in the cluster${holder ? ` (on host ${holder.owner})` : ''}: pick another --name or remove it with 'flick rm ${entry.name}'`, {
    kind: 'user',
  });
}

/** Deletes the entry if it is still at `expected` and this host holds its lease; whether it did. */
export async function fencedDelete(f: Fence, name: string, expected: number): Promise<boolean> {
  const key = catalogKey(f.prefix, name);
  const r = await f.etcd.txn(
    [
      { key, target: 'MOD', result: 'EQUAL', value: expected },
      leaseFence(aliveKey(f.prefix, f.host), f.lease()),
    ],
    [{ delete: { key } }],
  );
  return r.succeeded;
}

/** An instance as the cluster sees it (GET /v1/cluster/instances). */
export interface ClusterInstanceView {
  name: string;
  host: string;
  id: string | null;
  state: CatalogEntry['state'];
  /** up: its host is up; moving: its host is down and it is being re-created elsewhere; unavailable: stateful, its host is down. */
  availability: 'up' | 'moving' | 'unavailable';
  reason: string | null;
  stateful: boolean;
  moved_from: string | null;
}

export function clusterInstanceView(entry: CatalogEntry, ownerUp: boolean): ClusterInstanceView {
  const availability = ownerUp ? 'up' : entry.stateful ? 'unavailable' : 'moving';
  const reason = ownerUp
    ? (entry.error ?? null)
    : entry.stateful
      ? `host ${entry.owner} is down and this instance keeps its state (or a volume) there: it is back when its host is`
      : `host ${entry.owner} is down: re-creating it on another host${entry.error ? ` (last try: ${entry.error})` : ''}`;
  return { name: entry.name, host: entry.owner, id: entry.id, state: entry.state, availability, reason, stateful: entry.stateful, moved_from: entry.movedFrom ?? null };
}
