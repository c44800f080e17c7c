// At flickd start: re-adopts the VMs a previous flickd left running (hot
// standbys included), settles those that died meanwhile, and sweeps unused networks and templates.
import { describeError } from '../errors.js';
import type { InstanceRecord } from './state/instance-record.js';
import type { MicroVm } from '../vmm/driver.js';
import type { Lifecycle } from './lifecycle.js';
import { hasProcess } from './states.js';

/**
 * Re-adopts VMs a previous flickd left running, marks those that died
 * meanwhile (and applies their restart policy), then removes every instance
 * network nothing uses any more.
 */
export async function reconcile(lc: Lifecycle): Promise<{ adopted: string[]; died: string[] }> {
  const adopted: string[] = [];
  const died: string[] = [];
  for (const rec of lc.store.list()) {
    if (rec.status.state === 'standby' && rec.status.pid !== null) {
      await adoptHotStandby(lc, rec);
      continue;
    }
    if (!hasProcess(rec.status.state)) continue;
    let vm: MicroVm | undefined;
    if (rec.status.pid !== null && rec.status.vm !== null) {
      vm = await lc.driver.adopt(rec.status.vm, rec.status.pid).catch((err) => {
        lc.log.info(`instance ${rec.name}: VM ${rec.status.pid} is gone (${describeError(err)})`);
        return undefined;
      });
    }
    if (vm === undefined) {
      died.push(rec.id);
      await lc.serialize(rec.id, () => lc.exited(rec.id, { processCode: null, processSignal: null }, 'while flickd was down'));
      continue;
    }
    adopted.push(rec.id);
    lc.watch(rec.id, vm);
    if (rec.status.state === 'stopping') void lc.serialize(rec.id, async () => void (await lc.halt(lc.fresh(rec.id), { kill: false })));
    else if (rec.status.state === 'starting') void lc.serialize(rec.id, () => lc.awaitReady(rec.id, vm!, new AbortController().signal));
    else if (rec.status.state === 'draining') void lc.serialize(rec.id, async () => void lc.transition(lc.fresh(rec.id), 'running'));
  }
  // Primed VMs no record names (a crash left them in the pool) end before their namespaces are swept.
  const bound = new Set(lc.store.list().map((r) => (r.status.pid !== null && lc.live.has(r.id) ? lc.primed.folderOf(r.status.vm?.runDir) : undefined)));
  await lc.primed.sweep((folder) => bound.has(folder));
  await lc.networks.reconcile((id) => lc.live.has(id));
  // Claims of instances removed while flickd was down (rm crashed between the record and the claim).
  await lc.volumes?.sweep(new Set(lc.store.list().map((r) => r.id)));
  const unused = await lc.templates.sweep(lc.store.list());
  if (unused.length > 0) lc.log.info(`removed ${unused.length} template(s) no instance uses`);
  lc.log.info(`reconciled: ${adopted.length} VM(s) adopted, ${died.length} found dead`);
  return { adopted, died };
}

/** A hot-standby VM a previous flickd left paused: adopt it, or fall back to cold (stateless) / failed (stateful). */
async function adoptHotStandby(lc: Lifecycle, rec: InstanceRecord): Promise<void> {
  const vm = rec.status.vm ? await lc.driver.adopt(rec.status.vm, rec.status.pid!).catch(() => undefined) : undefined;
  if (vm) {
    // A hot wake sends `cont` in the turn it writes `starting` (wake.ts): a flickd that died in
    // between left this VM running. Paused again it is the hot standby its record says; a VM that
    // is paused already refuses the pause (INVALID_STATE), which is the answer wanted.
    await vm.pause().catch(() => {});
    lc.watch(rec.id, vm);
    lc.scaleToZero.hot.add(rec.id);
    return;
  }
  await lc.serialize(rec.id, () => lc.scaleToZero.onHotVmDied(rec.id));
}
