// A cold wake's VM, where the primed pool meets the lifecycle: a primed VM taken from the pool and
// bound to the instance (one record write: its pid, run folder and network), then resumed with its
// clock set; or, with none that fits (or one that fails to resume), a new restore as before. And
// the end of a bound primed VM: its console log joins the instance's and its folder goes.
import path from 'node:path';
import { describeError } from '../../errors.js';
import type { InstanceRecord } from '../state/instance-record.js';
import type { MicroVm, RestoreOptions, Snapshot, VmConfig, VmmDriver } from '../../vmm/driver.js';
import type { ControllerLogger, NetworkLease } from '../seams.js';
import type { StatusPatch, WokenVm } from '../instance-host.js';
import { foldIntoInstance } from './primed-dir.js';
import type { PrimedPool } from './primed-pool.js';

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

/** The instance's own VM config (its id and run folder), whatever VM it last ran in, without a network. */
export function ownVmConfig(rec: InstanceRecord): VmConfig {
  const vm: VmConfig = { ...rec.status.vm!, id: rec.id, runDir: path.join(rec.status.dir, 'run') };
  delete vm.network;
  return vm;
}

/** Restores `snapshot` for a cold wake of `rec` (which holds no network), from the pool when one fits. */
export async function restoreForWake(h: BindHost, pool: PrimedPool, rec: InstanceRecord, snapshot: Snapshot, mode: RestoreOptions['mode']): Promise<WokenVm> {
  const own = ownVmConfig(rec);
  if (pool.enabled && mode === 'clone') {
    const primed = pool.take(snapshot, own);
    const http = rec.spec.service.http;
    pool.noteColdWake(snapshot, own, http ? { port: http.guestPort, hostname: http.hostname } : undefined);
    if (primed) {
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
        h.log.warn(`instance ${rec.name}: a primed VM did not resume, restoring one: ${describeError(err)}`);
        await h.kill(rec.id, primed.vm);
        await h.networks.release(rec.id);
      }
    }
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
