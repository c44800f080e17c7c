// Packs a staged root filesystem into the read-only image the guest mounts.
//
// Choice: squashfs, xz, 1 MiB blocks, x86 BCJ filter: the smallest image, which
// is what the goal measures. Measured here on the minimized node hello
// tree (91.9 MB, of which the stripped node binary is 86.3 MB):
//
//   format                       bytes      pack    read all   boot to ready (TCG)
//   squashfs xz -b 1M BCJ x86    24.9 MB    61 s    1.45 s     8.9-9.6 s
//   squashfs xz -b 1M            25.8 MB    29 s    1.37 s
//   squashfs zstd-19 -b 1M       28.9 MB    24 s    0.15 s     6.5-6.7 s
//   erofs lz4hc -C65536          41.8 MB     7 s    0.04 s     5.5 s
//
// xz costs ~3-4 s on a cold boot, which happens once per image and host: the
// template snapshot is taken after it, and a wake restores a guest whose page
// cache already holds every file the app read while booting, so wakes do not
// pay for decompression. zstd is the choice if cold boots matter more than bytes.
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
