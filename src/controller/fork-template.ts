// Shared forks (`flick fork --shared`, the density path for databases): any
// number of forks of one standby instance share ONE copy of its saved state as
// a template, and each gets its volumes as branches of one frozen layer of the
// source's disks, taken at the same instant as that state. A fork is then a
// record and a qcow2 head of a few hundred KiB. Its first wake copies the
// template's state and RAM file into its own folder (a sparse copy, reflinked
// where the filesystem can: 60-150 ms for PostgreSQL's 146 MiB from the page
// cache, seconds while the host's writeback is backed up) and restores that
// as its own state over its own volumes; from then on it suspends and wakes
// like any stateful instance (hard links). The
// first wake once restored the template MAP_PRIVATE instead: no copy, but its
// next suspend had to write the guest's RAM into the state stream and the wake
// after it load it back (1.6-2.3 s in the VMM under TCG, against ~60-90 ms).
//
// The template is `<dataDir>/templates/fork-<source id>-<saved-state id>/`:
// `state`, `mem`, `snapshot.json` and `volumes.json` (the frozen layer of each
// writable volume). It is made once per saved state of the source (after the
// source wakes and sleeps again, the next shared fork makes another), and it
// goes with the last record that names it, like every template (templates.ts).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { InstanceRecord } from './state/instance-record.js';
import type { Snapshot } from '../vmm/driver.js';
import type { Lifecycle } from './lifecycle.js';
import { ControllerError } from './states.js';

const VOLUMES_FILE = 'volumes.json';

/** The shared template of `rec`'s saved state (made now if it is the first shared fork of it), and the frozen layer of each of `writable`. */
export async function sharedForkTemplate(lc: Lifecycle, rec: InstanceRecord, writable: readonly string[]): Promise<{ snapshot: Snapshot; layers: Record<string, string> }> {
  const own = rec.status.snapshots.own!;
  const key = `fork-${rec.id}-${crypto.createHash('sha256').update(`${own.dir}\n${own.createdAt}`).digest('hex').slice(0, 12)}`;
  const { snapshot } = await lc.templates.ensure(key, async (dir) => {
    const snap = await lc.templates.ownCopy(own, dir);
    // In the source's queue: nothing wakes it meanwhile, so these are its disks as its state knows them.
    const layers: Record<string, string> = {};
    for (const name of writable) layers[name] = await lc.volumes!.freeze(name, (holder) => lc.live.has(holder));
    await fsp.writeFile(path.join(dir, VOLUMES_FILE), `${JSON.stringify({ version: 1, layers }, null, 2)}\n`);
    return snap;
  });
  let layers: Record<string, string>;
  try {
    layers = (JSON.parse(fs.readFileSync(path.join(snapshot.dir, VOLUMES_FILE), 'utf8')) as { layers: Record<string, string> }).layers;
  } catch (cause) {
    throw new ControllerError('SNAPSHOT_FAILED', `the shared fork template ${snapshot.dir} has no record of its volumes: fork without --shared`, { cause });
  }
  const missing = writable.filter((n) => layers[n] === undefined);
  if (missing.length > 0) throw new ControllerError('SNAPSHOT_FAILED', `the shared fork template ${snapshot.dir} holds no frozen state of volume ${missing.join(', ')}: fork without --shared`);
  return { snapshot, layers };
}
