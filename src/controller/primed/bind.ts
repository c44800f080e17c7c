// A cold wake's VM, where the primed pool meets the lifecycle: a primed VM taken from the pool and
// bound to the instance (one record write: its pid, run folder and network), then resumed with its
// clock set (a stateless instance's from its template, a stateful one's from its own state: own-primed.ts); or, with none that fits (or one that fails to resume), a new restore as before. And
// the end of a bound primed VM: its console log joins the instance's and its folder goes.
import path from 'node:path';
import { describeError } from '../../errors.js';
import type { InstanceRecord } from '../state/instance-record.js';
import type { MicroVm, RestoreOptions, Snapshot, VmConfig, VmmDriver } from '../../vmm/driver.js';
import type { ControllerLogger, InstanceNetwork, InstanceVolumes, NetworkLease } from '../seams.js';
import type { StatusPatch, WokenVm } from '../instance-host.js';
import { foldIntoInstance } from './primed-dir.js';
import type { PrimedPool, PrimedPoolConfig, PrimedVm } from './primed-pool.js';
import { OwnPrimed } from './own-primed.js';
import type { InstanceEventEmitter } from '../events.js';

/** What binding needs of the lifecycle (Lifecycle implements it). */
export interface BindHost {
  readonly driver: VmmDriver;
  readonly log: ControllerLogger;
  readonly networks: {
    attach(id: string, config: VmConfig): Promise<VmConfig>;
    bind(id: string, config: VmConfig, lease: NetworkLease, pid: number): void;
    release(id: string): Promise<void>;
  };
  get(id: string): InstanceRecord | undefined;
  fresh(id: string): InstanceRecord;
  update(rec: InstanceRecord, patch: StatusPatch): InstanceRecord;
  watch(id: string, vm: MicroVm): unknown;
  kill(id: string, vm: MicroVm): Promise<void>;
}

/**
 * The primed VMs of stateful instances (own-primed.ts), wired to the lifecycle: each own state saved
 * is primed after a delay, and a volume about to be frozen (a clone, a fork) loses its holder's
 * primed VM first. Its budget: `statefulBudgetBytes`, else the pool's.
 */
export function ownPrimedFor(h: BindHost & { events: InstanceEventEmitter; volumes: InstanceVolumes | undefined }, cfg: PrimedPoolConfig | undefined, network: InstanceNetwork, root: string): OwnPrimed {
  const own = new OwnPrimed({ budgetBytes: cfg?.statefulBudgetBytes ?? cfg?.budgetBytes ?? 0, ...(cfg?.statefulDelayMs !== undefined ? { delayMs: cfg.statefulDelayMs } : {}) }, { driver: h.driver, network, root, log: h.log, get: (id) => h.get(id), vmConfig: ownVmConfig });
  if (!own.enabled) return own;
  h.events.on('snapshot', (e) => {
    if (e.kind === 'own') own.schedule(e.id);
  });
  h.volumes?.beforeFreeze?.((holder) => own.drop(holder, 'its volume is frozen (a clone or fork)'));
  return own;
}

/** The instance's own VM config (its id and run folder), whatever VM it last ran in, without a network. */
export function ownVmConfig(rec: InstanceRecord): VmConfig {
  const vm: VmConfig = { ...rec.status.vm!, id: rec.id, runDir: path.join(rec.status.dir, 'run') };
  delete vm.network;
  return vm;
}

/**
 * Restores `snapshot` for a cold wake of `rec` (which holds no network): a stateless instance from
 * the pool when one of its template fits, a stateful one from its own primed VM (own-primed.ts,
 * after any restore of it under way); else a new restore.
 */
export async function restoreForWake(h: BindHost, pool: PrimedPool, ownPrimed: OwnPrimed, rec: InstanceRecord, snapshot: Snapshot, mode: RestoreOptions['mode']): Promise<WokenVm> {
  const own = ownVmConfig(rec);
  if (pool.enabled && mode === 'clone') {
    const primed = pool.take(snapshot, own);
    const http = rec.spec.service.http;
    pool.noteColdWake(snapshot, own, http ? { port: http.guestPort, hostname: http.hostname } : undefined);
    const woken = primed && (await resumePrimed(h, rec, primed));
    if (woken) return woken;
  }
  if (ownPrimed.enabled && mode === 'own') {
    await ownPrimed.settle(rec.id); // only one QEMU may hold the instance's disk
    const primed = ownPrimed.take(rec.id, snapshot, own);
    // Its guest may have run before a resume failed: its RAM file is not the snapshot's any more.
    if (primed) return (await resumePrimed(h, rec, primed, false))!;
    await ownPrimed.drop(rec.id, 'its instance wakes from another state'); // one primed from another state
  }
  const config = await h.networks.attach(rec.id, own);
  const vm = await h.driver.restore(config, snapshot, { mode });
  h.watch(rec.id, vm);
  try {
    h.update(h.fresh(rec.id), { pid: vm.pid });
  } catch (err) {
    await h.kill(rec.id, vm);
    throw err;
  }
  return { vm, run: vm.restoreTimes ?? { runningAt: performance.now() }, primed: false };
}

/**
 * Binds a primed VM to `rec` and resumes it; if it does not resume: undefined (the VM ended, its
 * network released) when `orRestore`, else the error.
 */
async function resumePrimed(h: BindHost, rec: InstanceRecord, primed: PrimedVm, orRestore = true): Promise<WokenVm | undefined> {
  try {
    // Persisted before the guest runs: a flickd that dies from here finds the VM by its record.
    h.networks.bind(rec.id, primed.config, primed.lease, primed.vm.pid);
  } catch (err) {
    await primed.discard();
    throw err;
  }
  h.watch(rec.id, primed.vm);
  try {
    return { vm: primed.vm, run: await primed.vm.resume(), primed: true };
  } catch (err) {
    await h.kill(rec.id, primed.vm);
    await h.networks.release(rec.id);
    if (!orRestore) {
      // Its guest may have run: its RAM file (the snapshot's, hard-linked) is not the saved state any more.
      const cur = h.fresh(rec.id);
      const snapshots = { ...cur.status.snapshots };
      delete snapshots.own;
      h.update(cur, { snapshots });
      throw err;
    }
    h.log.warn(`instance ${rec.name}: a primed VM did not resume, restoring one: ${describeError(err)}`);
    return undefined;
  }
}

/**
 * A bound primed VM has ended (run in the instance's queue, after whatever recorded its end): the
 * record's VM config names the instance's own run folder again, the VM's console output is
 * appended to the instance's log, and the pool folder goes (the instance removed: just the folder).
 */
export async function retirePrimedVm(h: BindHost, pool: PrimedPool, id: string, vm: MicroVm): Promise<void> {
  const folder = pool.folderOf(vm.config.runDir);
  if (folder === undefined) return;
  const rec = h.get(id);
  if (rec?.status.vm && rec.status.vm.runDir === vm.config.runDir && rec.status.pid !== vm.pid) {
    h.update(rec, { vm: { ...rec.status.vm, id: rec.id, runDir: path.join(rec.status.dir, 'run') } });
  }
  await foldIntoInstance(folder, rec ? path.join(rec.status.dir, 'run') : undefined).catch((err) => h.log.warn(`instance ${rec?.name ?? id}: removing primed folder ${folder}: ${describeError(err)}`));
}
