// The two tiers of standby, below the wake/suspend logic of scale-to-zero.ts:
// ending a paused VM into cold standby (saving a stateful instance's own state
// first), demoting a hot instance to cold, paging a hot instance's guest RAM
// out (MicroVm.reclaimMemory), and what happens when a paused VM dies by itself.
// The hot tier's bookkeeping (budget, LRU, page-out timers) is hot-standby.ts.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord } from './state/instance-record.js';
import type { MicroVm } from '../vmm/driver.js';
import { HotStandby, keepResidentBytes, type HotStandbyConfig } from './hot-standby.js';
import type { InstanceHost } from './instance-host.js';
import type { ControllerMetrics } from './metrics.js';

export class StandbyTiers {
  readonly #t: InstanceHost;
  readonly #metrics: ControllerMetrics;
  readonly hot: HotStandby;

  constructor(target: InstanceHost, hot: HotStandbyConfig, metrics: ControllerMetrics) {
    this.#t = target;
    this.#metrics = metrics;
    this.hot = new HotStandby(hot, {
      usage: (id) => this.#usage(id),
      pageOut: (id) => this.pageOut(id),
      demote: (id) => this.demote(id),
      log: target.log,
    });
  }

  /** Hot → cold: a stateful instance's state is saved from the paused VM, then the process ends. */
  demote(id: string): Promise<void> {
    return this.#t.serialize(id, async () => {
      this.hot.remove(id);
      const rec = this.#t.get(id);
      const vm = this.#t.vm(id);
      if (rec === undefined || rec.status.state !== 'standby' || rec.status.standbyTier !== 'hot' || vm === undefined) return;
      try {
        await this.endPaused(rec, vm);
        this.#metrics.of(id).demotions += 1;
        this.#t.log.info(`instance ${rec.name}: hot standby demoted to cold`);
      } catch (err) {
        await this.#t.kill(id, vm);
        this.#t.transition(this.#t.fresh(id), 'failed', { pid: null, standbyTier: undefined, error: `demotion to cold standby failed: ${describeError(err)}` });
      }
    });
  }

  /** Saves a paused VM's own state (stateful) and ends its process; the record says cold standby. Runs inside the instance's queue. */
  async endPaused(rec: InstanceRecord, vm: MicroVm): Promise<void> {
    const id = rec.id;
    const snapshots = { ...rec.status.snapshots };
    if (rec.spec.scaleToZero.stateful) {
      const t0 = performance.now();
      const dir = path.join(rec.status.dir, 'snapshots', 'own');
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.mkdir(dir, { recursive: true });
      // Without keepRunning the RAM file is hard-linked into `dir` (instant); this VM never runs again.
      snapshots.own = await vm.createSnapshot(dir);
      this.#t.events.emit('snapshot', { id, name: rec.name, kind: 'own', durationMs: performance.now() - t0 });
    }
    await this.#t.kill(id, vm);
    // Cold standby holds no network: the next wake takes one from the pool.
    await this.#t.releaseNetwork(id);
    const cur = this.#t.fresh(id);
    // A suspend comes here from `draining`, a demotion from `standby`.
    if (cur.status.state === 'standby') this.#t.update(cur, { pid: null, snapshots, standbyTier: 'cold' });
    else this.#t.transition(cur, 'standby', { pid: null, snapshots, standbyTier: 'cold' });
  }

  /** Gives a hot instance's guest RAM back to the host, but for its most recently used part (MicroVm.reclaimMemory). */
  pageOut(id: string): Promise<void> {
    return this.#t.serialize(id, async () => {
      const rec = this.#t.get(id);
      const vm = this.#t.vm(id);
      if (rec === undefined || rec.status.state !== 'standby' || rec.status.standbyTier !== 'hot' || vm === undefined) return;
      const r = await vm.reclaimMemory(keepResidentBytes(this.hot.config.keepResident, rec.spec.memoryMb));
      const m = this.#metrics.of(id);
      m.pageOuts += 1;
      m.hotBytesAfterPageOut = r.afterBytes ?? null;
      this.#t.log.info(
        `instance ${rec.name}: hot standby paged out in ${r.durationMs.toFixed(1)} ms${r.beforeBytes !== undefined ? ` (${mib(r.beforeBytes)} → ${mib(r.afterBytes ?? 0)} MiB)` : ''}`,
      );
    });
  }

  /** A hot-standby VM died on its own: a stateless instance just becomes cold; a stateful one lost its state. */
  async onHotVmDied(id: string): Promise<void> {
    this.hot.remove(id);
    if (this.#t.get(id)?.status.state !== 'standby') return;
    await this.#t.releaseNetwork(id);
    const rec = this.#t.fresh(id);
    if (rec.spec.scaleToZero.stateful) this.#t.transition(rec, 'failed', { pid: null, standbyTier: undefined, error: 'the paused VM of this hot-standby instance exited; its state is lost' });
    else this.#t.update(rec, { pid: null, standbyTier: 'cold' });
  }

  #usage(id: string): number {
    const rec = this.#t.get(id);
    const vm = this.#t.vm(id);
    const estimate = ((rec?.spec.memoryMb ?? 128) + 64) * 1024 * 1024;
    if (vm === undefined) return 0;
    return vm.memoryUsage() ?? estimate;
  }
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
