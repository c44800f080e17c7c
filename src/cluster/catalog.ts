// The cluster's instance catalog: what every host knows of every instance (its
// owner, its id there, the config to run it, whether it keeps state, its HTTP
// and TCP services), derived from the instance records in etcd
// (EtcdStateStore's `cluster` view), one entry per record. It is never written
// on its own: a record's owner is the one source of ownership, and every write
// of a record is fenced (etcd-state-txn.ts). Routing (remote-routes.ts),
// placement, service members and GET /v1/cluster/instances read these entries.
import { z } from 'zod';
import { FlickError } from '../errors.js';
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
  /** Its record exists on its owner: every entry is derived from a record. */
  state: z.literal('placed'),
  /** The controller's create input (InstanceConfig), the image pinned by digest once placed. */
  config: z.record(z.string(), z.unknown()).and(z.object({ image: z.string() })),
  /** Saves its own state at suspend, or mounts a volume: it lives where its state is and does not move when its host dies. */
  stateful: z.boolean(),
  /** The host name the proxies route to it (`web.localhost`), if it serves HTTP. */
  http: z.object({ hostname: z.string(), guestPort: z.number() }).nullable(),
  /** Its raw TCP services by host port: every host's proxy listens on those ports and tunnels to its host (absent: none). */
  tcp: z.array(z.object({ hostPort: z.number(), guestPort: z.number() })).optional(),
  /** The host it was claimed from when that host died (the record's status.movedFrom). */
  movedFrom: z.string().optional(),
  error: z.string().optional(),
  updatedAt: z.string(),
});
export type CatalogEntry = z.infer<typeof CatalogEntrySchema>;

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
