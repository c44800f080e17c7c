// GET /v1/hosts: the hosts of the cluster with their state, capacity and load
// (one host, this one, when flickd runs alone); GET /v1/cluster/instances: every
// instance of the cluster, the host that holds it and whether it is available;
// GET /v1/cluster/etcd: whether this host reads etcd now (a peer whose lease goes
// unrenewed asks, to tell "I alone lost etcd" from "etcd is down": fence.ts).
// The envelope is the API's.
import os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendData, sendError } from '../api/envelope.js';
import { FlickError } from '../errors.js';
import type { ClusterInstanceView } from './catalog.js';
import { memoryAvailableBytes, type HostView } from './membership.js';

export interface HostViewJson {
  name: string;
  state: 'up' | 'down';
  /** This host (the one that answered). */
  self: boolean;
  api: string | null;
  proxy: string | null;
  /** The proxy's hop listener, where other hosts' proxies send requests (with the cluster's token). */
  hop: string | null;
  capacity: { memory_bytes: number; vcpus: number };
  load: { memory_free_bytes: number; load_avg_1m: number; instances: number } | null;
  joined_at: string | null;
  last_seen: string | null;
}

export function hostViewJson(h: HostView, self: string): HostViewJson {
  return {
    name: h.record.name,
    state: h.load ? 'up' : 'down',
    self: h.record.name === self,
    api: h.record.api,
    proxy: h.record.proxy,
    hop: h.record.hop ?? null,
    capacity: { memory_bytes: h.record.capacity.memoryBytes, vcpus: h.record.capacity.vcpus },
    load: h.load ? { memory_free_bytes: h.load.memoryFreeBytes, load_avg_1m: h.load.loadAvg1m, instances: h.load.instances } : null,
    joined_at: h.record.joinedAt,
    last_seen: h.load?.updatedAt ?? null,
  };
}

export interface HostsSource {
  /** Cluster mode: the directory's hosts and the catalog's instances; undefined: flickd runs alone. */
  cluster?: { self: string; list(): HostView[]; instances(): ClusterInstanceView[]; reachesEtcd(): Promise<boolean> };
  /** Alone: how many instances this host holds. */
  instances: () => number;
}

export function createHostsHandler(src: HostsSource): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    req.resume();
    try {
      const pathname = (req.url ?? '/').split('?', 1)[0]!.replace(/\/$/, '');
      if (pathname !== '/v1/hosts' && pathname !== '/v1/cluster/instances' && pathname !== '/v1/cluster/etcd') {
        throw new FlickError('NOT_FOUND', `nothing at ${pathname}: GET /v1/hosts lists the hosts, GET /v1/cluster/instances the cluster's instances`, { kind: 'user' });
      }
      if (req.method !== 'GET') throw new FlickError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${pathname}: use GET`, { kind: 'user' });
      if (pathname === '/v1/cluster/etcd') {
        if (!src.cluster) throw new FlickError('NOT_FOUND', 'this flickd is not in a cluster (start it with --cluster-etcd)', { kind: 'user' });
        return sendData(res, 200, { reachable: await src.cluster.reachesEtcd() });
      }
      if (pathname === '/v1/cluster/instances') {
        if (!src.cluster) throw new FlickError('NOT_FOUND', 'this flickd is not in a cluster (start it with --cluster-etcd): GET /v1/instances lists its instances', { kind: 'user' });
        return sendData(res, 200, { instances: src.cluster.instances() });
      }
      if (src.cluster) {
        const self = src.cluster.self;
        return sendData(res, 200, { cluster: true, hosts: src.cluster.list().map((h) => hostViewJson(h, self)) });
      }
      const alone: HostViewJson = {
        name: os.hostname(),
        state: 'up',
        self: true,
        api: null,
        proxy: null,
        hop: null,
        capacity: { memory_bytes: os.totalmem(), vcpus: os.cpus().length },
        load: { memory_free_bytes: memoryAvailableBytes(), load_avg_1m: os.loadavg()[0] ?? 0, instances: src.instances() },
        joined_at: null,
        last_seen: new Date().toISOString(),
      };
      return sendData(res, 200, { cluster: false, hosts: [alone] });
    } catch (err) {
      sendError(res, err);
    }
  };
}

/** Whether any of `peers` reads etcd now, each asked over its API with the cluster's token (bounded). */
export async function peerReachesEtcd(peers: ReadonlyArray<{ api: string }>, token: string, timeoutMs = 1500): Promise<boolean> {
  const answers = await Promise.all(
    peers.map((p) =>
      fetch(`${p.api}/v1/cluster/etcd`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) })
        .then(async (r) => r.status === 200 && ((await r.json()) as { data?: { reachable?: unknown } }).data?.reachable === true)
        .catch(() => false),
    ),
  );
  return answers.includes(true);
}
