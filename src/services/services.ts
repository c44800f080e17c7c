// Services: a name, its routes and a set of instances of one configuration
// (its members). A library (no HTTP, no argv) on the instance controller's
// public surface (create, rm, list, get, events): a member is an ordinary
// instance named `<service>-<4 hex>`, reachable at its own host name too, and
// the service's host name `<service>.<domain>` is a proxy route balanced over
// the members (src/proxy/balancer.ts).
//
// Nothing half-made: a service is stored before its members are created, and
// if one cannot be created those already made are removed with it. At flickd
// start, members that no longer exist are dropped and the routes set again.
// In a cluster, members may be placed on other hosts (member-placement.ts).
// Autoscale (autoscale.ts) is a policy on the same members.
// Scale (scale.ts) sets a fixed-replica service's member count; an autoscaled
// service refuses it (its count is --autoscale max: recreate it to change that).
import type { InstanceConfig } from '../controller/spec.js';
import { DEFAULT_DOMAIN, validateName } from '../controller/spec.js';
import { describeError, FlickError } from '../errors.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { rollingDeploy, type DeployHost, type DeployOptions } from './deploy.js';
import { recoverDeploy } from './recover.js';
import { resolveAutoscale, ScaleEvents, type AutoscaleConfig, type ScaleEvent } from './autoscale.js';
import { planScale } from './scale.js';
import { SERVICE_RECORD_VERSION, ServiceStore, type ServiceRecord } from './service-store.js';
import { remoteMembersOf, type MemberPlacement, type RemoteMember, type ServiceRouteSink } from './member-placement.js';
import { memberName, ServiceMembers, type ServiceController } from './members.js';

import { ServiceError, type ServiceErrorCode } from './service-error.js';

export { ServiceError, type ServiceErrorCode };

/** How long a deploy's new member may take to become ready, and an old one to drain. */
const DEPLOY_READY_MS = 180_000;
const DEPLOY_DRAIN_MS = 30_000;

export interface ServiceSpec {
  name: string;
  /** Ignored with `autoscale` (the service keeps its max). */
  replicas: number;
  instance: Omit<InstanceConfig, 'name'>;
  autoscale?: Partial<AutoscaleConfig>;
}

/** How long a new autoscaled service waits for its shared template before creating the rest. */
const TEMPLATE_WAIT_MS = 300_000;

export const MAX_REPLICAS = 64;

function deployOptions(opts: { image: string; maxSurge?: number; maxUnavailable?: number; readyTimeoutMs?: number }): DeployOptions {
  return {
    image: opts.image,
    maxSurge: opts.maxSurge ?? 1,
    maxUnavailable: opts.maxUnavailable ?? 0,
    readyTimeoutMs: opts.readyTimeoutMs ?? DEPLOY_READY_MS,
    drainTimeoutMs: DEPLOY_DRAIN_MS,
  };
}

export class Services {
  readonly #controller: ServiceController;
  readonly #store: ServiceStore;
  readonly #routes: ServiceRouteSink | undefined;
  readonly #log: (line: string) => void;
  readonly #unsubscribe: () => void;
  readonly #scale: ScaleEvents;
  readonly #inFlight: (id: string) => number;
  readonly #scaling = new Set<string>();
  readonly #recovering: Array<Promise<void>> = [];
  readonly #placement: MemberPlacement | undefined;
  readonly #members: ServiceMembers;
  readonly #unmoved: () => void;

  /** `placement`: a cluster's (member-placement.ts); without it every member is this host's. */
  constructor(opts: { controller: ServiceController; dataDir: string; routes?: ServiceRouteSink; log?: (line: string) => void; inFlight?: (instanceId: string) => number; placement?: MemberPlacement }) {
    this.#controller = opts.controller;
    this.#placement = opts.placement;
    this.#members = new ServiceMembers(opts.controller, opts.placement);
    this.#inFlight = opts.inFlight ?? (() => 0);
    this.#store = new ServiceStore(opts.dataDir);
    // In a cluster, every host's proxy routes this host's services too (member-placement.ts).
    this.#routes = opts.routes && opts.placement ? opts.placement.routes(opts.routes) : opts.routes;
    this.#log = opts.log ?? (() => undefined);
    // A member removed on its own (flick rm) leaves the service; one a failover moved stays, by its new id.
    this.#unsubscribe = opts.controller.on('removed', (e) => this.#follow(e));
    this.#unmoved = opts.placement?.onMoved(() => this.#follow()) ?? (() => undefined);
    this.#scale = new ScaleEvents(
      opts.controller,
      (id) => {
        const s = this.#store.list().find((r) => r.members.includes(id));
        if (s?.autoscale === undefined) return undefined;
        return { service: s.name, policy: s.autoscale, awake: this.members(s.name).filter((m) => m.status.state === 'running').length };
      },
      this.#log,
    );
  }

  /** Members as the cluster says they are now (moved, gone); `gone`: this host's member just removed. */
  #follow(gone?: { id: string; name: string }): void {
    for (const s of this.#store.list()) {
      // A deploy or a scale owns its service's members and route while it runs.
      if (s.deploy !== undefined || this.#scaling.has(s.name)) continue;
      const members = this.#members.followed(s, gone);
      if (members === undefined) continue;
      const next = { ...s, members, updatedAt: new Date().toISOString() };
      this.#log(`service ${s.name}: instances now ${members.join(', ') || 'none'} (were ${s.members.join(', ')})`);
      this.#store.put(next).catch((err: unknown) => this.#log(`service ${s.name}: ${describeError(err)}`));
      this.#route(next);
    }
  }

  /** The scale events of an autoscaled service, oldest first, and their totals. */
  scaleEvents(name: string): { recent: ScaleEvent[]; totals: { up: number; down: number } } {
    return { recent: this.#scale.recent(name), totals: this.#scale.totals(name) };
  }

  /** Prometheus text: members by state and scale events, per service. */
  prometheus(): string {
    const out = [
      '# HELP flick_service_instances Instances of a service, by state.',
      '# TYPE flick_service_instances gauge',
    ];
    const events = ['# HELP flick_service_scale_events_total Scale events of an autoscaled service (a member woke: up; went to standby: down).', '# TYPE flick_service_scale_events_total counter'];
    for (const s of this.#store.list()) {
      const byState = new Map<string, number>();
      for (const m of this.members(s.name)) byState.set(m.status.state, (byState.get(m.status.state) ?? 0) + 1);
      for (const [state, n] of byState) out.push(`flick_service_instances{service="${s.name}",state="${state}"} ${n}`);
      const t = this.#scale.totals(s.name);
      events.push(`flick_service_scale_events_total{service="${s.name}",direction="up"} ${t.up}`, `flick_service_scale_events_total{service="${s.name}",direction="down"} ${t.down}`);
    }
    return `${[...out, ...events].join('\n')}\n`;
  }

  /** At flickd start: members that no longer exist are dropped; every service's route is set. */
  async start(): Promise<void> {
    const existing = new Set(this.#controller.list().map((r) => r.id));
    for (const s of this.#store.list()) {
      if (s.deploy !== undefined) await this.#recoverDeploy(s);
    }
    for (const s of this.#store.list()) {
      // A resumed deploy owns its service's members and route.
      if (s.deploy !== undefined) continue;
      // In a cluster every member is kept: the cluster says where each is once joined (a failover may have moved one away).
      const members = s.members.filter((m) => existing.has(m) || this.#placement !== undefined);
      if (members.length !== s.members.length) {
        this.#log(`service ${s.name}: ${s.members.length - members.length} member(s) were gone`);
        await this.#store.put({ ...s, members, updatedAt: new Date().toISOString() });
      }
      this.#route(this.#store.get(s.name)!);
    }
  }

  list(): ServiceRecord[] {
    return this.#store.list();
  }

  get(name: string): ServiceRecord {
    const s = this.#store.get(name);
    const home = s === undefined ? this.#placement?.serviceHost(name) : undefined;
    if (home !== undefined) throw new ServiceError('SERVICE_NOT_FOUND', `service "${name}" is host ${home}'s: ask that host's API (FLICK_HOST=<its API>) to change it`, { kind: 'user' });
    if (s === undefined) throw new ServiceError('SERVICE_NOT_FOUND', `service "${name}" not found: list services with 'flick services'`, { kind: 'user' });
    return s;
  }

  /** The members' records (those that still exist), oldest first. */
  members(name: string): InstanceRecord[] {
    const byId = new Map(this.#controller.list().map((r) => [r.id, r]));
    return this.get(name).members.map((id) => byId.get(id)).filter((r): r is InstanceRecord => r !== undefined);
  }

  /** The members on other hosts, as the cluster last saw them. */
  remoteMembers(name: string): RemoteMember[] {
    return remoteMembersOf(this.get(name), this.#placement);
  }

  /** The service an instance belongs to, if any. */
  serviceOf(instanceId: string): string | undefined {
    return this.#store.list().find((s) => s.members.includes(instanceId))?.name;
  }

  /** Stores the service, then creates its members (their VMs start in the background); all or nothing. */
  async create(spec: ServiceSpec): Promise<ServiceRecord> {
    validateName(spec.name);
    if (spec.name.length > 58) throw new ServiceError('INVALID_SPEC', `service name "${spec.name}" is too long: at most 58 characters, so that its members' names (<name>-xxxx) are valid`, { kind: 'user' });
    if (!Number.isInteger(spec.replicas) || spec.replicas < 1 || spec.replicas > MAX_REPLICAS) {
      throw new ServiceError('INVALID_SPEC', `replicas ${spec.replicas} is not a whole number from 1 to ${MAX_REPLICAS}: e.g. --replicas 3`, { kind: 'user' });
    }
    const elsewhere = this.#placement?.serviceHost(spec.name);
    if (this.#store.get(spec.name) !== undefined || elsewhere !== undefined) throw new ServiceError('NAME_TAKEN', `service "${spec.name}" already exists${elsewhere ? ` on host ${elsewhere}` : ''}: remove it with 'flick service rm ${spec.name}'${elsewhere ? ' there' : ''} or pick another name`, { kind: 'user' });
    if (this.#controller.list().some((r) => r.name === spec.name)) {
      throw new ServiceError('NAME_TAKEN', `an instance is named "${spec.name}", and a service's host name would shadow it: pick another name`, { kind: 'user' });
    }
    if (spec.instance.service?.http?.hostname !== undefined) {
      throw new ServiceError('INVALID_SPEC', `a service answers at <name>.${DEFAULT_DOMAIN}: drop --domain for a service with replicas`, { kind: 'user' });
    }
    const autoscale = spec.autoscale ? resolveAutoscale(spec.autoscale, MAX_REPLICAS) : undefined;
    const replicas = autoscale?.max ?? spec.replicas;
    const now = new Date().toISOString();
    let record: ServiceRecord = { version: SERVICE_RECORD_VERSION, name: spec.name, template: spec.instance, replicas, ...(autoscale ? { autoscale } : {}), members: [], createdAt: now, updatedAt: now };
    await this.#store.put(record);
    try {
      for (let i = 0; i < replicas; i++) {
        const member = await this.#members.make(record, i);
        record = { ...record, members: [...record.members, member], updatedAt: new Date().toISOString() };
        await this.#store.put(record);
        // The first scale-to-zero member takes the shared template; the others then start in cold standby from it.
        if (autoscale !== undefined && i === autoscale.min && replicas > i + 1) await this.#templateOf(member);
      }
    } catch (err) {
      await this.#removeAll(record);
      throw err;
    }
    this.#route(record);
    this.#log(`service ${record.name}: created with ${record.replicas} instance(s)`);
    return record;
  }

  /**
   * Sets the member count to `replicas`: missing members are created as `create` makes them (all
   * or nothing), surplus ones leave the route first, drain, then are removed (standby/idle first).
   */
  async scale(name: string, replicas: number): Promise<ServiceRecord> {
    const record = this.get(name);
    const plan = planScale(record, this.#members.states(record), replicas, MAX_REPLICAS, this.#scaling.has(name));
    this.#scaling.add(name);
    try {
      let next: ServiceRecord = { ...record, replicas, updatedAt: new Date().toISOString() };
      if (plan.remove.length > 0) {
        const gone = new Set(plan.remove);
        next = { ...next, members: next.members.filter((m) => !gone.has(m)) };
        await this.#store.put(next);
        this.#route(next);
        const deadline = Date.now() + DEPLOY_DRAIN_MS;
        while (plan.remove.some((id) => this.#inFlight(id) > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        for (const id of plan.remove) await this.#members.remove(id);
      }
      const made: string[] = [];
      try {
        for (let i = 0; i < plan.add; i++) made.push(await this.#members.make(next, next.members.length + i, [...next.members, ...made]));
      } catch (err) {
        for (const id of made) await this.#members.remove(id).catch(() => undefined);
        throw err;
      }
      next = { ...next, members: [...next.members, ...made], updatedAt: new Date().toISOString() };
      await this.#store.put(next);
      this.#route(next);
      this.#log(`service ${name}: scaled from ${record.members.length} to ${replicas} instance(s)`);
      return next;
    } finally {
      this.#scaling.delete(name);
    }
  }

  /** A rolling deploy of `image` (deploy.ts); resolves when every member runs it, or rejects after rolling back. */
  deploy(name: string, opts: { image: string; maxSurge?: number; maxUnavailable?: number; readyTimeoutMs?: number }): Promise<ServiceRecord> {
    return rollingDeploy(this.#deployHost(name), deployOptions(opts));
  }

  #deployHost(name: string): DeployHost {
    return {
      record: () => this.get(name),
      save: (r) => this.#store.put(r),
      memberName: (r) => memberName(r.name),
      createMember: async (r, image, index, member, siblings) => ({ id: await this.#members.make({ ...r, template: { ...r.template, image } }, index, siblings, member) }),
      ready: (id, ms) => this.#members.ready(id, ms),
      removeMember: (id) => this.#members.remove(id),
      route: (members) => this.#route({ ...this.get(name), members }),
      inFlight: (id) => this.#inFlight(id),
      log: this.#log,
    };
  }

  /** At start, a deploy a killed flickd left (recover.ts); a resumed one runs in the background. */
  async #recoverDeploy(s: ServiceRecord): Promise<void> {
    const recovery = await recoverDeploy(s, { host: this.#deployHost(s.name), instances: this.#controller.list(), put: (r) => this.#store.put(r), log: this.#log, options: deployOptions });
    if (recovery !== undefined) this.#recovering.push(recovery.resumed.then(() => undefined, (err: unknown) => this.#log(`service ${s.name}: ${describeError(err)}`)));
  }

  /** Resolves when the deploys resumed at start have ended (completed or rolled back). */
  async recovered(): Promise<void> {
    await Promise.all(this.#recovering);
  }

  /** Removes every member (stopping it) and the service. */
  async rm(name: string): Promise<ServiceRecord> {
    const record = this.get(name);
    await this.#removeAll(record);
    this.#scale.forget(name);
    return record;
  }

  dispose(): void {
    this.#unsubscribe();
    this.#unmoved();
    this.#scale.dispose();
  }

  /** The route and the record go first, so the members' own removal events find no service to update. */
  async #removeAll(record: ServiceRecord): Promise<void> {
    this.#routes?.deleteService(record.name);
    for (const t of record.template.service?.tcp ?? []) this.#routes?.deleteTcpService(t.hostPort);
    await this.#store.delete(record.name);
    for (const id of record.members) await this.#members.remove(id);
  }

  /** Waits until the member has its template snapshot (or can no longer take one). */
  async #templateOf(id: string): Promise<void> {
    const deadline = Date.now() + TEMPLATE_WAIT_MS;
    while (Date.now() < deadline) {
      const rec = this.#controller.get(id);
      if (rec.status.snapshots.template !== undefined) return;
      if (rec.status.state === 'failed' || rec.status.state === 'stopped') throw new ServiceError('INVALID_SPEC', `service instance ${rec.name} did not start (${rec.status.error ?? rec.status.state}): see 'flick logs ${rec.name}'`, { kind: 'user' });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.#log(`service: instance ${id} took no template within ${TEMPLATE_WAIT_MS} ms; the other instances boot on their own`);
  }

  #route(record: ServiceRecord): void {
    if (this.#routes === undefined) return;
    const target = record.autoscale ? { targetInFlight: record.autoscale.targetInFlight } : {};
    for (const t of record.template.service?.tcp ?? []) this.#routes.setTcpService(t.hostPort, { service: record.name, members: record.members, targetPort: t.guestPort, ...target });
    // The first local member's (the image may have given the port); a service all on other hosts has its template's.
    const first = this.members(record.name)[0];
    const http = first?.spec.service.http ?? record.template.service?.http;
    if (http === undefined) {
      this.#routes.setService(record.name, { service: record.name, members: [], targetPort: 80 });
      return;
    }
    this.#routes.setService(record.name, {
      service: record.name,
      members: record.members,
      targetPort: http.guestPort,
      ...target,
      ...(http.tls ? { certificate: http.tls } : {}),
      ...(http.plain ? { plain: http.plain } : {}),
    });
  }
}
