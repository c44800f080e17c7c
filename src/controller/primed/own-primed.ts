// Primed VMs of stateful instances: soon after a stateful instance's own state is saved (cold
// standby), that snapshot is restored paused (RestoreOptions.paused: QEMU started, its jail and
// devices made, device state loaded, no guest code run) in a namespace from the host's pool, so
// that the instance's next cold wake only binds and resumes it (bind.ts) instead of waiting for a
// QEMU to start. At most one per instance, and only one QEMU ever holds the instance's disk: a
// wake first waits for a restore under way (`settle`), and whatever else would start a VM on the
// instance, end its state or change its volumes (a boot, stop, rm, fork, volume clone) drops it
// first (`drop`, awaiting a restore under way). No guest code ran in it, so a dropped VM leaves
// the snapshot valid: its RAM file was mapped (x-ignore-shared), never written, its disk never
// written. Budget: the host RAM of all of them (each VM's memory cgroup once restored; an
// estimate before); the least recently primed goes to make room. Folders, and the sweep of
// unbound ones at flickd start, are the pool's (primed-dir.ts).
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { describeError } from '../../errors.js';
import type { InstanceRecord } from '../state/instance-record.js';
import type { Snapshot, VmConfig, VmmDriver } from '../../vmm/driver.js';
import type { ControllerLogger, InstanceNetwork, NetworkLease } from '../seams.js';
import { preparePrimedFolder, primedFolder } from './primed-dir.js';
import { fingerprint, handOver, sameTemplate, type PrimedEntry, type PrimedVm } from './primed-pool.js';

export interface OwnPrimedConfig {
  /** Host RAM all of them may hold; 0: none. */
  budgetBytes: number;
  /** Time after the save before the restore starts (the instance is often woken at once, and a restore takes CPU). */
  delayMs?: number;
  /** What a VM is assumed to cost before one was measured. */
  estimateBytes?: number;
}

export interface OwnPrimedDeps {
  driver: VmmDriver;
  network: InstanceNetwork;
  /** The pool's folder (primed-dir.ts primedRoot). */
  root: string;
  log: ControllerLogger;
  /** The instance as it is now (undefined: removed). */
  get(id: string): InstanceRecord | undefined;
  /** The instance's own VM config, without a network (bind.ts ownVmConfig). */
  vmConfig(rec: InstanceRecord): VmConfig;
}

export interface OwnPrimedStats {
  budgetBytes: number;
  usedBytes: number;
  vms: number;
  hits: number;
  misses: number;
  primes: number;
  failures: number;
  evictions: number;
}

interface Entry extends PrimedEntry {
  instanceId: string;
  snapshot: Snapshot;
}

/** 1 s: a wake within it restores as before; the bench's unprimed cold wakes come ~0.1 s after the save. */
export const DEFAULT_OWN_PRIME_DELAY_MS = 1000;
/** 48 MiB: a paused, never-run QEMU whose guest RAM is a mapped file holds its own heap and little of that file. */
const DEFAULT_OWN_ESTIMATE_BYTES = 48 * 1024 * 1024;

export class OwnPrimed {
  readonly #cfg: Required<OwnPrimedConfig>;
  readonly #deps: OwnPrimedDeps;
  /** By instance id; in the order they were primed (the first is the first to go for room). */
  readonly #entries = new Map<string, Entry>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #restoring = new Map<string, Promise<void>>();
  /** By instance id: a discard under way (its QEMU may still hold the disk until this resolves). */
  readonly #ending = new Map<string, Promise<void>>();
  #measured: number | undefined;
  #disposed = false;
  readonly #counts = { hits: 0, misses: 0, primes: 0, failures: 0, evictions: 0 };

  constructor(cfg: OwnPrimedConfig, deps: OwnPrimedDeps) {
    this.#cfg = { budgetBytes: cfg.budgetBytes, delayMs: cfg.delayMs ?? DEFAULT_OWN_PRIME_DELAY_MS, estimateBytes: cfg.estimateBytes ?? DEFAULT_OWN_ESTIMATE_BYTES };
    this.#deps = deps;
  }

  get enabled(): boolean {
    return this.#cfg.budgetBytes > 0;
  }

  /** The instance's own state was just saved: prime it after the delay, if it is still in cold standby then. */
  schedule(instanceId: string): void {
    if (!this.enabled || this.#disposed) return;
    clearTimeout(this.#timers.get(instanceId));
    const timer = setTimeout(() => {
      this.#timers.delete(instanceId);
      if (this.#restoring.has(instanceId) || this.#disposed) return;
      const p = this.#prime(instanceId)
        .catch((err) => {
          this.#counts.failures += 1;
          this.#deps.log.warn(`primed pool: restoring the saved state of instance ${instanceId} failed: ${describeError(err)}`);
        })
        .finally(() => this.#restoring.delete(instanceId));
      this.#restoring.set(instanceId, p);
    }, this.#cfg.delayMs);
    timer.unref();
    this.#timers.set(instanceId, timer);
  }

  /** Resolves once no restore for the instance is under way (a wake waits for it, then takes its VM). */
  async settle(instanceId: string): Promise<void> {
    for (;;) {
      const p = this.#restoring.get(instanceId) ?? this.#ending.get(instanceId);
      if (p === undefined) return;
      await p.catch(() => {});
    }
  }

  /**
   * On a cold wake's path, after `settle` (synchronous): the VM primed from exactly `snapshot` with
   * `config` (the instance's, without network), or undefined (then `drop` before any other restore).
   * The caller binds it before it resumes it.
   */
  take(instanceId: string, snapshot: Snapshot, config: VmConfig): PrimedVm | undefined {
    if (!this.enabled) return undefined;
    const e = this.#entries.get(instanceId);
    if (e === undefined || !sameTemplate(e.snapshot, snapshot) || e.fingerprint !== fingerprint(config)) {
      this.#counts.misses += 1;
      return undefined; // a mismatched one: the caller drops it before it restores
    }
    this.#entries.delete(instanceId);
    e.taken = true;
    this.#counts.hits += 1;
    return handOver(e, () => this.#release(e));
  }

  /** Before anything else starts a VM on the instance, ends its state or changes its volumes: no primed VM of it stays. */
  async drop(instanceId: string, why: string): Promise<void> {
    clearTimeout(this.#timers.get(instanceId));
    this.#timers.delete(instanceId);
    await this.#restoring.get(instanceId);
    const e = this.#entries.get(instanceId);
    if (e) await this.#discard(e, why);
    await this.#ending.get(instanceId);
  }

  stats(): OwnPrimedStats {
    return { budgetBytes: this.#cfg.budgetBytes, usedBytes: this.#used(), vms: this.#entries.size, ...this.#counts };
  }

  /** Ends every VM not taken (their snapshots stay valid). Safe twice. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#restoring.values()]);
    await Promise.all([...this.#entries.values()].map((e) => this.#discard(e, 'flickd is stopping', false)));
    await Promise.allSettled([...this.#ending.values()]);
  }

  #used(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += e.bytes;
    return n;
  }

  async #prime(instanceId: string): Promise<void> {
    const rec = this.#deps.get(instanceId);
    const own = rec?.status.snapshots.own;
    if (rec === undefined || own === undefined || rec.status.state !== 'standby' || rec.status.standbyTier !== 'cold' || rec.status.pid !== null || rec.status.vm === null) return;
    const have = this.#entries.get(instanceId);
    if (have && sameTemplate(have.snapshot, own)) return;
    if (have) await this.#discard(have, 'its instance saved a newer state');
    const cost = this.#measured ?? this.#cfg.estimateBytes;
    if (cost > this.#cfg.budgetBytes) return;
    // Room: the least recently primed go first.
    for (const e of [...this.#entries.values()]) {
      if (this.#used() + cost <= this.#cfg.budgetBytes) break;
      this.#counts.evictions += 1;
      await this.#discard(e, 'room for a more recently saved instance');
    }
    const id = `primed-${crypto.randomBytes(5).toString('hex')}`;
    const f = primedFolder(this.#deps.root, id);
    const base = this.#deps.vmConfig(rec);
    let lease: NetworkLease | undefined;
    try {
      lease = await this.#deps.network.acquire();
      const config: VmConfig = { ...base, id, runDir: f.runDir, network: lease.attachment };
      await preparePrimedFolder(this.#deps.root, config);
      const vm = await this.#deps.driver.restore(config, own, { mode: 'own', paused: true });
      const bytes = vm.memoryUsage() ?? cost;
      this.#measured = bytes;
      const e: Entry = { instanceId, folder: f.dir, snapshot: own, fingerprint: fingerprint(base), vm, lease, config, bytes, taken: false };
      lease = undefined; // the entry owns it now
      this.#entries.set(instanceId, e);
      this.#counts.primes += 1;
      void vm.exited.then(() => {
        if (e.taken || this.#entries.get(instanceId) !== e) return;
        this.#entries.delete(instanceId);
        this.#deps.log.warn(`primed pool: VM ${id} of instance ${rec.name} exited by itself`);
        void this.#end(e, () => this.#release(e));
      });
    } catch (err) {
      if (lease) await this.#deps.network.release({ index: lease.index, netns: lease.attachment.netns ?? '' }).catch(() => {});
      await fsp.rm(f.dir, { recursive: true, force: true });
      throw err;
    }
  }

  async #discard(e: Entry, why: string, log = true): Promise<void> {
    if (e.taken || this.#entries.get(e.instanceId) !== e) return;
    this.#entries.delete(e.instanceId);
    if (log) this.#deps.log.info(`primed pool: VM of instance ${e.instanceId} ended: ${why}`);
    await this.#end(e, async () => {
      await e.vm.kill().catch(() => {});
      await this.#release(e);
    });
  }

  /** Runs an entry's ending (already out of #entries) so that settle and drop wait for it. */
  async #end(e: Entry, work: () => Promise<void>): Promise<void> {
    const prev = this.#ending.get(e.instanceId);
    const p: Promise<void> = Promise.resolve(prev)
      .then(work)
      .finally(() => {
        if (this.#ending.get(e.instanceId) === p) this.#ending.delete(e.instanceId);
      });
    this.#ending.set(e.instanceId, p);
    await p;
  }

  async #release(e: Entry): Promise<void> {
    await this.#deps.network.release({ index: e.lease.index, netns: e.lease.attachment.netns ?? '' }).catch((err) => this.#deps.log.warn(`primed pool: releasing the network of a VM of instance ${e.instanceId}: ${describeError(err)}`));
    await fsp.rm(e.folder, { recursive: true, force: true }).catch(() => {});
  }
}
