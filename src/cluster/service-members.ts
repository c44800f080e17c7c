// A cluster host's placement of service members (the seam src/services/member-placement.ts
// declares): each member goes to the best up host by placement.ts, the service's
// members already on a host counting against it (−1.5 each, so replicas spread).
// Each is created through its host's API (POST /v1/instances?host=NAME with the
// cluster's token; this host's own too: it takes its name in the catalog and
// publishes it, as any create does) and removed the same way; one on another
// host is routed by its remote id (`@host/name`, remote-routes.ts), which the
// proxy reaches over the cluster hop. The service's route goes to every host's
// proxy through service-routes.ts, and a member is removed only once the route
// without it is shared and settled (other proxies' requests to it finished).
import { DEFAULT_MEMORY_MB, type InstanceConfig } from '../controller/spec.js';
import { FlickError } from '../errors.js';
import type { MemberPlacement, RemoteMember } from '../services/member-placement.js';
import type { CatalogEntry } from './catalog.js';
import type { HostDirectory } from './membership.js';
import { candidatesOf, pickHost } from './placement.js';
import { isRemoteRoute, remoteId, remoteName, remoteOwner } from './remote-routes.js';
import type { ClusterServiceRoutes } from './service-routes.js';

export interface ClusterMembersConfig {
  self: string;
  token: string;
  /** The hosts (undefined before this one joined: then every member is made here). */
  directory(): HostDirectory | undefined;
  /** Every catalog entry's owner and image. */
  owned(): Array<{ owner: string; image: unknown }>;
  entry(name: string): CatalogEntry | undefined;
  /** Every host's service routes (service-routes.ts). */
  shared: ClusterServiceRoutes;
}

/** The API's create body for a member's config (the inverse of api/schemas.ts toInstanceConfig, for what a member holds). */
export function instanceBody(c: InstanceConfig): Record<string, unknown> {
  const http = c.service?.http;
  const s = c.scaleToZero;
  return {
    image: c.image,
    ...(c.name !== undefined ? { name: c.name } : {}),
    ...(c.args !== undefined ? { args: c.args } : {}),
    ...(c.env !== undefined ? { env: c.env } : {}),
    ...(c.memoryMb !== undefined ? { memory_mb: c.memoryMb } : {}),
    ...(c.vcpus !== undefined ? { vcpus: c.vcpus } : {}),
    ...(c.autostart !== undefined ? { autostart: c.autostart } : {}),
    ...(c.restartPolicy !== undefined ? { restart_policy: c.restartPolicy } : {}),
    ...(http ? { ports: [{ port: http.guestPort, protocol: http.tls ? 'http+tls' : 'http' }], ...(http.hostname !== undefined ? { hostname: http.hostname } : {}) } : {}),
    ...(http?.tls ? { tls_cert: http.tls.cert, tls_key: http.tls.key } : {}),
    ...(s ? { scale_to_zero: { ...(s.policy !== undefined ? { policy: s.policy } : {}), ...(s.cooldownTimeMs !== undefined ? { cooldown_time_ms: s.cooldownTimeMs } : {}), ...(s.stateful !== undefined ? { stateful: s.stateful } : {}) } } : {}),
  };
}


/** How long a member's host lets its requests in flight finish before removing it (a deploy's drain). */
const DRAIN_MS = 30_000;

/** A host's API answer: its status and its envelope. */
interface Answer {
  status: number;
  json: { data?: { id?: string; state?: string; error?: string | null }; error?: { code?: string; message?: string } };
}

/** What to do about a host that is down. */
const retryLater = (host: string) => `retry once host ${host} is up: flick hosts`;

/**
 * The error a host's API answered with, passed on as it raised it (its code and
 * message: a name taken stays a 409, a bad spec a 400); an answer with no code
 * (a 5xx from no flickd) is the host being down.
 */
export function answerError(host: string, doing: string, r: Answer): FlickError {
  const e = r.json.error;
  if (e?.code !== undefined) return new FlickError(e.code, `${doing} on host ${host}: ${e.message ?? `HTTP ${r.status}`}`, { kind: r.status < 500 ? 'user' : 'system' });
  if (r.status < 500) return new FlickError('HOST_DOWN', `${doing} on host ${host}: HTTP ${r.status} with no error (is it a Flick host?)`);
  return new FlickError('HOST_DOWN', `${doing} on host ${host}: HTTP ${r.status}; ${retryLater(host)}`);
}

export function clusterMemberPlacement(c: ClusterMembersConfig): MemberPlacement {
  const call = async (host: string, method: string, path: string, doing: string, body?: unknown): Promise<Answer> => {
    const h = c.directory()?.get(host);
    const api = h?.load ? h.record.api : undefined;
    if (api === undefined) throw new FlickError('HOST_DOWN', `${doing}: host ${host} is down; ${retryLater(host)}`);
    const r = await fetch(`${api}${path}`, { method, headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }).catch((err: unknown) => {
      throw new FlickError('HOST_DOWN', `${doing}: host ${host} does not answer at ${api}; ${retryLater(host)}`, { cause: err });
    });
    return { status: r.status, json: (await r.json().catch(() => ({}))) as Answer['json'] };
  };
  /** Member `name` as its owner sees it, the owner resolved again while a failover moves it (the catalog may still name the host it left). */
  const read = async (name: string, fallback: string, hops = 0): Promise<{ state: string; error?: string }> => {
    const owner = c.entry(name)?.owner ?? fallback;
    const moved = () => c.entry(name) !== undefined && c.entry(name)!.owner !== owner && hops < 3;
    const r = await call(owner, 'GET', `/v1/instances/${encodeURIComponent(name)}`, `reading service instance ${name}`).catch((err: unknown) => {
      // Its host went down and the failover moved it meanwhile: ask the new one.
      if (err instanceof FlickError && err.code === 'HOST_DOWN' && moved()) return undefined;
      throw err;
    });
    if (r === undefined) return read(name, owner, hops + 1);
    if (r.status === 404) {
      const now = c.entry(name);
      if (now === undefined) return { state: 'stopped', error: `it is gone from host ${owner}` };
      if (moved()) return read(name, now.owner, hops + 1);
      // Still named this host's in the catalog: moving (this host's copy of the catalog not caught up yet); ready() asks again.
      return { state: 'moving' };
    }
    if (r.status >= 400) throw answerError(owner, `reading service instance ${name}`, r);
    return { state: String(r.json.data?.state), ...(r.json.data?.error ? { error: r.json.data.error } : {}) };
  };
  return {
    place(config, siblings) {
      const members = new Map<string, number>();
      for (const h of siblings) members.set(h ?? c.self, (members.get(h ?? c.self) ?? 0) + 1);
      const req = { image: config.image, memoryMb: config.memoryMb ?? DEFAULT_MEMORY_MB };
      return pickHost(candidatesOf(c.directory()?.list() ?? [], c.owned(), req.image, new Map(), undefined, members), req, c.self) ?? c.self;
    },
    async create(host, config): Promise<RemoteMember> {
      const name = config.name!;
      const doing = `creating service instance ${name}`;
      const r = await call(host, 'POST', `/v1/instances?host=${encodeURIComponent(host)}`, doing, instanceBody(config));
      if (r.status >= 400) throw answerError(host, doing, r);
      // One made here is routed by its own id; another host's by its remote id, over the hop.
      const id = host === c.self ? String(r.json.data?.id) : remoteId(host, name);
      return { id, name, host, image: config.image, state: r.json.data?.state ?? 'starting' };
    },
    async remove(id) {
      const remote = isRemoteRoute(id);
      // The catalog says where it is now (a failover may have moved it); this host's own goes through its API too (its entry goes first).
      const owner = remote ? (c.entry(remoteName(id))?.owner ?? remoteOwner(id)) : c.self;
      if (!remote && c.directory()?.get(c.self)?.load === undefined) return false;
      // Every proxy stops sending it requests first (the route without it shared, theirs to it finished).
      await c.shared.settled();
      // Its host lets its requests in flight finish (those other proxies sent it before the route changed).
      const doing = `removing service instance ${remoteName(id)}`;
      const r = await call(owner, 'DELETE', `/v1/instances/${encodeURIComponent(remote ? remoteName(id) : id)}?force=true&drain_ms=${DRAIN_MS}`, doing);
      if (r.status >= 400 && r.status !== 404) throw answerError(owner, doing, r);
      return true;
    },
    hostOf: (id) => (isRemoteRoute(id) ? remoteOwner(id) : undefined),
    state: (id) => read(remoteName(id), remoteOwner(id)),
    routes: (local) => c.shared.sink(local),
    follow: (name) => c.shared.follow(name),
    nameOf: (id) => c.shared.nameOf(id),
    onMoved: (listener) => c.shared.onMoved(listener),
    serviceHost: (name) => c.shared.serviceHost(name),
    get(id) {
      const e = c.entry(remoteName(id));
      if (e === undefined) return undefined;
      return { id, name: e.name, host: e.owner, image: typeof e.config.image === 'string' ? e.config.image : '', state: e.state };
    },
  };
}
