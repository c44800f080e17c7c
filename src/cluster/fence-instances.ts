// What the host-side fence (fence.ts) does to this host's instances. Fenced:
// every local instance whose record this host owns and that is stateless (the
// ones a failover moves) is killed if it has a VM process, and its wakes are
// refused, so the proxy cannot start it again. Lifted: each record's owner is
// read from etcd afresh (this host's mirror may still be catching up) and the
// instance started again if it is still this host's; one claimed by another
// host is left to the agent, which releases it.
import { describeError, FlickError } from '../errors.js';
import type { Controller } from '../controller/controller.js';
import type { EtcdClient } from './etcd-client.js';
import { HostFence, PROBE_MS } from './fence.js';

export interface FenceTargets {
  self: string;
  controller: Pick<Controller, 'list' | 'stop' | 'start'>;
  /** The catalog's owner of an instance and whether it keeps state, as this host last saw them. */
  cataloged: (name: string) => { owner: string; stateful: boolean } | undefined;
  /** The owner read fresh from etcd (after the lease is renewed again). */
  ownerNow: (name: string) => Promise<string | undefined>;
  log: (line: string) => void;
}

export class FencedInstances {
  readonly #t: FenceTargets;
  /** Instance id → its name and whether the fence stopped its VM. */
  readonly #held = new Map<string, { name: string; stopped: boolean }>();

  constructor(targets: FenceTargets) {
    this.#t = targets;
  }

  /** Whether a wake of this local instance must be refused (it is fenced). */
  refuses(instanceId: string): boolean {
    return this.#held.has(instanceId);
  }

  refusal(instanceId: string): FlickError {
    const name = this.#held.get(instanceId)?.name ?? instanceId;
    return new FlickError('HOST_DOWN', `instance "${name}" is fenced on this host: it lost the cluster's etcd while its peers did not, so the instance is moving to another host; retry in a few seconds (any host's proxy routes to it)`);
  }

  async fence(): Promise<void> {
    const { controller, cataloged, self, log } = this.#t;
    for (const rec of controller.list()) {
      const entry = cataloged(rec.name);
      if (!entry || entry.owner !== self || entry.stateful || this.#held.has(rec.id)) continue;
      const running = rec.status.pid !== undefined && rec.status.pid !== null;
      this.#held.set(rec.id, { name: rec.name, stopped: running });
      if (!running) continue;
      // Killed, not powered off: its lease lapses within a second or so and another host may start it then.
      await controller.stop(rec.id, { kill: true }).then(
        () => log(`cluster: fenced instance "${rec.name}": stopped (pid ${rec.status.pid} killed)`),
        (err: unknown) => log(`cluster: fencing instance "${rec.name}": ${describeError(err)}`),
      );
    }
  }

  async lift(): Promise<void> {
    const { controller, ownerNow, self, log } = this.#t;
    const held = [...this.#held];
    this.#held.clear();
    for (const [id, { name, stopped }] of held) {
      const owner = await ownerNow(name).catch(() => undefined);
      if (owner !== self || !stopped || !controller.list().some((r) => r.id === id)) continue;
      await controller.start(id).then(
        () => log(`cluster: instance "${name}" is still this host's: started again after the fence`),
        (err: unknown) => log(`cluster: starting instance "${name}" after the fence: ${describeError(err)}`),
      );
    }
  }
}

/** What the agent holds: wakes to refuse, and a check for its every tick. */
export interface HostFenceHandle {
  refuses(instanceId: string): boolean;
  refusal(instanceId: string): FlickError;
  check(): Promise<void>;
}

export function startHostFence(c: {
  self: string;
  controller: FenceTargets['controller'];
  etcd: EtcdClient;
  ttlMs: number;
  lease: { readonly lastRenewedAt: number };
  /** Whether a peer reads etcd now (hosts-api.ts's peerReachesEtcd). */
  peers: () => Promise<boolean>;
  cataloged: FenceTargets['cataloged'];
  ownerNow: FenceTargets['ownerNow'];
  log: (line: string) => void;
}): HostFenceHandle {
  const instances = new FencedInstances({
    self: c.self,
    controller: c.controller,
    cataloged: c.cataloged,
    ownerNow: c.ownerNow,
    log: c.log,
  });
  const fence = new HostFence({
    ttlMs: c.ttlMs,
    lastRenewedAt: () => c.lease.lastRenewedAt,
    reachesEtcd: () => c.etcd.reachable(PROBE_MS),
    peerReachesEtcd: c.peers,
    fence: () => instances.fence(),
    lift: () => instances.lift(),
    log: c.log,
  });
  return { refuses: (id) => instances.refuses(id), refusal: (id) => instances.refusal(id), check: () => fence.check() };
}
