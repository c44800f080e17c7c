// Packs a staged root filesystem into the read-only image the guest mounts.
//
// Choice: an uncompressed erofs, shipped as one xz stream (x86 BCJ filter,
// preset 6, two threads) that the host unpacks once where it runs
// (layer-codec.ts): whole-file xz finds repeats 1 MiB squashfs blocks cannot,
// and the guest reads plain blocks (no decompression at boot). Measured on the
// minimized node hello tree with its ICU data trimmed to English (91.9 MB):
// erofs + xz 19.1 MB, squashfs xz 1M BCJ 20.7 MB (2026-12-01, a loaded host).
//
// Earlier figures, on the same tree with node's full ICU data
// (91.9 MB, of which the stripped node binary is 86.3 MB):
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
import { compressFile } from './layer-codec.js';
import { FLICK_ROOTFS_EROFS, FLICK_ROOTFS_EROFS_XZ, FLICK_ROOTFS_SQUASHFS } from './media-types.js';

/** `erofs-xz`: a plain erofs the guest boots, shipped xz-compressed; the others ship as packed. */
export type RootfsFormat = 'erofs-xz' | 'squashfs-xz' | 'squashfs-zstd' | 'erofs-lz4hc' | 'erofs-plain';

export const DEFAULT_FORMAT: RootfsFormat = 'erofs-xz';

/** The layer to ship for a packed root filesystem (compressed beside it for erofs-xz) and its media type. */
export async function rootfsLayer(packed: string, format: RootfsFormat): Promise<{ file: string; mediaType: string }> {
  if (format === 'erofs-xz') {
    await compressFile(packed, `${packed}.xz`, { level: '6', x86: true });
    return { file: `${packed}.xz`, mediaType: FLICK_ROOTFS_EROFS_XZ };
  }
  return { file: packed, mediaType: format.startsWith('squashfs') ? FLICK_ROOTFS_SQUASHFS : FLICK_ROOTFS_EROFS };
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
    case 'erofs-xz':
      await run('mkfs.erofs', ['--quiet', out, stage]);
      return;
  }
}
