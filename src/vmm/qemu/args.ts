// The QEMU command line for one microVM, as a pure function of what the VM
// needs. QEMU's `microvm` machine: https://www.qemu.org/docs/master/system/i386/microvm.html
// Guest RAM is a memory-backend-file so snapshots can leave it out of the
// migration stream (`x-ignore-shared`) and clones can map one template file
// privately. Devices are virtio-mmio; their order is part of a snapshot's
// identity, so boot and restore build them with this one function.
import type { Accelerator, DriveConfig, NetworkAttachment } from '../driver.js';
import type { GuestTimers } from './tsc.js';

export interface RunDirFiles {
  qmpSocket: string;
  ctlSocket: string;
  consoleLog: string;
  /** Listening socket for the incoming migration stream (restores only). */
  incomingSocket: string;
}

export interface QemuLaunch {
  accel: Accelerator;
  /** TCG translation cache in MiB; smaller keeps idle VMs lighter (FINDINGS: 4 MiB saves ~20 MB). */
  tcgTbSizeMb?: number;
  memoryMb: number;
  vcpus: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  rootfs: string;
  configDisk: string;
  drives?: DriveConfig[];
  /** The RAM file; `share` true maps it MAP_SHARED (the VM owns it), false MAP_PRIVATE (a template). */
  memory: { path: string; share: boolean };
  files: RunDirFiles;
  network?: Pick<NetworkAttachment, 'tap' | 'guestMac'>;
  /** Start waiting for a migration stream (`-incoming defer`) instead of booting. */
  incoming: boolean;
}

/** The default TCG translation cache: big enough that a small app is not retranslated in a loop. */
export const DEFAULT_TB_SIZE_MB = 64;

export function buildQemuArgs(l: QemuLaunch): string[] {
  const machine = ['microvm', 'acpi=off', 'x-option-roms=off', 'memory-backend=mem'].join(',');
  const args = [
    '-M', machine,
    ...(l.accel === 'kvm'
      ? ['-accel', 'kvm', '-cpu', 'host,-arch-capabilities']
      : ['-accel', `tcg,tb-size=${l.tcgTbSizeMb ?? DEFAULT_TB_SIZE_MB}`]),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-S',
    '-m', `${l.memoryMb}M`,
    '-smp', String(l.vcpus),
    '-object', `memory-backend-file,id=mem,size=${l.memoryMb}M,mem-path=${l.memory.path},share=${l.memory.share ? 'on' : 'off'}`,
    '-kernel', l.kernel,
    '-initrd', l.initrd,
    '-append', l.cmdline,
    // Disk order matters to a snapshot; the init tells the two apart by content anyway.
    '-drive', `id=rootfs,file=${l.rootfs},format=raw,if=none,readonly=on`,
    '-device', 'virtio-blk-device,drive=rootfs',
    '-drive', `id=config,file=${l.configDisk},format=raw,if=none,readonly=on`,
    '-device', 'virtio-blk-device,drive=config',
    ...(l.drives ?? []).flatMap((d, i) => driveArgs(d, i)),
    '-object', 'rng-random,id=rng,filename=/dev/urandom',
    '-device', 'virtio-rng-device,rng=rng',
    '-device', 'virtio-serial-device',
    '-chardev', `socket,id=ctl,path=${l.files.ctlSocket},server=on,wait=off`,
    '-device', 'virtserialport,chardev=ctl,name=dev.flick.ctl',
    // append=on: a restore into the same run folder continues the log, and copy-truncate rotation works.
    '-chardev', `file,id=console,path=${l.files.consoleLog},append=on`,
    '-serial', 'chardev:console',
    '-chardev', `socket,id=qmp,path=${l.files.qmpSocket},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    // MIGRATION events tell us a save or a restore finished without polling query-migrate.
    '-global', 'migration.x-events=on',
    // Snapshots are taken paused; without the saved run state a restore runs as soon as
    // it is loaded if `cont` came first (see QemuDriver.restore).
    '-global', 'migration.store-global-state=off',
  ];
  if (l.network) {
    args.push('-netdev', `tap,id=net0,ifname=${l.network.tap},script=no,downscript=no`);
    args.push('-device', `virtio-net-device,netdev=net0,mac=${l.network.guestMac}`);
  }
  if (l.incoming) args.push('-incoming', 'defer');
  return args;
}

/**
 * A volume: cache=writeback passes every guest flush (fsync, a journal commit)
 * down as an fdatasync of the file, so what the guest has flushed survives
 * QEMU or the host dying (never cache=unsafe, which drops flushes). A full host
 * disk pauses the VM (werror=enospc: QEMU stops it with an io-error status)
 * instead of failing the guest's write; read errors go to the guest.
 * file.auto-read-only=off: -drive turns it on, and then the inactivation at the
 * end of a snapshot (no write permission needed) reopens the file read-only
 * *by path*, which a QEMU chrooted into its run folder cannot ("bdrv_inactivate_all()
 * failed"); off, the file keeps its read-write descriptor from start-up.
 */
export function driveArgs(d: DriveConfig, i: number): string[] {
  const opts = [`id=vol${i}`, `file=${d.file}`, `format=${d.format}`, 'if=none', 'cache=writeback', 'aio=threads', 'discard=unmap', 'detect-zeroes=unmap', 'werror=enospc', 'rerror=report', 'file.auto-read-only=off'];
  if (d.readOnly) opts.push('readonly=on');
  return ['-drive', opts.join(','), '-device', `virtio-blk-device,drive=vol${i},serial=${d.serial}`];
}

/**
 * The kernel command line of the guest contract (common brief), plus `ip=` when the VM has a NIC
 * and the timer rates that are known (tsc.ts: a guest left to calibrate them under a busy TCG
 * host loses its TSC or its APIC timer and ticks at 100 Hz while idle).
 */
export function kernelCmdline(network: NetworkAttachment | undefined, extra: string[] = [], timers: GuestTimers = {}): string {
  // tsc=reliable: the guest's TSC comes from the host (TCG) or is stable (KVM), so the
  // clocksource watchdog only wakes an idle guest twice a second, and a snapshot's
  // clock jump must not make it fall back to jiffies and a 100 Hz tick.
  const words = ['console=ttyS0', 'quiet', 'reboot=t', 'panic=-1', 'mitigations=off', 'tsc=reliable', 'rdinit=/init'];
  if (timers.tscKhz !== undefined) words.push(`tsc_early_khz=${timers.tscKhz}`);
  if (timers.lapicTimerPeriod !== undefined) words.push(`lapic_timer_period=${timers.lapicTimerPeriod}`);
  if (network) words.push(`ip=${network.guestIp}::${network.gatewayIp}:${prefixToNetmask(network.prefixLength)}::eth0:off`);
  return [...words, ...extra].join(' ');
}

function prefixToNetmask(len: number): string {
  const n = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
