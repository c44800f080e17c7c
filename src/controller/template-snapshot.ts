// Scale to zero's templates: taking the shared template snapshot at first
// readiness, and putting an instance straight into cold standby when one exists.
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord, InstanceStatus, NewInstanceRecord } from './state/instance-record.js';
import type { MicroVm, VmConfig } from '../vmm/driver.js';
import type { InstanceHost } from './instance-host.js';
import type { TemplateStore } from './templates.js';
import { warmUp } from './template-warmup.js';

/** What taking and finding templates works with. */
export interface TemplateContext {
  host: InstanceHost;
  templates: TemplateStore;
  /** GET / requests an HTTP app gets before its template is taken; 0: none. */
  warmupRequests: number;
}

/**
 * Finds or takes the shared template of `rec`'s configuration and records it.
 * Taking one warms an HTTP app up (a few GET /, template-warmup.ts), pauses the
 * VM, saves device state with a sparse copy of the RAM file (`keepRunning`:
 * the VM goes on in its own file) and resumes it.
 */
export async function takeTemplate(t: TemplateContext, rec: InstanceRecord, vm: MicroVm): Promise<void> {
  const key = await t.host.templateKey(rec);
  const t0 = performance.now();
  try {
    const { snapshot, taken } = await t.templates.ensure(key, async (dir) => {
      await warmUpBeforeTemplate(t, rec, vm);
      await vm.pause();
      try {
        return await vm.createSnapshot(dir, { keepRunning: true });
      } finally {
        await vm.resume();
      }
    });
    const cur = t.host.fresh(rec.id);
    t.host.update(cur, { snapshots: { ...cur.status.snapshots, template: snapshot } });
    if (!taken) return;
    const durationMs = performance.now() - t0;
    t.host.events.emit('snapshot', { id: rec.id, name: rec.name, kind: 'template', durationMs });
    t.host.log.info(`instance ${rec.name}: template snapshot ${key} in ${durationMs.toFixed(1)} ms (paused meanwhile)`);
  } catch (err) {
    // Without a template the instance still runs; it just cannot sleep statelessly.
    t.host.log.warn(`instance ${rec.name}: template snapshot failed, scale to zero stays off until the next start: ${describeError(err)}`);
  }
}

/** Before a template: a few GET / so the app's first-request work is in the template, not in every wake. */
async function warmUpBeforeTemplate(t: TemplateContext, rec: InstanceRecord, vm: MicroVm): Promise<void> {
  const http = rec.spec.service.http;
  const host = vm.config.network?.hostReachableIp;
  const requests = t.warmupRequests;
  if (http === undefined || host === undefined || requests === 0) return;
  const t0 = performance.now();
  const answered = await warmUp({ host, port: http.guestPort, hostname: http.hostname }, requests);
  t.host.log.info(`instance ${rec.name}: ${answered} of ${requests} warm-up requests answered in ${(performance.now() - t0).toFixed(0)} ms before its template`);
}

/**
 * The start of a scale-to-zero instance whose configuration already has a
 * shared template: no boot; it goes to cold standby at once and its first
 * request wakes it from the template (stateful: from its own copy of it).
 * Returns false if there is no template yet and the instance must boot.
 */
export async function startAsleep(t: TemplateContext, rec: InstanceRecord, config: VmConfig): Promise<boolean> {
  if (rec.spec.scaleToZero.policy === 'off') return false;
  const patch = await asleep(t, rec, config, await t.host.templateKey(rec));
  if (patch === undefined) return false;
  t.host.transition(t.host.fresh(rec.id), 'standby', patch);
  return true;
}

/**
 * `rec` (not stored yet) as it is stored when its template exists: in cold
 * standby, no VM, no network. Undefined when it must boot first. The
 * controller's create stores this in one write.
 */
export async function asleepAtCreate(t: TemplateContext, rec: NewInstanceRecord, config: VmConfig, key: string): Promise<NewInstanceRecord | undefined> {
  if (rec.spec.scaleToZero.policy === 'off') return undefined;
  const patch = await asleep(t, rec, config, key);
  return patch && { ...rec, status: { ...rec.status, ...patch, state: 'standby' } };
}

/** A cold standby's record fields (config without a network: a wake attaches one). */
async function asleep(t: TemplateContext, rec: NewInstanceRecord, config: VmConfig, key: string): Promise<Partial<InstanceStatus> | undefined> {
  const template = t.templates.find(key);
  if (template === undefined) return undefined;
  const snapshots = { ...rec.status.snapshots, template };
  if (rec.spec.scaleToZero.stateful && snapshots.own === undefined) snapshots.own = await t.templates.ownCopy(template, path.join(rec.status.dir, 'snapshots', 'own'));
  const vm: VmConfig = { ...config };
  delete vm.network;
  return { vm, pid: null, snapshots, standbyTier: 'cold', startedAt: new Date().toISOString() };
}
