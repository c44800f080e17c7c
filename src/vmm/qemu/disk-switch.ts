// Switching a running QEMU's volume to a new qcow2 overlay (a live fork's
// copy-on-write split): flickd makes the overlay on the host, over the layer
// that the current head becomes, and QEMU opens it itself by a path inside its
// jail, so no file descriptor has to cross the monitor socket. QMP:
// `blockdev-add` of the overlay with `backing: null`, then `blockdev-snapshot`
// (https://www.qemu.org/docs/master/interop/qemu-qmp-ref.html), which makes it
// the drive's active layer with the current node as its backing; QEMU does not
// rewrite the overlay's header, so the backing file name flickd wrote stays
// (measured, QEMU 7.2).
//
// The jail (jail.ts) shows QEMU nothing but its run folder, bind-mounted at its
// own host path: the overlay is hard-linked into it (same filesystem as the
// volumes), readable and writable by the VM's group for as long as QEMU takes
// to open it, and the old head readable, for QEMU's reopen of it read-only by
// the name it was opened with (linkDrives); then both are root's alone again
// (QEMU keeps its descriptors). The links go with the VM (cleanRunDir).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { VmmError, type DriveConfig } from '../driver.js';
import type { QmpClient } from './qmp-client.js';

/**
 * QEMU opens each volume through a hard link in its run folder, `vol<i>.qcow2` (the volume's own
 * file on another filesystem: by its path), so that its name means the same inside the jail: a
 * switch reopens the old head read-only by that name, which a chrooted QEMU could not do by the
 * volume's own path (the old head then kept its write lock, and a fork's QEMU could not open it).
 */
export async function linkDrives(runDir: string, drives: readonly DriveConfig[]): Promise<DriveConfig[]> {
  return Promise.all(
    drives.map(async (d, i) => {
      const link = path.join(runDir, `vol${i}.qcow2`);
      await fsp.rm(link, { force: true });
      return fsp.link(d.file, link).then(
        () => ({ ...d, file: link }),
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'EXDEV') return d;
          throw err;
        },
      );
    }),
  );
}

/**
 * Makes `overlay` (a qcow2 whose backing file holds what drive `file` holds now) the active layer of
 * that drive. Precondition: the VM is paused (nothing in flight, caches written back).
 */
export async function switchDiskOverlay(qmp: QmpClient, runDir: string, drives: readonly DriveConfig[], file: string, overlay: string): Promise<void> {
  const i = drives.findIndex((d) => d.file === file);
  if (i < 0 || drives[i]!.readOnly) throw new VmmError('INVALID_STATE', `no writable drive ${file} in this VM: nothing to switch`);
  // Opened by its own path (another filesystem than the run folder): QEMU could not reopen it in its jail.
  const linked = fs.statSync(path.join(runDir, `vol${i}.qcow2`), { throwIfNoEntry: false });
  if (linked?.ino !== fs.statSync(file).ino || fs.statSync(overlay).dev !== fs.statSync(runDir).dev) {
    throw new VmmError('UNSUPPORTED', `drive ${file} is on another filesystem than the VM's run folder ${runDir}: it cannot be switched; copy it instead`);
  }
  const node = `vol${i}-${crypto.randomBytes(4).toString('hex')}`;
  // Stays until the VM ends (cleanRunDir): a later switch reopens this one by that name.
  const inJail = path.join(runDir, `${node}.qcow2`);
  const gid = fs.statSync(runDir).gid;
  await fsp.link(overlay, inJail);
  try {
    // For as long as QEMU opens the overlay, and reopens the old head read-only: the VM's group may.
    for (const [f, mode] of [[overlay, 0o660], [file, 0o640]] as const) {
      await fsp.chown(f, 0, gid);
      await fsp.chmod(f, mode);
    }
    // The same block options as the drive's own node (args.ts driveArgs); werror and the cache mode belong to the drive.
    await qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': node,
      discard: 'unmap',
      'detect-zeroes': 'unmap',
      file: { driver: 'file', filename: inJail, aio: 'threads', 'auto-read-only': false },
      backing: null,
    });
    try {
      await qmp.execute('blockdev-snapshot', { node: `vol${i}`, overlay: node });
    } catch (err) {
      await qmp.execute('blockdev-del', { 'node-name': node }).catch(() => {});
      throw err;
    }
  } catch (err) {
    throw new VmmError('SNAPSHOT_FAILED', `switching drive ${file} to the overlay ${overlay} failed: ${(err as Error).message}`, { cause: err });
  } finally {
    for (const f of [overlay, file]) {
      await fsp.chown(f, 0, 0).catch(() => {});
      await fsp.chmod(f, 0o600).catch(() => {});
    }
  }
}
