// What a cluster host advertises for placement (src/cluster/placement.ts): the
// images it holds, by reference and by digest, and the image digests it has a
// template snapshot of (a create there restores the template rather than
// cold-booting). Read from the image store's list and the controller's records.
import type { InstanceRecord } from '../controller/state/instance-record.js';
import type { HostInventory } from './membership.js';

export function hostInventory(images: ReadonlyArray<{ ref: string; digest: string }>, records: readonly InstanceRecord[]): HostInventory {
  const held = new Set<string>();
  for (const i of images) held.add(i.ref).add(i.digest);
  const templates = new Set<string>();
  for (const r of records) if (r.status.snapshots.template !== undefined) templates.add(r.spec.image.digest);
  return { images: [...held], templates: [...templates] };
}
