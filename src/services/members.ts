// A service's members wherever they are (member-placement.ts): each made on the
// host the cluster's placement picks, or by this host's controller (no cluster,
// autoscaled, TCP ports); ready when running or in standby, as its own host
// sees it; removed through its host; followed by name when a failover moved it.
import crypto from 'node:crypto';
import type { Controller } from '../controller/controller.js';
import type { InstanceConfig } from '../controller/spec.js';
import { DEFAULT_DOMAIN } from '../controller/spec.js';
import { FlickError } from '../errors.js';
import { ServiceError } from './service-error.js';
import { spreads, type MemberPlacement } from './member-placement.js';
import type { ServiceRecord } from './service-store.js';

/** What the services need of the controller: its public surface only. */
export type ServiceController = Pick<Controller, 'create' | 'rm' | 'list' | 'get' | 'on'>;

/** A member's name: `<service>-<4 hex>`. */
export function memberName(service: string): string {
  return `${service}-${crypto.randomBytes(2).toString('hex')}`;
}

/** Member `index` of `record`: with autoscale, the first `min` always run and the rest scale to zero after the cooldown. */
export function memberConfig(record: ServiceRecord, index: number, name = memberName(record.name)): InstanceConfig {
  const t = record.template;
  const a = record.autoscale;
  return {
    ...t,
    name,
    ...(a ? { scaleToZero: index < a.min ? { policy: 'off' as const } : { policy: 'on' as const, cooldownTimeMs: a.cooldownTimeMs, stateful: false } } : {}),
    ...(t.service?.http ? { service: { ...t.service, http: { ...t.service.http, hostname: `${name}.${DEFAULT_DOMAIN}` } } } : {}),
  };
}

export class ServiceMembers {
  readonly #controller: ServiceController;
  readonly #placement: MemberPlacement | undefined;

  constructor(controller: ServiceController, placement: MemberPlacement | undefined) {
    this.#controller = controller;
    this.#placement = placement;
  }

  /** Makes member `index` (named `name`) where the cluster puts it, `siblings` counting against their hosts; its id. */
  async make(record: ServiceRecord, index: number, siblings: readonly string[] = record.members, name?: string): Promise<string> {
    const config = memberConfig(record, index, name);
    const p = this.#placement;
    if (!spreads(record, p)) return (await this.#controller.create(config)).id;
    const host = p.place(config, siblings.map((m) => p.hostOf(m)));
    return (await p.create(host, config)).id;
  }

  /** Running, or in standby (a scale-to-zero member needs no wake to be ready); a failed one rejects. */
  async ready(id: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const remote = this.#placement?.hostOf(id) !== undefined;
      const { name, state, error } = remote ? { name: id.slice(id.indexOf('/') + 1), ...(await this.#placement!.state(id)) } : this.#local(id);
      if (state === 'running' || state === 'standby') return;
      if (state === 'failed' || state === 'stopped') throw new ServiceError('START_FAILED', `service instance ${name} is ${state}${error ? ` (${error})` : ''}: see 'flick logs ${name}'`, { kind: 'user' });
      if (Date.now() > deadline) throw new ServiceError('WAIT_TIMEOUT', `service instance ${name} was not ready within ${timeoutMs} ms: see 'flick logs ${name}' for why it has not started`, { kind: 'user' });
      await new Promise((resolve) => setTimeout(resolve, remote ? 250 : 100));
    }
  }

  #local(id: string): { name: string; state: string; error?: string } {
    const rec = this.#controller.get(id);
    return { name: rec.name, state: rec.status.state, ...(rec.status.error ? { error: rec.status.error } : {}) };
  }

  /** Stops and removes a member, here or on its host; one already gone is no error. */
  async remove(id: string): Promise<void> {
    if (this.#placement !== undefined && (await this.#placement.remove(id))) return;
    try {
      await this.#controller.rm(id, { force: true });
    } catch (err) {
      if (!(err instanceof FlickError && err.code === 'INSTANCE_NOT_FOUND')) throw err;
    }
  }

  /** Each member's id and state, oldest first (another host's as the cluster last saw it; one gone from here: `stopped`). */
  states(record: ServiceRecord): Array<{ id: string; status: { state: string } }> {
    const byId = new Map(this.#controller.list().map((r) => [r.id, r]));
    return record.members.map((id) => ({ id, status: { state: byId.get(id)?.status.state ?? (this.#placement?.hostOf(id) !== undefined ? 'running' : 'stopped') } }));
  }

  /**
   * The record's members as the cluster says they are now (one a failover moved, by its new id;
   * one gone from the cluster, left out), or undefined when none changed. `gone`: a member of
   * this host just removed (its id, its name), which stays if the cluster moved it elsewhere.
   */
  followed(record: ServiceRecord, gone?: { id: string; name: string }): string[] | undefined {
    const p = this.#placement;
    if (p === undefined) return gone && record.members.includes(gone.id) ? record.members.filter((m) => m !== gone.id) : undefined;
    const names = new Map(this.#controller.list().map((r) => [r.id, r.name]));
    if (gone !== undefined) names.set(gone.id, gone.name);
    let changed = false;
    const next = record.members.flatMap((id) => {
      const name = names.get(id) ?? p.nameOf(id);
      const now = name === undefined || name === null ? name : p.follow(name);
      // A member of this host gone without the cluster knowing where (removed before the host joined) leaves too.
      const to = now === undefined ? (id === gone?.id ? null : id) : now === id && id === gone?.id ? null : now;
      if (to !== id) changed = true;
      return to === null ? [] : [to];
    });
    return changed ? next : undefined;
  }
}
