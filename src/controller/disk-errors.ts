// A VM that QEMU paused at a disk write the host could not make (a full host
// disk: volumes are opened werror=enospc, src/vmm/qemu/args.ts). The write was
// never acknowledged to the guest, so its volume holds everything the guest
// flushed before, intact; but the guest cannot go on until there is space, and
// a paused VM would hold requests forever while its record said `running`. So
// the VM is ended and the instance fails with the reason (`flick get`/`ls`
// show it); the restart policy is not applied: a restart would hit the same wall.
// Lifecycle's exit paths (its boot, `exited`) take the reason from here.
import path from 'node:path';
import type { DiskErrorReport, MicroVm } from '../vmm/driver.js';
import type { InstanceRecord } from './state/instance-record.js';
import type { ControllerLogger } from './seams.js';

export class DiskErrors {
  readonly #reasons = new Map<string, string>();
  readonly #log: ControllerLogger;

  constructor(log: ControllerLogger) {
    this.#log = log;
  }

  /** Watches `vm` (the instance `id`'s): at a paused write, records why and kills it (its exit is then not expected). */
  watch(id: string, vm: MicroVm, record: (id: string) => InstanceRecord | undefined): void {
    const off = vm.onDiskError?.((report) => {
      if (this.#reasons.has(id)) return; // one per failed request: the first says it
      const rec = record(id);
      if (rec === undefined) return;
      const reason = describe(rec, vm, report);
      this.#reasons.set(id, reason);
      this.#log.warn(`instance ${rec.name}: ${reason}`);
      void vm.kill();
    });
    if (off) void vm.exited.then(off);
  }

  /** The reason the instance's VM was ended for, once (undefined: it was not). */
  take(id: string): string | undefined {
    const r = this.#reasons.get(id);
    this.#reasons.delete(id);
    return r;
  }
}

function describe(rec: InstanceRecord, vm: MicroVm, r: DiskErrorReport): string {
  const volume = r.drive === undefined ? undefined : rec.spec.volumes?.[r.drive]?.name;
  const file = r.drive === undefined ? undefined : vm.config.drives?.[r.drive]?.file;
  const what = volume ? `a write to volume "${volume}"` : 'a disk write';
  if (!r.noSpace) return `${what} failed on the host (${r.reason}); the VM was paused and stopped: check the host's disk and its log, then 'flick start ${rec.name}'`;
  return (
    `the host disk is full: ${what} failed (${r.reason}); the VM was paused before the guest saw the error and then stopped, ` +
    `so the volume holds everything the guest had flushed: free space${file ? ` on the filesystem of ${path.dirname(file)}` : ''}, then 'flick start ${rec.name}'`
  );
}
