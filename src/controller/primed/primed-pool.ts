// The primed pool: VMs restored from the busiest templates and left paused (RestoreOptions.paused:
// QEMU started, device state loaded, no guest code run), each in a network namespace of its own
// from the host's pool, so that a cold wake of a stateless instance takes one, binds it (its record
// names the VM's pid, run folder and network) and resumes it, instead of waiting for a QEMU to start
// and load its state. Any namespace fits any template: every one gives its guest the same address
// and MAC (src/network), so binding changes no guest state.
//
// Budget: the VMs' host RAM (each VM's memory cgroup once restored; an estimate while it restores)
// stays within `budgetBytes`; a busier template may evict a less busy one's VM. Refill runs on a
// timer, one restore at a time, only once no cold wake came for `refillDelayMs` (never on a wake's
// path: a take only removes an entry). Owners: an entry's process, namespace and folder are the
// pool's until taken, the instance's after; a template's removal or replacement empties its entries,
// and a restart of flickd sweeps folders no record names (primed-dir.ts).
import crypto from 'node:crypto';
import os from 'node:os';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describeError } from '../../errors.js';
import type { MicroVm, Snapshot, VmConfig, VmmDriver } from '../../vmm/driver.js';
import type { ControllerLogger, InstanceNetwork, NetworkLease } from '../seams.js';
import { ColdWakeDemand, nextToPrime, type DemandOptions, type PrimeSpec, type Want } from './demand.js';
import { warmUp } from '../template-warmup.js';
import { findQemuOf, killAndWait, listPrimedFolders, preparePrimedFolder, primedFolder, primedFolderOf, readPrimedConfig } from './primed-dir.js';

export interface PrimedPoolConfig {
  /** Host RAM all primed VMs may hold; 0: no pool. */
  budgetBytes: number;
  /** Quiet time after the last cold wake before a refill starts (a restore competes with the woken app for CPU). */
  refillDelayMs?: number;
  /** What a VM is assumed to cost before one of its template was measured. */
  estimateBytes?: number;
  /**
   * GET / requests a primed VM of an HTTP app serves (resumed, its clock set, then paused again)
   * before it waits in the pool (flickd --primed-warm). 0 (default): no guest code runs in the pool,
   * and a wake pays the guest's first run after a restore (under TCG: translating its code again);
   * warmed, a wake is a hot one, but the app has served those requests (its memory is the
   * template's plus them, as the template is the first boot's plus its own warm-up).
   */
  warmRequests?: number;
  demand?: Partial<DemandOptions>;
  /** Host RAM for primed VMs of stateful instances, each restored from its own saved state (own-primed.ts); default: `budgetBytes`. */
  statefulBudgetBytes?: number;
  /** Time after a stateful instance's save before its state is primed (own-primed.ts DEFAULT_OWN_PRIME_DELAY_MS). */
  statefulDelayMs?: number;
}

export interface PrimedPoolDeps {
  driver: VmmDriver;
  network: InstanceNetwork;
  /** The pool's folder (primed-dir.ts primedRoot). */
  root: string;
  log: ControllerLogger;
}

/** A primed VM handed to an instance: from now on its process, network and folder are the instance's. */
export interface PrimedVm {
  vm: MicroVm;
  lease: NetworkLease;
  /** The VM's config (its own id and run folder, its network). */
  config: VmConfig;
  /** Ends it before it was bound after all (the instance went): its process, network and folder. */
  discard(): Promise<void>;
}

export interface PrimedPoolStats {
  budgetBytes: number;
  usedBytes: number;
  entries: number;
  /** Distinct templates with at least one VM. */
  templates: number;
  /** A restore into the pool is under way. */
  priming: boolean;
  hits: number;
  misses: number;
  refills: number;
  refillFailures: number;
  evictions: number;
}

/** A VM restored paused and held until taken: its process, network and folder (also own-primed.ts's). */
export interface PrimedEntry {
  folder: string;
  fingerprint: string;
  vm: MicroVm;
  lease: NetworkLease;
  config: VmConfig;
  bytes: number;
  taken: boolean;
}

interface Entry extends PrimedEntry {
  id: string;
  template: Snapshot;
}

/**
 * The default budget: a fiftieth of host RAM (~490 MiB on 24 GiB), a fifth of the hot tier's.
 * At the ~25-60 MiB a primed VM holds (minimal / node, its cgroup) that is 8-20 VMs, and one
 * serves a cold wake of any instance of its template: enough for the busiest templates' wakes
 * between two refills, small beside what the host's instances use.
 */
export function defaultPrimedBudgetBytes(totalBytes = os.totalmem()): number {
  return Math.floor(totalBytes / 50);
}

/** 32 MiB: above the ~19-23 MiB PSS a primed minimal VM measured (bench/primed-ram.ts), below node's cgroup usage. */
export const DEFAULT_PRIMED_ESTIMATE_BYTES = 32 * 1024 * 1024;
export const DEFAULT_REFILL_DELAY_MS = 300;
/** After a failed restore the pool waits this long before it tries again. */
const FAILURE_BACKOFF_MS = 5000;
/** How often demand that aged out of the window is looked at (its VMs go). */
const AGE_CHECK_MS = 60_000;

export class PrimedPool {
  readonly #cfg: Required<Omit<PrimedPoolConfig, 'demand' | 'statefulBudgetBytes' | 'statefulDelayMs'>>;
  readonly #deps: PrimedPoolDeps;
  readonly #demand: ColdWakeDemand;
  readonly #entries: Entry[] = [];
  /** Bytes measured per template (the last VM's), the estimate for its next. */
  readonly #measured = new Map<string, number>();
  #reserved = 0;
  #primingDir: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #ageTimer: NodeJS.Timeout | undefined;
  #lastWakeAt = -Infinity;
  #backoffUntil = 0;
  #filling: Promise<void> | undefined;
  #disposed = false;
  readonly #counts = { hits: 0, misses: 0, refills: 0, refillFailures: 0, evictions: 0 };

  constructor(cfg: PrimedPoolConfig, deps: PrimedPoolDeps) {
    this.#cfg = { budgetBytes: cfg.budgetBytes, refillDelayMs: cfg.refillDelayMs ?? DEFAULT_REFILL_DELAY_MS, estimateBytes: cfg.estimateBytes ?? DEFAULT_PRIMED_ESTIMATE_BYTES, warmRequests: cfg.warmRequests ?? 0 };
    this.#deps = deps;
    this.#demand = new ColdWakeDemand(cfg.demand);
    this.#ageTimer = this.enabled ? setInterval(() => this.#schedule(0), AGE_CHECK_MS).unref() : undefined;
  }

  get enabled(): boolean {
    return this.#cfg.budgetBytes > 0;
  }

  /**
   * On a cold wake's path (synchronous, no I/O): hands over a VM primed from exactly `template`
   * whose config matches `config` (an instance's, without network), or undefined (counted a miss).
   * The caller binds it to the instance before it resumes it.
   */
  take(template: Snapshot, config: VmConfig): PrimedVm | undefined {
    if (!this.enabled) return undefined;
    const fp = fingerprint(config);
    const i = this.#entries.findIndex((e) => sameTemplate(e.template, template) && e.fingerprint === fp);
    if (i < 0) {
      this.#counts.misses += 1;
      return undefined;
    }
    const [e] = this.#entries.splice(i, 1) as [Entry];
    e.taken = true;
    this.#counts.hits += 1;
    return handOver(e, () => this.#release(e));
  }

  /** A cold wake of an instance of `template` with `config` (served or not): demand, and a refill after it. */
  noteColdWake(template: Snapshot, config: VmConfig, http?: PrimeSpec['http']): void {
    if (!this.enabled || this.#disposed) return;
    const clean: VmConfig = { ...config };
    delete clean.network;
    this.#demand.note({ template, config: clean, ...(http ? { http } : {}) }, Date.now());
    // A replaced template (same folder, another snapshot): its old VMs can serve nobody.
    for (const e of this.#entries.filter((x) => x.template.dir === template.dir && !sameTemplate(x.template, template))) void this.#discard(e, 'its template was replaced');
    this.#lastWakeAt = Date.now();
    this.#schedule(this.#cfg.refillDelayMs);
  }

  /** The template in `dir` was removed (or is being replaced): its VMs go, its demand is forgotten. */
  async dropTemplate(dir: string): Promise<void> {
    this.#demand.forget(dir);
    await Promise.all(this.#entries.filter((e) => e.template.dir === dir).map((e) => this.#discard(e, 'its template was removed')));
  }

  /** Whether `runDir` is the run folder of a VM this pool made (taken or not). */
  owns(runDir: string | undefined): boolean {
    return primedFolderOf(this.#deps.root, runDir) !== undefined;
  }

  /** The pool folder of a primed VM's run folder (to remove once the VM has ended). */
  folderOf(runDir: string | undefined): string | undefined {
    return primedFolderOf(this.#deps.root, runDir);
  }

  stats(): PrimedPoolStats {
    return {
      budgetBytes: this.#cfg.budgetBytes,
      usedBytes: this.#used(),
      entries: this.#entries.length,
      templates: new Set(this.#entries.map((e) => e.template.dir)).size,
      priming: this.#primingDir !== undefined,
      ...this.#counts,
    };
  }

  /**
   * At flickd start, before networks are swept: ends the VMs of folders no record names (`bound`
   * says which are an instance's) and removes those folders; their namespaces go with the sweep.
   */
  async sweep(bound: (folder: string) => boolean): Promise<number> {
    let n = 0;
    for (const dir of await listPrimedFolders(this.#deps.root)) {
      if (bound(dir)) continue;
      const config = readPrimedConfig(dir);
      const pid = findQemuOf(path.join(dir, 'run'));
      if (pid !== undefined) {
        const vm = config ? await this.#deps.driver.adopt(config, pid).catch(() => undefined) : undefined;
        if (vm) await vm.kill();
        else if (!(await killAndWait(pid))) this.#deps.log.warn(`primed pool: QEMU ${pid} of ${dir} still alive after SIGKILL`);
      }
      await fsp.rm(dir, { recursive: true, force: true });
      n += 1;
    }
    if (n > 0) this.#deps.log.info(`primed pool: removed ${n} VM(s) a previous flickd left unbound`);
    return n;
  }

  /** Stops refilling and ends every VM still in the pool (taken ones are their instances'). Safe twice. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#ageTimer);
    await this.#filling;
    await Promise.all([...this.#entries].map((e) => this.#discard(e, 'flickd is stopping', false)));
  }

  #costOf(templateDir: string): number {
    return this.#measured.get(templateDir) ?? this.#cfg.estimateBytes;
  }

  /**
   * How many VMs each template gets within the budget: its wants taken breadth first (every
   * template's first VM, busiest first, before anyone's second), until the next does not fit.
   */
  #targets(wants: readonly Want[]): Map<string, number> {
    const out = new Map<string, number>();
    let left = this.#cfg.budgetBytes;
    const most = Math.max(0, ...wants.map((w) => w.count));
    for (let level = 1; level <= most; level++) {
      for (const w of wants) {
        if (w.count < level) continue;
        const cost = this.#costOf(w.templateDir);
        if (cost > left) return out;
        left -= cost;
        out.set(w.templateDir, level);
      }
    }
    return out;
  }

  #used(): number {
    return this.#entries.reduce((a, e) => a + e.bytes, 0) + this.#reserved;
  }

  #schedule(delayMs: number): void {
    if (!this.enabled || this.#disposed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#filling ??= this.#refill()
        .catch((err) => this.#deps.log.warn(`primed pool: refill stopped: ${describeError(err)}`))
        .finally(() => (this.#filling = undefined));
    }, Math.max(0, delayMs)).unref();
  }

  /** Fills the pool toward what demand wants, one restore at a time, while no cold wake comes. */
  async #refill(): Promise<void> {
    for (;;) {
      if (this.#disposed) return;
      const now = Date.now();
      const quietIn = this.#lastWakeAt + this.#cfg.refillDelayMs - now;
      if (quietIn > 0 || now < this.#backoffUntil) return this.#schedule(Math.max(quietIn, this.#backoffUntil - now));
      const wants = this.#demand.wants(now);
      const targets = this.#targets(wants);
      const have = (dir: string) => this.#entries.filter((e) => e.template.dir === dir).length;
      // VMs beyond what fits their template's rank go: those nobody woke lately, then the least busy.
      for (const e of [...this.#entries].reverse()) {
        const dir = e.template.dir;
        if (have(dir) <= (targets.get(dir) ?? 0)) continue;
        const inDemand = wants.some((w) => w.templateDir === dir);
        if (inDemand) this.#counts.evictions += 1;
        await this.#discard(e, inDemand ? 'room for busier templates' : 'its template was not woken lately');
      }
      const want = nextToPrime(
        wants.map((w) => ({ ...w, count: targets.get(w.templateDir) ?? 0 })),
        have,
      );
      if (want === undefined) return;
      const cost = this.#costOf(want.templateDir);
      if (this.#used() + cost > this.#cfg.budgetBytes) return;
      try {
        await this.#prime(want.spec, cost);
      } catch (err) {
        // Its template went meanwhile (removed with its last instance): no failure of the pool's.
        if (this.#disposed || this.#demand.spec(want.templateDir) === undefined) continue;
        this.#counts.refillFailures += 1;
        this.#backoffUntil = Date.now() + FAILURE_BACKOFF_MS;
        this.#deps.log.warn(`primed pool: restoring a VM of template ${want.templateDir} failed, trying again in ${FAILURE_BACKOFF_MS / 1000} s: ${describeError(err)}`);
      }
    }
  }

  async #prime(spec: PrimeSpec, cost: number): Promise<void> {
    const id = `primed-${crypto.randomBytes(5).toString('hex')}`;
    const f = primedFolder(this.#deps.root, id);
    this.#reserved += cost;
    this.#primingDir = spec.template.dir;
    let lease: NetworkLease | undefined;
    try {
      lease = await this.#deps.network.acquire();
      const config: VmConfig = { ...spec.config, id, runDir: f.runDir, network: lease.attachment };
      await preparePrimedFolder(this.#deps.root, config);
      const vm = await this.#deps.driver.restore(config, spec.template, { mode: 'clone', paused: true });
      if (this.#cfg.warmRequests > 0 && spec.http) {
        try {
          await vm.resume(); // with its clock set: the app's warm-up requests see the right time
          await warmUp({ host: lease.attachment.hostReachableIp, port: spec.http.port, hostname: spec.http.hostname }, this.#cfg.warmRequests, { timeoutMs: 5000 });
          await vm.pause();
        } catch (err) {
          await vm.kill();
          throw err;
        }
      }
      const bytes = vm.memoryUsage() ?? cost;
      this.#measured.set(spec.template.dir, bytes);
      const e: Entry = { id, folder: f.dir, template: spec.template, fingerprint: fingerprint(spec.config), vm, lease, config, bytes, taken: false };
      lease = undefined; // the entry owns it now
      this.#entries.push(e);
      this.#counts.refills += 1;
      // Dropped or replaced while it restored, or the pool stopped: it serves nobody.
      const current = this.#demand.spec(spec.template.dir);
      if (this.#disposed || current === undefined || !sameTemplate(current.template, spec.template)) await this.#discard(e, 'its template went while it restored');
      void vm.exited.then(() => {
        const i = this.#entries.indexOf(e);
        if (e.taken || i < 0) return;
        this.#entries.splice(i, 1);
        this.#deps.log.warn(`primed pool: VM ${id} exited by itself`);
        void this.#release(e);
        this.#schedule(this.#cfg.refillDelayMs);
      });
    } catch (err) {
      if (lease) await this.#deps.network.release({ index: lease.index, netns: lease.attachment.netns ?? '' }).catch(() => {});
      await fsp.rm(f.dir, { recursive: true, force: true });
      throw err;
    } finally {
      this.#reserved -= cost;
      this.#primingDir = undefined;
    }
  }

  /** Ends an entry still in the pool: its process, then its network and folder. */
  async #discard(e: Entry, why: string, log = true): Promise<void> {
    const i = this.#entries.indexOf(e);
    if (i < 0 || e.taken) return;
    this.#entries.splice(i, 1);
    if (log) this.#deps.log.info(`primed pool: VM ${e.id} ended: ${why}`);
    await e.vm.kill().catch(() => {});
    await this.#release(e);
  }

  async #release(e: Entry): Promise<void> {
    await this.#deps.network.release({ index: e.lease.index, netns: e.lease.attachment.netns ?? '' }).catch((err) => this.#deps.log.warn(`primed pool: releasing the network of VM ${e.id}: ${describeError(err)}`));
    await fsp.rm(e.folder, { recursive: true, force: true }).catch(() => {});
  }
}

/** A primed VM handed to an instance; `release` gives back its network and folder should it be discarded. */
export function handOver(e: Pick<PrimedVm, 'vm' | 'lease' | 'config'>, release: () => Promise<void>): PrimedVm {
  return {
    vm: e.vm,
    lease: e.lease,
    config: e.config,
    discard: async () => {
      await e.vm.kill().catch(() => {});
      await release();
    },
  };
}

/** Two snapshots are one template (or one instance's state) as it is now: same folder, same taking. */
export function sameTemplate(a: Snapshot, b: Snapshot): boolean {
  return a.dir === b.dir && a.createdAt === b.createdAt && a.stateFile === b.stateFile;
}

/** What of a VM config the guest sees or QEMU is started with, but its id, run folder and network. */
export function fingerprint(c: VmConfig): string {
  return JSON.stringify([c.kernel, c.initrd, c.rootfs, c.memoryMb, c.vcpus, c.guest, c.drives ?? [], c.accel ?? 'auto', c.extraKernelArgs ?? []]);
}
