// Liveness from the image's HEALTHCHECK (as Docker's health status): each
// report of an instance's guest is recorded in its status and emitted as a
// `health` event, and `unhealthy` counts as a failure its restart policy acts on.
import type { HealthReport, MicroVm } from '../vmm/driver.js';
import type { InstanceHost } from './instance-host.js';
import type { InstanceRecord } from './state/instance-record.js';
import { shouldRestart } from './restart.js';

/** What acting on a report needs of the lifecycle (Lifecycle is one; no import of it: no cycle). */
export interface HealthHost extends InstanceHost {
  /** The instance's live VM now (a report from any other VM is stale). */
  vm(id: string): MicroVm | undefined;
  readonly restarts: { onExit(rec: InstanceRecord, outcome: 'failed'): unknown };
  readonly scaleToZero: { onStopped(id: string): void };
}

/** Follows `vm`'s health reports for instance `id`, each handled in the instance's queue. */
export function watchHealth(lc: HealthHost, id: string, vm: MicroVm): void {
  const off = vm.onHealth?.((report) => void lc.serialize(id, () => onReport(lc, id, vm, report)).catch((err: unknown) => lc.log.warn(`health report of ${id}: ${String(err)}`)));
  if (off) void vm.exited.then(off);
}

async function onReport(lc: HealthHost, id: string, vm: MicroVm, report: HealthReport): Promise<void> {
  const rec = lc.get(id);
  // A VM that is no longer the instance's (replaced, killed) has nothing to say; nor does one in
  // standby, suspending (draining) or stopping: only a running (or still starting) guest counts.
  if (rec === undefined || lc.vm(id) !== vm) return;
  if (rec.status.state !== 'running' && rec.status.state !== 'starting') return;
  const at = new Date().toISOString();
  const retries = rec.status.vm?.guest.healthcheck?.retries ?? vm.config.guest.healthcheck?.retries ?? 1;
  const changed = rec.status.health?.status !== report.status;
  if (changed) lc.update(rec, { health: { status: report.status, since: at, ...(report.status === 'unhealthy' ? { failingStreak: retries } : {}) } });
  const act = report.status === 'unhealthy' && rec.status.state === 'running' && shouldRestart(rec.spec.restartPolicy, 'failed');
  if (changed || act) lc.events.emit('health', { id, name: rec.name, status: report.status, at, ...(report.status === 'unhealthy' ? { action: act ? 'restart' : 'none' } : {}) });
  if (report.status !== 'unhealthy') return;
  const error = `HEALTHCHECK failed ${retries} times${report.output ? `: ${report.output}` : ''}`;
  if (!act) {
    if (changed) lc.log.warn(`instance ${rec.name}: ${error} (restart policy ${rec.spec.restartPolicy}: it keeps running, unhealthy)`);
    return;
  }
  lc.log.warn(`instance ${rec.name}: ${error}; restarting it (restart policy ${rec.spec.restartPolicy})`);
  await lc.kill(id, vm);
  await lc.releaseNetwork(id);
  const next = lc.transition(lc.fresh(id), 'failed', { pid: null, vm: null, error, stoppedAt: at });
  lc.scaleToZero.onStopped(id);
  lc.restarts.onExit(next, 'failed');
}
