// What a VM's run folder holds, in one place. The driver creates the folder's
// transient files and removes them when the QEMU process is gone; the logs
// stay for `flick logs` (the controller rotates and removes them).
//
//   qmp.sock        QMP monitor (server; flickd connects, and reconnects after a restart)
//   ctl.sock        the guest control port (virtio-serial dev.flick.ctl)
//   incoming.sock   restore only: the migration stream flickd writes into QEMU
//   migrate.sock    snapshot only: the migration stream QEMU writes to flickd
//   console.log     the guest's ttyS0 (appended across restores)
//   qemu.log        QEMU's own stderr
//   config.img      the config disk (src/guest/config.ts)
//   mem             guest RAM (MAP_SHARED) unless the VM is a clone of a template
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { RunDirFiles } from './args.js';

export interface RunDir extends RunDirFiles {
  dir: string;
  migrateSocket: string;
  qemuLog: string;
  configDisk: string;
  memory: string;
}

export function runDirFiles(dir: string): RunDir {
  const f = (name: string) => path.join(dir, name);
  return {
    dir,
    qmpSocket: f('qmp.sock'),
    ctlSocket: f('ctl.sock'),
    incomingSocket: f('incoming.sock'),
    migrateSocket: f('migrate.sock'),
    consoleLog: f('console.log'),
    qemuLog: f('qemu.log'),
    configDisk: f('config.img'),
    memory: f('mem'),
  };
}

/** Links to the VM's volume files (disk-switch.ts): `vol<i>.qcow2`, and `vol<i>-<hex>.qcow2` for an overlay switched to. */
export const DRIVE_LINK = /^vol\d+(-[0-9a-f]+)?\.qcow2$/;

/** Removes everything but the logs. Safe to call twice. */
export async function cleanRunDir(rd: RunDir): Promise<void> {
  const links = (await fsp.readdir(rd.dir).catch(() => [] as string[])).filter((n) => DRIVE_LINK.test(n)).map((n) => path.join(rd.dir, n));
  await Promise.all(
    [rd.qmpSocket, rd.ctlSocket, rd.incomingSocket, rd.migrateSocket, rd.configDisk, rd.memory, ...links].map((p) => fsp.rm(p, { force: true })),
  );
}

/** Removes the run folder entirely if we created it and nothing but empty logs is in it (a failed start). */
export function removeIfEmpty(rd: RunDir): void {
  for (const log of [rd.consoleLog, rd.qemuLog]) {
    try {
      if (fs.statSync(log).size === 0) fs.rmSync(log);
    } catch {
      // absent
    }
  }
  try {
    fs.rmdirSync(rd.dir);
  } catch {
    // not empty or gone: keep it
  }
}
