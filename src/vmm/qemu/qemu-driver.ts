// The QEMU `microvm` implementation of the VMM seam (../driver.ts). Boot,
// restore and adopt each end in a QemuMicroVm that owns the process; until
// then the code here owns it, and any failure kills it and removes what was
// created before rejecting. Inputs are checked before anything is spawned.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ControlChannel } from '../../guest/control.js';
import { writeConfigDisk } from '../../guest/config.js';
import { requireKernel } from '../../guest/kernel.js';
import { VmmError, type Accelerator, type MicroVm, type RestoreOptions, type Snapshot, type VmConfig, type VmmDriver } from '../driver.js';
import { probeAccelerator } from './accel.js';
import { buildQemuArgs, DEFAULT_TB_SIZE_MB, kernelCmdline } from './args.js';
import { findJail, jailByDefault } from './jail.js';
import { linkDrives } from './disk-switch.js';
import { sendStream } from './migration-stream.js';
import { tcgGuestTimers } from './tsc.js';
import { QemuProcess, processArgs, tail } from './qemu-process.js';
import { QmpClient, QmpError } from './qmp-client.js';
import { MigrationEventDataSchema, StatusInfoSchema } from './qmp-schema.js';
import { CLOCK_ANSWER_MS, QemuMicroVm, fileExists } from './qemu-vm.js';
import { MemoryReclaimer } from './memory-reclaim.js';
import { cleanRunDir, removeIfEmpty, runDirFiles, type RunDir } from './run-dir.js';

export interface QemuDriverConfig {
  /** TCG translation cache size in MiB. */
  tcgTbSizeMb?: number;
  /** Where the driver says which accelerator it uses. */
  log?: (line: string) => void;
  /** Kernel for the accelerator probe; default: the built guest kernel. */
  probeKernel?: string;
  /** How long QEMU may take to open its monitor. */
  startTimeoutMs?: number;
  /** Run every QEMU in a jail of its own (jail.ts). Default: on unless FLICK_JAIL=off. */
  jail?: boolean;
  /** Where the cgroup v1 hierarchies are mounted (memory reclaim of paused VMs). Default /sys/fs/cgroup. */
  cgroupRoot?: string;
}

const ID_PATTERN = /^[a-z0-9-]{1,40}$/;
const QMP_POLL_MS = 2;

export class QemuDriver implements VmmDriver {
  readonly name = 'qemu-microvm';
  readonly #cfg: QemuDriverConfig;
  readonly #reclaimer: MemoryReclaimer;
  #accel: Promise<Accelerator> | undefined;

  constructor(config: QemuDriverConfig = {}) {
    this.#cfg = config;
    this.#reclaimer = new MemoryReclaimer(config.cgroupRoot ? { cgroupRoot: config.cgroupRoot } : {});
  }

  accelerator(): Promise<Accelerator> {
    this.#accel ??= (async () => {
      const kernel = this.#cfg.probeKernel ?? requireKernel().vmlinux;
      const verdict = await probeAccelerator(kernel);
      this.#cfg.log?.(`vmm: using ${verdict.accel.toUpperCase()} (${verdict.reason})`);
      return verdict.accel;
    })();
    this.#accel.catch(() => (this.#accel = undefined));
    return this.#accel;
  }

  async boot(config: VmConfig, opts: { signal?: AbortSignal } = {}): Promise<MicroVm> {
    checkInputs(config);
    const accel = await this.#resolveAccel(config);
    const rd = runDirFiles(config.runDir);
    return this.#start(config, rd, accel, { memory: { path: rd.memory, share: true }, incoming: false }, opts.signal, async (qmp, control, process) => {
      // Pipelined: both are queued before the first answer comes back.
      const caps = setCapabilities(qmp);
      await qmp.execute('cont');
      await caps;
      return new QemuMicroVm({ config, accel, process, qmp, control, runDir: rd, state: 'running', ownsMemory: true, freshBoot: true, reclaimer: this.#reclaimer });
    });
  }

  async restore(config: VmConfig, snapshot: Snapshot, opts: RestoreOptions): Promise<MicroVm> {
    checkInputs(config);
    for (const f of [snapshot.stateFile, snapshot.memoryFile]) {
      if (!fileExists(f)) throw new VmmError('RESTORE_FAILED', `snapshot ${snapshot.dir} is incomplete: ${f} is missing; boot the VM afresh`);
    }
    const accel = await this.#resolveAccel(config);
    const rd = runDirFiles(config.runDir);
    const vmConfig: VmConfig = { ...config, memoryMb: snapshot.memoryMb, vcpus: snapshot.vcpus };
    await fsp.mkdir(rd.dir, { recursive: true });
    let memory = { path: snapshot.memoryFile, share: false };
    // A snapshot of a VM that ran in private memory carries its RAM in the stream: it is loaded into
    // private memory again (a shared mapping would be skipped by x-ignore-shared and refused).
    const ownRam = opts.mode === 'own' && snapshot.ramInStream !== true;
    if (ownRam) {
      // The VM continues in the snapshot's RAM file (a hard link: no copy). The snapshot is consumed by this.
      let ramFile = rd.memory;
      if (snapshot.memoryFile !== rd.memory) {
        await fsp.rm(rd.memory, { force: true });
        // Another filesystem cannot hold a link: then the VM runs on the snapshot's file where it is.
        ramFile = await fsp.link(snapshot.memoryFile, rd.memory).then(
          () => rd.memory,
          (err: NodeJS.ErrnoException) => {
            if (err.code === 'EXDEV') return snapshot.memoryFile;
            throw err;
          },
        );
      }
      memory = { path: ramFile, share: true };
    }
    return this.#start(vmConfig, rd, accel, { memory, incoming: true }, opts.signal, async (qmp, control, process) => {
      const finished = qmp.waitForEvent('MIGRATION', {
        predicate: (e) => ['completed', 'failed', 'cancelled'].includes(MigrationEventDataSchema.parse(e.data).status),
        timeoutMs: 30_000,
      });
      finished.catch(() => {});
      // All three are queued at once. `cont` while QEMU still waits for the stream only
      // sets autostart (qmp_cont), so the guest runs the moment the state is loaded:
      // no round trip between "completed" and "running".
      const caps = setCapabilities(qmp);
      const incoming = qmp.execute('migrate-incoming', { uri: `unix:${rd.incomingSocket}` });
      // Primed (opts.paused): no autostart; resume() runs the guest and sets its clock.
      const cont = opts.paused ? undefined : qmp.execute('cont');
      cont?.catch(() => {});
      await caps;
      await incoming;
      await sendStream(rd.incomingSocket, snapshot.stateFile);
      const status = MigrationEventDataSchema.parse((await finished).data).status;
      await fsp.rm(rd.incomingSocket, { force: true });
      if (status !== 'completed') {
        throw new VmmError('RESTORE_FAILED', `restore of VM ${config.id}: QEMU reported the incoming migration ${status}: ${tail(rd.qemuLog, 300)}`);
      }
      const ownsMemory = ownRam;
      const parts = { config: vmConfig, accel, process, qmp, control, runDir: rd, ownsMemory, ramFile: ownsMemory ? memory.path : undefined, freshBoot: false, reclaimer: this.#reclaimer };
      // A VM made paused owes its clock to the first resume (QemuMicroVm).
      if (cont === undefined) return new QemuMicroVm({ ...parts, state: 'paused' });
      // Only now: a line sent while the port's state is still loading can sit unread in the
      // socket (QEMU is not told to look again), so the guest would keep its snapshot-time clock.
      const clock = control.syncClock(CLOCK_ANSWER_MS);
      clock.catch(() => {});
      await cont;
      const runningAt = performance.now();
      // The guest runs already; its answer comes after about 1-2 ms of guest work. It is
      // awaited so that no request reaches the app while its clock still says snapshot time.
      try {
        await clock;
      } catch (cause) {
        throw new VmmError('CLOCK_FAILED', `restore of VM ${config.id}: the guest did not take the clock: ${(cause as Error).message}`, { cause });
      }
      return new QemuMicroVm({ ...parts, state: 'running', restoreTimes: { runningAt, clockAt: performance.now() } });
    });
  }

  async adopt(config: VmConfig, pid: number): Promise<MicroVm> {
    const rd = runDirFiles(config.runDir);
    const args = processArgs(pid);
    if (!args || !args.some((a) => a.includes(`path=${rd.qmpSocket},`))) {
      throw new VmmError('VM_EXITED', `VM ${config.id}: process ${pid} is not its QEMU (gone, or another program): boot or restore it again`);
    }
    const accelArg = args[args.indexOf('-accel') + 1] ?? '';
    const accel: Accelerator = accelArg.startsWith('kvm') ? 'kvm' : 'tcg';
    const ownsMemory = args.some((a) => a.includes(`mem-path=${rd.memory},share=on`));
    const process = QemuProcess.adopt(pid, this.#cfg.jail ?? jailByDefault() ? findJail(config.id, path.resolve(rd.dir)) : undefined);
    let qmp: QmpClient | undefined;
    try {
      qmp = await QmpClient.connect(rd.qmpSocket, { timeoutMs: 2000 });
      const status = StatusInfoSchema.parse(await qmp.execute('query-status'));
      const control = await ControlChannel.connect(rd.ctlSocket, { timeoutMs: 1000 }).catch(() => undefined);
      const vm = new QemuMicroVm({ config, accel, process, qmp, control, runDir: rd, state: status.running ? 'running' : 'paused', ownsMemory, freshBoot: false, reclaimer: this.#reclaimer });
      return vm;
    } catch (cause) {
      qmp?.close();
      throw new VmmError('VM_EXITED', `VM ${config.id}: cannot re-attach to QEMU ${pid}: ${(cause as Error).message}`, { cause });
    }
  }

  async #resolveAccel(config: VmConfig): Promise<Accelerator> {
    return config.accel === undefined || config.accel === 'auto' ? this.accelerator() : config.accel;
  }

  /**
   * Prepares the run folder, spawns QEMU, connects QMP and the control port,
   * then hands them to `finish`. On any failure: kill, clean, reject.
   */
  async #start(
    config: VmConfig,
    rd: RunDir,
    accel: Accelerator,
    launch: { memory: { path: string; share: boolean }; incoming: boolean },
    signal: AbortSignal | undefined,
    finish: (qmp: QmpClient, control: ControlChannel, process: QemuProcess) => Promise<QemuMicroVm>,
  ): Promise<MicroVm> {
    const what = launch.incoming ? 'restore' : 'boot';
    const failCode = launch.incoming ? 'RESTORE_FAILED' : 'BOOT_FAILED';
    await fsp.mkdir(rd.dir, { recursive: true });
    await Promise.all([rd.qmpSocket, rd.ctlSocket, rd.incomingSocket].map((p) => fsp.rm(p, { force: true })));
    let process: QemuProcess | undefined;
    let qmp: QmpClient | undefined;
    let control: ControlChannel | undefined;
    try {
      await writeConfigDisk(rd.configDisk, config.guest);
      const args = buildQemuArgs({
        accel,
        tcgTbSizeMb: this.#cfg.tcgTbSizeMb,
        memoryMb: config.memoryMb,
        vcpus: config.vcpus,
        kernel: config.kernel,
        initrd: config.initrd,
        // Under KVM the guest learns its timers' rates from kvm-clock and the TSC deadline timer.
        cmdline: kernelCmdline(config.network, config.extraKernelArgs, accel === 'tcg' ? tcgGuestTimers(config.kernel) : {}),
        rootfs: config.rootfs,
        configDisk: rd.configDisk,
        drives: await linkDrives(rd.dir, config.drives ?? []),
        memory: launch.memory,
        files: rd,
        network: config.network,
        incoming: launch.incoming,
      });
      const tbSizeMb = accel === 'tcg' ? this.#cfg.tcgTbSizeMb ?? DEFAULT_TB_SIZE_MB : 0;
      const jail = this.#cfg.jail ?? jailByDefault() ? { id: config.id, runDir: path.resolve(rd.dir), memoryMb: config.memoryMb, vcpus: config.vcpus, tbSizeMb } : undefined;
      process = await QemuProcess.spawn(args, { netns: config.network?.netns, stderrPath: rd.qemuLog, ...(jail ? { jail } : {}) });
      const proc = process;
      const died = proc.exited.then((e) => {
        throw new VmmError(failCode, `${what} of VM ${config.id}: QEMU exited (${e.code ?? e.signal}) while starting: ${tail(rd.qemuLog) || 'no message'}`);
      });
      died.catch(() => {});
      // One start-up deadline for both sockets, which QEMU makes at once: on a loaded host its start
      // took over 2 s (the density ramp at load ~22, 872 VMs up), which the control port's own 2 s failed.
      const startMs = this.#cfg.startTimeoutMs ?? 10_000;
      const qmpP = connectQmp(rd.qmpSocket, startMs, signal);
      const controlP = ControlChannel.connect(rd.ctlSocket, { timeoutMs: startMs, signal });
      // Both are awaited (caught) so a failure of one never leaves the other's socket open.
      const [q, c] = await Promise.race([Promise.allSettled([qmpP, controlP]), died]);
      if (q.status === 'fulfilled') qmp = q.value;
      if (c.status === 'fulfilled') control = c.value;
      if (q.status === 'rejected') throw q.reason;
      if (c.status === 'rejected') throw c.reason;
      if (!qmp || !control) throw new VmmError(failCode, `${what} of VM ${config.id}: no monitor or control port`);
      // The VM object owns the process from here.
      return await Promise.race([finish(qmp, control, proc), died]);
    } catch (err) {
      qmp?.close();
      control?.close();
      await process?.kill();
      await cleanRunDir(rd);
      removeIfEmpty(rd);
      if (err instanceof VmmError) throw err;
      throw new VmmError(failCode, `${what} of VM ${config.id} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

function setCapabilities(qmp: QmpClient): Promise<unknown> {
  // x-ignore-shared: RAM in the memory file stays out of the stream. Must match on save and restore.
  return qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: true }] });
}

/** Connects to QEMU's monitor as soon as it listens (QEMU creates the socket during startup). */
async function connectQmp(socket: string, timeoutMs: number, signal?: AbortSignal): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await QmpClient.connect(socket, { timeoutMs: Math.max(1, deadline - Date.now()), signal });
    } catch (err) {
      if (!(err instanceof QmpError) || err.code !== 'QMP_CLOSED' || Date.now() >= deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, QMP_POLL_MS));
  }
}

/** Fails before anything is spawned or created when an input file is missing. */
function checkInputs(config: VmConfig): void {
  if (!ID_PATTERN.test(config.id)) {
    throw new VmmError('INVALID_STATE', `VM id "${config.id}" is not valid: use 1-40 characters of a-z, 0-9 and -`, { kind: 'user' });
  }
  if (!fileExists(config.kernel)) {
    throw new VmmError('KERNEL_MISSING', `guest kernel ${config.kernel} does not exist or is not readable: build it with 'bin/flick guest build'`, {
      kind: 'user',
    });
  }
  for (const [what, file] of [
    ['initrd', config.initrd],
    ['root filesystem', config.rootfs],
  ] as const) {
    if (!fileExists(file)) {
      throw new VmmError('DISK_MISSING', `${what} ${file} does not exist or is not readable: rebuild or re-pull the image`, { kind: 'user' });
    }
  }
  for (const d of config.drives ?? []) {
    if (!/^[a-z0-9-]{1,20}$/.test(d.serial) || !d.file.startsWith('/') || d.file.includes(',')) {
      throw new VmmError('INVALID_STATE', `VM ${config.id}: drive ${d.file} (serial "${d.serial}") is not valid: an absolute path without commas and a serial of 1-20 a-z, 0-9, -`, { kind: 'user' });
    }
    if (!fileExists(d.file)) throw new VmmError('DISK_MISSING', `volume disk ${d.file} does not exist or is not readable: check the volume with 'flick volume ls'`, { kind: 'user' });
  }
}
