// Packs a staged root filesystem into the read-only image the guest mounts.
//
// Choice: squashfs, xz, 1 MiB blocks, x86 BCJ filter. Measured on this machine
// for the node hello app (minimized tree, stripped node):
//   erofs lz4hc -C65536 ztailpacking: see pack measurements in bench/image.ts output;
//   squashfs xz is the smallest by far (node is ~85% of the bytes and xz with the
//   BCJ filter compresses machine code best), zstd sits between.
// Read latency matters little for wakes: a wake restores a snapshot whose guest
// page cache already holds every file the app read while booting, so the
// filesystem is only decompressed on a cold boot and for files first read later.
// The trace run uses an uncompressed erofs: it is read once and thrown away.
import { run } from './exec.js';
import { FLICK_ROOTFS_EROFS, FLICK_ROOTFS_SQUASHFS } from './media-types.js';

export type RootfsFormat = 'squashfs-xz' | 'squashfs-zstd' | 'erofs-lz4hc' | 'erofs-plain';

export const DEFAULT_FORMAT: RootfsFormat = 'squashfs-xz';

export function mediaTypeFor(format: RootfsFormat): string {
  return format.startsWith('squashfs') ? FLICK_ROOTFS_SQUASHFS : FLICK_ROOTFS_EROFS;
}

/** Writes `out` from the tree at `stage` (owners and modes as staged). */
export async function packRootfs(stage: string, out: string, format: RootfsFormat = DEFAULT_FORMAT): Promise<void> {
  switch (format) {
    case 'squashfs-xz':
      await run('mksquashfs', [stage, out, '-noappend', '-quiet', '-no-progress', '-comp', 'xz', '-b', '1M', '-Xbcj', 'x86', '-Xdict-size', '100%']);
      return;
    case 'squashfs-zstd':
      await run('mksquashfs', [stage, out, '-noappend', '-quiet', '-no-progress', '-comp', 'zstd', '-b', '1M', '-Xcompression-level', '19']);
      return;
    case 'erofs-lz4hc':
      await run('mkfs.erofs', ['-zlz4hc,12', '-C65536', '-Eztailpacking', out, stage]);
      return;
    case 'erofs-plain':
      await run('mkfs.erofs', [out, stage]);
      return;
  }
}
