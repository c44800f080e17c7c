// Where a service's members are made, the seam a cluster fills (services.ts
// declares it; src/cluster/service-members.ts implements it). Alone, a host
// makes every member through its own controller. In a cluster, each member of a
// fixed-replica HTTP service goes where the cluster's placement puts it, the
// members already on a host counting against that host (so replicas spread);
// each is created and removed through its host's API, as the cluster makes any
// instance (its name taken cluster-wide), and one on another host is routed by
// the id the proxy reaches it by (over the cluster hop). Autoscaled services
// and services with TCP ports keep their members on their own host: the first
// share one template there, and a TCP port is a listener of this host's proxy.
import type { InstanceConfig } from '../controller/spec.js';
import type { ServiceRecord } from './service-store.js';

/** A member on another host, as the cluster last saw it. */
export interface RemoteMember {
  /** The id the proxy routes it by. */
  id: string;
  name: string;
  host: string;
  image: string;
  /** As the cluster's catalog says (`placed`, `creating`). */
  state: string;
}

export interface MemberPlacement {
  /**
   * The host the service's next member goes to (this host's name too). `siblings`: the host of
   * each member it has so far (undefined: this host), each counting against its host.
   */
  place(config: InstanceConfig, siblings: ReadonlyArray<string | undefined>): string;
  /** Creates the member on `host` as the cluster creates any instance (its name taken cluster-wide): resolves once made; the id is this host's own for a member made here. */
  create(host: string, config: InstanceConfig): Promise<RemoteMember>;
  /** Removes a member through the cluster (one already gone is no error); false if the caller must remove it itself (this host's, before the host joined). */
  remove(id: string): Promise<boolean>;
  /** The host of a member id if it is another host's, else undefined (known from the id alone, e.g. at start). */
  hostOf(id: string): string | undefined;
  /** A member on another host as the cluster last saw it; undefined while it does not know it. */
  get(id: string): RemoteMember | undefined;
}

/** The host member `config` of `record` goes to, or undefined: made by this host's controller (no cluster, autoscaled, TCP ports). */
export function placeMember(record: ServiceRecord, config: InstanceConfig, p: MemberPlacement | undefined): string | undefined {
  if (p === undefined || record.autoscale !== undefined || (record.template.service?.tcp?.length ?? 0) > 0) return undefined;
  return p.place(config, record.members.map((m) => p.hostOf(m)));
}

/** The other hosts a service has members on. */
export function otherHosts(record: ServiceRecord, p: MemberPlacement | undefined): string[] {
  return [...new Set(record.members.map((m) => p?.hostOf(m)).filter((h): h is string => h !== undefined))];
}

/** The members on other hosts, as the cluster last saw them (`unknown` while it does not know one). */
export function remoteMembersOf(record: ServiceRecord, p: MemberPlacement | undefined): RemoteMember[] {
  if (p === undefined) return [];
  return record.members.flatMap((id) => {
    const host = p.hostOf(id);
    return host === undefined ? [] : [p.get(id) ?? { id, name: id.slice(id.indexOf('/') + 1), host, image: record.template.image, state: 'unknown' }];
  });
}
