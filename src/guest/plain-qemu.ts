// Boots the guest with plain QEMU (no QMP, no tap, no jail): kernel + initrd +
// a rootfs + a config disk, console to a file, control port on a unix socket.
// Two users: the guest's own integration tests, and `flick build`'s traced run
// and boot check, which need the guest's `open` lines and user-mode networking
// (a build needs no namespace). Instances run under src/vmm/qemu/ instead.
import { spawn, type ChildProcess } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ControlChannel } from './control.js';
import { writeConfigDisk, type ConfigDiskContents } from './config.js';
import { requireInitrd } from './init.js';
import { requireKernel } from './kernel.js';

export interface PlainBootOptions {
  rootfs: string;
  guest: ConfigDiskContents;
  memoryMb?: number;
  /** Extra QEMU arguments (e.g. a user-mode NIC) and kernel command-line words. */
  qemuArgs?: string[];
  kernelArgs?: string[];
}

export interface PlainVm {
  runDir: string;
  consoleLog: string;
  process: ChildProcess;
  control: ControlChannel;
  /** Resolves with QEMU's exit code once it has exited. */
  exited: Promise<number | null>;
  /** Kills QEMU if still running and removes the run folder. Safe to call twice. */
  dispose(): Promise<void>;
}

/**
 * The QEMU arguments of a guest boot. Disk order does not matter to the init
 * (it finds the config disk by its magic, the rootfs by mounting); the
 * virtio-serial port must be named dev.flick.ctl.
 */
export function plainQemuArgs(o: { kernel: string; initrd: string; rootfs: string; configDisk: string; runDir: string; memoryMb: number; kernelArgs: string[] }): string[] {
  const append = ['console=ttyS0', 'quiet', 'reboot=t', 'panic=-1', 'mitigations=off', 'rdinit=/init', ...o.kernelArgs].join(' ');
  return [
    ...['-M', 'microvm,acpi=off', '-accel', 'tcg', '-m', String(o.memoryMb), '-smp', '1'],
    ...['-nodefaults', '-no-user-config', '-nographic', '-no-reboot'],
    ...['-serial', `file:${path.join(o.runDir, 'console.log')}`],
    ...['-kernel', o.kernel, '-initrd', o.initrd, '-append', append],
    ...['-drive', `id=rootfs,file=${o.rootfs},format=raw,if=none,readonly=on`, '-device', 'virtio-blk-device,drive=rootfs'],
    ...['-drive', `id=config,file=${o.configDisk},format=raw,if=none,readonly=on`, '-device', 'virtio-blk-device,drive=config'],
    '-device',
    'virtio-serial-device',
    ...['-chardev', `socket,id=ctl,path=${path.join(o.runDir, 'ctl.sock')},server=on,wait=off`],
    ...['-device', 'virtserialport,chardev=ctl,name=dev.flick.ctl'],
  ];
}

export async function bootPlain(opts: PlainBootOptions): Promise<PlainVm> {
  const kernel = requireKernel().vmlinux;
  const initrd = requireInitrd().initrd;
  const runDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-guest-'));
  let child: ChildProcess | undefined;
  let control: ControlChannel | undefined;
  const dispose = async () => {
    control?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
    await fsp.rm(runDir, { recursive: true, force: true });
  };
  try {
    const configDisk = path.join(runDir, 'config.img');
    await writeConfigDisk(configDisk, opts.guest);
    const args = plainQemuArgs({ kernel, initrd, rootfs: opts.rootfs, configDisk, runDir, memoryMb: opts.memoryMb ?? 128, kernelArgs: opts.kernelArgs ?? [] });
    child = spawn('qemu-system-x86_64', [...args, ...(opts.qemuArgs ?? [])], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const died = exited.then((code) => {
      throw new Error(`qemu exited with ${code} before its control socket accepted: ${stderr.trim()}`);
    });
    control = await Promise.race([ControlChannel.connect(path.join(runDir, 'ctl.sock'), { timeoutMs: 10_000 }), died]);
    return { runDir, consoleLog: path.join(runDir, 'console.log'), process: child, control, exited, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}
