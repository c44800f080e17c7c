// Where a service's members are made and how its route reaches every host, the
// seam a cluster fills (services.ts declares it; src/cluster/service-members.ts
// implements it). Alone, a host makes every member through its own controller
// and routes the service on its own proxy. In a cluster, each member of a
// fixed-replica HTTP service goes where the cluster's placement puts it, the
// members already on a host counting against that host (so replicas spread);
// each is created and removed through its host's API, as the cluster makes any
// instance (its name taken cluster-wide), and one on another host is routed by
// the id the proxy reaches it by (over the cluster hop). The service's route
// goes through the cluster's sink, which shares it with every host's proxy, and
// a member a failover moved is followed by its name. Autoscaled services and
// services with TCP ports keep their members on their own host: the first
// share one template there, and a TCP port is a listener of this host's proxy.
import type { InstanceConfig } from '../controller/spec.js';
import type { ServiceRecord } from './service-store.js';

/** Where service routes go (the proxy's RouteTable, or a cluster's sink in front of it). */
export interface ServiceRouteSink {
  setService(name: string, route: { service: string; members: readonly string[]; targetPort: number; targetInFlight?: number; certificate?: { cert: string; key: string }; plain?: 'serve' | 'redirect' }): void;
  deleteService(name: string): void;
  /** A TCP host port balanced per connection over the members (every member declares the same port). */
  setTcpService(port: number, route: { service: string; members: readonly string[]; targetPort: number; targetInFlight?: number }): void;
  deleteTcpService(port: number): void;
}

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
  /** A member on another host as its host sees it now (`running`, `standby`, `failed`…), for a deploy's readiness. */
  state(id: string): Promise<{ state: string; error?: string }>;
  /** The sink this host's service routes go through: the cluster routes them on every host's proxy. */
  routes(local: ServiceRouteSink): ServiceRouteSink;
  /** The id the member named `name` has now (a failover may have moved it); null: gone from the cluster; undefined: not known yet. */
  follow(name: string): string | null | undefined;
  /** The name of member `id`, wherever it is now (a failover may have moved this host's away); null: no host has it; undefined: not known yet. */
  nameOf(id: string): string | null | undefined;
  /** `listener` is called when a member of this host's services may have moved or gone; returns its removal. */
  onMoved(listener: () => void): () => void;
  /** The host that has a service named `name`, if another host has one. */
  serviceHost(name: string): string | undefined;
}

/** Whether the record's members are placed by the cluster (else all are made by this host's controller: no cluster, autoscaled, TCP ports). */
export function spreads(record: ServiceRecord, p: MemberPlacement | undefined): p is MemberPlacement {
  return p !== undefined && record.autoscale === undefined && (record.template.service?.tcp?.length ?? 0) === 0;
}

/** The members on other hosts, as the cluster last saw them (`unknown` while it does not know one). */
export function remoteMembersOf(record: ServiceRecord, p: MemberPlacement | undefined): RemoteMember[] {
  if (p === undefined) return [];
  return record.members.flatMap((id) => {
    const host = p.hostOf(id);
    return host === undefined ? [] : [p.get(id) ?? { id, name: id.slice(id.indexOf('/') + 1), host, image: record.template.image, state: 'unknown' }];
  });
}
