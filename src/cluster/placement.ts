// Where a new instance goes in a cluster (a create without ?host=, and a dead
// host's stateless instance moved): the best up host by a score every host
// computes the same way from the same etcd state (so the hosts agree on who
// acts in a failover):
//   + free RAM after placing it, as a share of the host's RAM (0..1)
//   + idle CPU: 1 - load average / CPUs (0..1)
//   + the image's template already there (0.5) or the image (0.3): no fetch, and a
//     template makes the first start a restore instead of a cold boot
//   - 1.5 per instance of the same group (an image's repository: its replicas;
//     for a service's member, the service's members) already on the host, so
//     replicas spread before anything else weighs in
//   - 0.01 per instance on the host (a tie-breaker toward the emptier host)
// A host without room for the instance's RAM is not chosen while one with room is up.
// Scores within TIE of the best count as equal: then the preferred host wins (the
// one asked, to save a hop), then the name.

import type { HostView } from './membership.js';

/** Creates sent to a host that its load and the catalog may not show yet: host → the groups of those creates. */
export type PendingCreates = ReadonlyMap<string, readonly string[]>;

/** What a host offers, as its record and load in etcd say. */
export interface PlacementCandidate {
  name: string;
  memoryBytes: number;
  vcpus: number;
  memoryFreeBytes: number;
  loadAvg1m: number;
  instances: number;
  /** Image references and digests the host holds (`repo:tag`, `sha256:…`). */
  images: ReadonlySet<string>;
  /** Image digests the host has a template of. */
  templates: ReadonlySet<string>;
  /** Instances of the request's group on the host (the catalog's, plus creates sent there not yet listed). */
  sameGroup: number;
}

export interface PlacementRequest {
  /** The image as asked: `repo:tag`, `repo@sha256:…`, or a bare digest. */
  image: string;
  memoryMb: number;
}

export const TIE = 0.05;
export const WEIGHTS = { ram: 1, cpu: 1, template: 0.5, image: 0.3, sameGroup: 1.5, instance: 0.01 } as const;

/** The digest in a reference (`repo@sha256:…` or a bare `sha256:…`), if it names one. */
export function digestOf(image: string): string | undefined {
  const at = image.lastIndexOf('@');
  const d = at >= 0 ? image.slice(at + 1) : image;
  return /^sha256:[0-9a-f]{64}$/.test(d) ? d : undefined;
}

/** The group replicas are spread by: the image's repository (`app` for `app:1`, `app@sha256:…`). */
export function groupOf(image: string): string {
  const at = image.indexOf('@');
  const bare = at >= 0 ? image.slice(0, at) : image;
  const slash = bare.lastIndexOf('/');
  const colon = bare.lastIndexOf(':');
  return colon > slash ? bare.slice(0, colon) : bare;
}

export function scoreHost(c: PlacementCandidate, req: PlacementRequest): number {
  const need = req.memoryMb * 2 ** 20;
  const ram = c.memoryBytes > 0 ? Math.max(0, c.memoryFreeBytes - need) / c.memoryBytes : 0;
  const cpu = c.vcpus > 0 ? Math.max(0, 1 - c.loadAvg1m / c.vcpus) : 0;
  const digest = digestOf(req.image);
  const template = digest !== undefined && c.templates.has(digest);
  const image = template || c.images.has(req.image) || (digest !== undefined && c.images.has(digest));
  return WEIGHTS.ram * ram + WEIGHTS.cpu * cpu + (template ? WEIGHTS.template : image ? WEIGHTS.image : 0) - WEIGHTS.sameGroup * c.sameGroup - WEIGHTS.instance * c.instances;
}

/** The best host for `req` among `candidates` (all up), or undefined if there is none. */
export function pickHost(candidates: readonly PlacementCandidate[], req: PlacementRequest, prefer?: string): string | undefined {
  const need = req.memoryMb * 2 ** 20;
  const roomy = candidates.filter((c) => c.memoryFreeBytes >= need);
  // No host has room: the one with the most free RAM gets it (its create then says what is short).
  if (roomy.length === 0) return [...candidates].sort((a, b) => b.memoryFreeBytes - a.memoryFreeBytes || (a.name < b.name ? -1 : 1))[0]?.name;
  const scored = roomy.map((c) => ({ name: c.name, score: scoreHost(c, req) }));
  const best = Math.max(...scored.map((s) => s.score));
  const tied = scored.filter((s) => s.score >= best - TIE).map((s) => s.name).sort();
  return prefer !== undefined && tied.includes(prefer) ? prefer : tied[0];
}

/**
 * Every up host (but `except`) as placement sees it for `image`: its record and load,
 * its inventory, and the replicas of the image's group the catalog (`owned`) gives it;
 * `members`: a service's members per host, counted as its group instead.
 */
export function candidatesOf(hosts: readonly HostView[], owned: Iterable<{ owner: string; image: unknown }>, image: string, pending: PendingCreates, except?: string, members?: ReadonlyMap<string, number>): PlacementCandidate[] {
  const group = groupOf(image);
  const replicas = new Map<string, number>(members ?? []);
  if (members === undefined) for (const o of owned) if (typeof o.image === 'string' && groupOf(o.image) === group) replicas.set(o.owner, (replicas.get(o.owner) ?? 0) + 1);
  return hosts.flatMap((h) => {
    if (!h.load || h.record.name === except) return [];
    const sent = pending.get(h.record.name) ?? [];
    return [{
      name: h.record.name,
      memoryBytes: h.record.capacity.memoryBytes,
      vcpus: h.record.capacity.vcpus,
      memoryFreeBytes: h.load.memoryFreeBytes,
      loadAvg1m: h.load.loadAvg1m,
      instances: h.load.instances + sent.length,
      images: new Set(h.load.images ?? []),
      templates: new Set(h.load.templates ?? []),
      sameGroup: (replicas.get(h.record.name) ?? 0) + sent.filter((g) => g === group).length,
    }];
  });
}
