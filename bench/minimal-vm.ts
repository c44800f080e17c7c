// The VmConfig of the guest helper's minimal static server, for the benchmarks
// that drive the VMM directly (vmm.ts, primed-ram.ts).
import path from 'node:path';
import { requireKernel } from '../src/guest/kernel.js';
import { FIXTURE_PROGRAM } from '../src/guest/testing/fixture-rootfs.js';
import type { NetworkAttachment, VmConfig } from '../src/vmm/driver.js';

export function minimalVmConfig(o: { tmp: string; id: string; initrd: string; rootfs: string; port: number; network: NetworkAttachment }): VmConfig {
  return {
    id: o.id,
    runDir: path.join(o.tmp, o.id),
    kernel: requireKernel().vmlinux,
    initrd: o.initrd,
    rootfs: o.rootfs,
    memoryMb: 128,
    vcpus: 1,
    guest: { argv: [FIXTURE_PROGRAM['hello-server'], String(o.port)], env: [], cwd: '/', uid: 0, gid: 0, hostname: o.id },
    network: o.network,
  };
}
