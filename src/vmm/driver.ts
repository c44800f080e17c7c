// The VMM seam. The controller speaks only this interface; `qemu/` implements
// it with QEMU's `microvm` machine over QMP. A driver that cannot do an
// operation rejects with VmmError code 'UNSUPPORTED', never a bare throw.
import { FlickError } from '../errors.js';

export type Accelerator = 'kvm' | 'tcg';

export type VmmErrorCode =
  | 'KERNEL_MISSING' // the kernel file does not exist or is not readable
  | 'DISK_MISSING' // the root filesystem (or initrd) does not exist
  | 'BOOT_FAILED' // the VMM process failed to start or died while booting
  | 'NOT_READY' // the guest did not accept a connection on its port in time
  | 'VM_EXITED' // the operation needs a live VMM process and there is none
  | 'INVALID_STATE' // e.g. snapshot of a running VM, resume of a running VM
  | 'SNAPSHOT_FAILED'
  | 'RESTORE_FAILED'
  | 'CLOCK_FAILED' // the guest did not acknowledge the clock over its control port
  | 'TIMEOUT'
  | 'UNSUPPORTED';

export class VmmError extends FlickError<VmmErrorCode> {}

/** What the guest's init runs (see guest/init/init.c and src/guest/config.ts). */
export interface GuestConfig {
  /** argv[0] is the program; an absolute path or a name looked up in PATH from env. */
  argv: string[];
  /** "KEY=VALUE" strings, in order. */
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  hostname: string;
  /** Volumes the init mounts before the app starts, each found by its disk's serial (VmConfig.drives). */
  mounts?: GuestMount[];
  /** The image's HEALTHCHECK, which the init runs in the guest; readiness then also waits for its first success. */
  healthcheck?: GuestHealthcheck;
  /** The signal the init stops the app with (the image's STOPSIGNAL; default SIGTERM, 15). */
  stopSignal?: number;
}

/** A HEALTHCHECK as the guest init runs it (src/image/healthcheck.ts reads it from the Dockerfile). */
export interface GuestHealthcheck {
  argv: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  /** Consecutive failures after which the app is unhealthy. */
  retries: number;
}

/** A change of the guest's HEALTHCHECK status, as its init reports it. */
export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  /** The failing check's last output, if the guest reported it. */
  output?: string;
}

/** A disk write QEMU could not make on the host and paused the VM for (werror=enospc: a full host disk). */
export interface DiskErrorReport {
  /** The index in VmConfig.drives of the disk (a volume), or undefined for another disk. */
  drive: number | undefined;
  /** The host's full disk (ENOSPC); the only error QEMU pauses the VM for, others go to the guest. */
  noSpace: boolean;
  /** The host's error text, e.g. "No space left on device". */
  reason: string;
}

/** One volume as the guest init mounts it (ext4). */
export interface GuestMount {
  /** The serial of the drive that holds it. */
  serial: string;
  /** Absolute path in the guest; created if missing. */
  path: string;
  readOnly: boolean;
}

/**
 * A block device beside the root filesystem (a volume). QEMU opens it, and the
 * backing files of a qcow2, as root at start-up, before it drops its
 * privileges and chroots into the run folder: the jail needs no path to it.
 */
export interface DriveConfig {
  /** Absolute host path; no commas. */
  file: string;
  format: 'qcow2' | 'raw';
  readOnly: boolean;
  /** The virtio-blk serial the guest sees (/sys/block/vdX/serial): 1-20 of [a-z0-9-]. */
  serial: string;
}

/** How the guest's one NIC is wired. Prepared by src/network before boot. */
export interface NetworkAttachment {
  /** Network namespace that holds the tap; QEMU runs inside it. Undefined = the host's. */
  netns?: string;
  /** Tap device name inside that namespace. */
  tap: string;
  /** The guest NIC's MAC (fixed per template: the guest's ARP cache remembers its peer). */
  guestMac: string;
  /** Guest address, gateway and prefix for the kernel's `ip=` parameter. */
  guestIp: string;
  gatewayIp: string;
  prefixLength: number;
  /** The address the host dials to reach the guest's ports (DNAT'd to guestIp). */
  hostReachableIp: string;
}

export interface VmConfig {
  /** Unique on the host; [a-z0-9-], at most 40 characters. */
  id: string;
  /** A folder the VM owns: QMP and control sockets, console log, memory file, config disk. */
  runDir: string;
  /** PVH-bootable vmlinux. */
  kernel: string;
  /** initramfs (newc cpio) holding Flick's /init. */
  initrd: string;
  /** Read-only root filesystem image (erofs or squashfs), attached as the first virtio-blk disk. */
  rootfs: string;
  /** Volumes, attached after the config disk in this order (the order is part of a snapshot's identity). */
  drives?: DriveConfig[];
  memoryMb: number;
  vcpus: number;
  guest: GuestConfig;
  network?: NetworkAttachment;
  /** 'auto' (default) probes: KVM only where a probe guest boots under it, else TCG. */
  accel?: Accelerator | 'auto';
  /** Extra kernel command-line words (e.g. 'loglevel=7' for debugging). */
  extraKernelArgs?: string[];
}

/** A saved VM: device state plus the guest RAM file it was taken against. */
export interface Snapshot {
  /** Folder holding `state` (device state, tens of KiB) and `snapshot.json`. */
  dir: string;
  stateFile: string;
  /** The guest RAM file the state belongs to (x-ignore-shared: RAM is not in the state stream). */
  memoryFile: string;
  memoryMb: number;
  vcpus: number;
  createdAt: string;
  /**
   * Guest RAM is in the state stream, not in `memoryFile` (an empty file): the VM ran in private
   * memory, a clone of a template. A restore loads it into private memory again ('own' included).
   */
  ramInStream?: boolean;
}

/** What a memory reclaim did. */
export interface ReclaimResult {
  /** Host RAM the process held before and after (undefined: the driver cannot tell). */
  beforeBytes: number | undefined;
  afterBytes: number | undefined;
  durationMs: number;
}

/** How a VM ended. */
export interface VmExit {
  /** The app's exit code, as reported by the guest init; undefined if the guest never said. */
  guestExitCode?: number;
  /** The QEMU process's own exit code or signal. */
  processCode: number | null;
  processSignal: NodeJS.Signals | null;
}

export interface RestoreOptions {
  /**
   * 'own': the snapshot's memory file becomes this VM's RAM (MAP_SHARED, hard-
   * linked into the run folder); the VM continues exactly where it was saved
   * (stateful wake). This consumes the snapshot: do not restore it again.
   * 'clone': the memory file is a template mapped MAP_PRIVATE (share=off);
   * many VMs can restore from one file at once and none writes to it.
   */
  mode: 'own' | 'clone';
  /**
   * Load the snapshot but leave the guest paused (a *primed* restore): the
   * process, its monitor and the device state are ready, and `resume()` runs
   * the guest with its clock set. What a restore costs before the guest runs
   * (spawn, monitor, state load: ~40 ms under TCG) can so be paid before a
   * request arrives; an idle primed QEMU keeps ~15 MB of anonymous memory.
   */
  paused?: boolean;
  signal?: AbortSignal;
}

/** When a guest was let run (performance.now() of this process), for the wake breakdown. */
export interface RunTimes {
  /** QEMU said the guest runs (`cont` answered; for a restore, with the state loaded). */
  runningAt: number;
  /** The guest acknowledged its clock; absent when none was set (a pause too short to need it). */
  clockAt?: number;
}

/** A live VMM process and the guest in it. Owned by whoever booted, restored or adopted it. */
export interface MicroVm {
  readonly id: string;
  readonly pid: number;
  readonly accel: Accelerator;
  readonly config: VmConfig;
  /**
   * The guest booted in this process (not restored from a snapshot, nor
   * adopted). Under TCG such a process holds its boot's translations: tens of
   * MB more than a restored one, for as long as it lives.
   */
  readonly booted: boolean;
  /**
   * Whether this process, paused in hot standby, would hold markedly more host
   * RAM than one restored from a snapshot (the driver knows: under TCG a booted
   * guest keeps its boot's translations, tens of MB). Scale to zero sends such a
   * VM to cold standby rather than hot.
   */
  readonly heavyWhenPaused: boolean;
  /** Settles once the VMM process is gone and its files are cleaned up. Never rejects. */
  readonly exited: Promise<VmExit>;
  /**
   * Calls `listener` with each health report of the guest's HEALTHCHECK (the init
   * sends one on every change: `healthy`, or `unhealthy` after `retries` failures
   * in a row). Returns a function that removes it. Absent: the driver cannot tell.
   */
  onHealth?(listener: (report: HealthReport) => void): () => void;
  /**
   * Calls `listener` when the VMM paused the guest at a write it could not make
   * on the host (a full host disk): the write is not acknowledged to the guest,
   * so its disk holds everything it flushed before. Absent: the driver cannot tell.
   */
  onDiskError?(listener: (report: DiskErrorReport) => void): () => void;
  /**
   * Precondition: paused. Makes `overlay` (a qcow2 over what the drive of host file `file` holds now)
   * that drive's active layer: the VM writes there from now on and leaves the old file as it is, a
   * frozen layer (a live fork's copy-on-write split). Absent: the driver cannot; copy the disk instead.
   */
  switchDisk?(file: string, overlay: string): Promise<void>;
  /** Resolves when the guest accepts a TCP connection on `port` (through network.hostReachableIp). */
  waitForPort(port: number, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void>;
  pause(): Promise<void>;
  /** Resolves once the guest runs with its wall clock within 200 ms of the host's, with when each happened. */
  resume(): Promise<RunTimes>;
  /** Set by a restore that let the guest run (not a paused one): when it ran and took its clock. */
  readonly restoreTimes?: RunTimes;
  /**
   * Precondition: paused. Writes device state into `dir` (`state`, `snapshot.json`)
   * and puts the guest RAM file beside it (`mem`). By default the RAM file is
   * hard-linked (instant) and the VM becomes unresumable: stop or kill it next
   * (a suspend). With `keepRunning` the RAM file is copied (sparse) and the VM
   * can be resumed (a template taken from a VM that goes on serving).
   */
  createSnapshot(dir: string, opts?: { keepRunning?: boolean }): Promise<Snapshot>;
  /**
   * Precondition: paused (a running guest would fault its RAM straight back
   * in). Gives the guest's RAM back to the host, all but `keepBytes` of what it
   * touched most recently (its next wake's working set); 0 gives back all it can.
   */
  reclaimMemory(keepBytes: number): Promise<ReclaimResult>;
  /** Host RAM the VMM process holds now, or undefined if the driver cannot tell. */
  memoryUsage(): number | undefined;
  /** Sets the guest's wall clock to the host's (needed after every restore or long pause). */
  syncClock(): Promise<void>;
  /** Asks the guest to power off, then kills the process after `timeoutMs`. */
  stop(opts?: { timeoutMs?: number }): Promise<VmExit>;
  /** SIGKILL, then cleanup. Safe to call twice and after exit. */
  kill(): Promise<VmExit>;
  /**
   * Lets go of the VMM process without stopping it (flickd shutting down to
   * restart): closes the connections, leaves the process and its run folder.
   * `adopt()` takes it back. This object is unusable afterwards.
   */
  release(): void;
}

export interface VmmDriver {
  readonly name: string;
  /** The accelerator this driver will use for `accel: 'auto'`, after probing once. */
  accelerator(): Promise<Accelerator>;
  boot(config: VmConfig, opts?: { signal?: AbortSignal }): Promise<MicroVm>;
  /** Resolves once the restored guest runs with its wall clock set to the host's (with `paused`: once it is loaded, paused). */
  restore(config: VmConfig, snapshot: Snapshot, opts: RestoreOptions): Promise<MicroVm>;
  /**
   * Takes ownership of a VMM process left running by a previous flickd (same
   * config and runDir; the network must still be attached), or rejects with
   * VM_EXITED. The process's own exit status is unknown to an adopter
   * (processCode null); the guest's exit code still comes over the control port.
   */
  adopt(config: VmConfig, pid: number): Promise<MicroVm>;
}
