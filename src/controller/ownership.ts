// A record's moves between hosts, on the controller's side (a cluster's
// failover; a single host never moves one). `takeOver` claims another host's
// record for this one, its status replaced in the same write by what this host
// holds of it (nothing yet: no VM, network, folder or snapshots of the other
// host's), then starts it unless its user had stopped it (or it failed with no
// restart due). `release` frees what this host still holds for a
// record that left its store (claimed by another host while this one was cut
// off or down): its VM if one still runs, its network, its folder, and its
// shared template if it was the last to use it.
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { InstanceRecord, InstanceStatus } from './state/instance-record.js';
import { describeError } from '../errors.js';
import type { Lifecycle } from './lifecycle.js';
import { ControllerError, type InstanceState } from './states.js';
import { hasVolumes } from './spec.js';
import { shouldRestart } from './restart.js';

/**
 * Claims `rec` (another host's, as the cluster shows it; fenced on its
 * revision), reset, and starts it here. A stopped (or stopping) record stays
 * stopped, a failed one stays failed unless its restart policy restarts it. A
 * record to run is claimed `starting` with no VM: a flickd that dies before the
 * boot leaves one its next reconcile finds dead (restart policy applied).
 * Errors of the claim are StateErrors (STALE_REVISION: another host claimed it
 * first; RECORD_NOT_FOUND: removed meanwhile); a start that fails after the
 * claim is START_FAILED (the record is this host's by then).
 */
export async function takeOver(lc: Lifecycle, dataDir: string, rec: InstanceRecord): Promise<InstanceRecord> {
  if (hasVolumes(rec) || rec.spec.scaleToZero.stateful) {
    throw new ControllerError('ILLEGAL_TRANSITION', `instance "${rec.name}" keeps its state on host ${rec.owner}: it is not moved, it is back when its host is`, { kind: 'user' });
  }
  const was = rec.status.state;
  const state: InstanceState = was === 'stopped' || was === 'stopping' ? 'stopped' : was === 'failed' && !shouldRestart(rec.spec.restartPolicy, 'failed') ? 'failed' : 'starting';
  // Resolved (fetched from a peer if need be) before the claim: only a host that can run it takes it.
  if (state === 'starting') await lc.images.resolve(`${rec.spec.image.ref.replace(/[:@].*$/, '')}@${rec.spec.image.digest}`);
  const dir = path.join(dataDir, 'instances', rec.id);
  const status: InstanceStatus = {
    state,
    networkIndex: null,
    pid: null,
    vm: null,
    dir,
    snapshots: {},
    counters: { ...rec.status.counters },
    lastExitCode: state === 'starting' ? null : rec.status.lastExitCode,
    startedAt: null,
    stoppedAt: state === 'starting' ? null : rec.status.stoppedAt,
    movedFrom: rec.owner,
    ...(state === 'failed' && rec.status.error !== undefined ? { error: rec.status.error } : {}),
  };
  await fsp.rm(dir, { recursive: true, force: true }); // what an earlier stay here may have left
  const claimed = await lc.store.claim(rec.id, rec.revision, lc.store.hostId, status);
  lc.events.emit('state', { id: rec.id, name: rec.name, from: null, to: state, at: claimed.updatedAt });
  if (state !== 'starting') return claimed;
  // Boots from the claimed `starting` (a boot that fails marks it failed, restart policy applied).
  return lc.startWith(rec.id, (r) => r).catch((err: unknown) => {
    throw new ControllerError('START_FAILED', `instance "${rec.name}" is this host's now but did not start: ${describeError(err)}`, { cause: err });
  });
}

/** Frees what this host holds for `last` (its own record as it last knew it), which is no longer in its store. */
export async function release(lc: Lifecycle, dataDir: string, last: InstanceRecord): Promise<void> {
  const { id } = last;
  if (lc.store.get(id) !== undefined) return; // still this host's
  lc.restarts.cancel(id);
  lc.booting.get(id)?.abort();
  await lc.serialize(id, async () => {
    if (lc.store.get(id) !== undefined) return; // came back (claimed here again) while this waited
    await lc.ownPrimed.drop(id, 'its instance left this host'); // its paused QEMU holds the disk
    const live = lc.live.get(id);
    if (live) await lc.kill(id, live.vm).catch(() => {});
    else if (last.status.pid !== null && last.status.vm !== null) {
      // A VM a previous flickd left (the fence guard ends those of stateless instances; this is the rest).
      const vm = await lc.driver.adopt(last.status.vm, last.status.pid).catch(() => undefined);
      await vm?.kill().catch(() => {});
    }
    // Only a live VM's network is still this host's: at start, reconcile's sweep removed every
    // namespace no record of this host names, and its slots may be a pool's or another VM's now.
    if (live) await lc.networks.releaseHeld(last);
    lc.scaleToZero.forget(id);
    await lc.volumes?.detach(id);
    // Only a folder of this host's own (the record named it while it was this host's).
    if (path.dirname(last.status.dir) === path.join(dataDir, 'instances')) await fsp.rm(last.status.dir, { recursive: true, force: true });
    const template = last.status.snapshots.template?.dir;
    if (await lc.templates.releaseIfUnused(template, (dir) => lc.store.usesTemplate(dir))) await lc.primed.dropTemplate(template!);
    lc.log.info(`instance ${last.name}: released on this host (it left this host's records)`);
    lc.events.emit('removed', { id, name: last.name });
  });
}
