// Fakes for the controller's component tests: a VMM driver whose VMs are
// promises, a pool of networks, an image resolver, and a Controller over them.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { SqliteStateStore } from '../store/sqlite-state-store.js';
import type { AwakeInstance } from '../proxy/waker.js';
import { VmmError, type DiskErrorReport, type HealthReport, type MicroVm, type ReclaimResult, type RunTimes, type NetworkAttachment, type Snapshot, type VmConfig, type VmExit, type VmmDriver } from '../vmm/driver.js';
import { ImageStoreError } from '../registry/image-store.js';
import { Controller } from './controller.js';
import type { HeldNetwork, ImageResolver, InstanceNetwork, NetworkLease } from './seams.js';
import type { PrimedPoolConfig } from './primed/primed-pool.js';

export const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-controller-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

export class FakeVm implements MicroVm {
  static nextPid = 1000;
  readonly pid = FakeVm.nextPid++;
  readonly accel = 'tcg' as const;
  booted = true;
  restoreTimes: RunTimes | undefined;
  /** As the QEMU driver says it: a VM booted under TCG is heavy when paused. */
  get heavyWhenPaused(): boolean {
    return this.booted && this.accel === 'tcg';
  }
  reclaimed: number[] = [];
  readonly exited: Promise<VmExit>;
  paused = false;
  saved = false;
  #end!: (e: VmExit) => void;
  constructor(readonly config: VmConfig, readonly portReady: Promise<void> = Promise.resolve()) {
    this.exited = new Promise((r) => (this.#end = r));
    fs.mkdirSync(config.runDir, { recursive: true });
    fs.writeFileSync(path.join(config.runDir, 'memory'), 'ram');
  }
  get id(): string {
    return this.config.id;
  }
  readonly #health = new Set<(r: HealthReport) => void>();
  onHealth(listener: (r: HealthReport) => void): () => void {
    this.#health.add(listener);
    return () => this.#health.delete(listener);
  }
  /** The guest init reports its HEALTHCHECK's status (as on the control port). */
  reportHealth(status: HealthReport['status'], output?: string): void {
    for (const l of this.#health) l({ status, ...(output ? { output } : {}) });
  }
  readonly #diskErrors = new Set<(r: DiskErrorReport) => void>();
  onDiskError(listener: (r: DiskErrorReport) => void): () => void {
    this.#diskErrors.add(listener);
    return () => this.#diskErrors.delete(listener);
  }
  /** The host's disk fills under a write of drive `drive` (QEMU pauses the VM and says so). */
  diskFull(drive: number | undefined): void {
    this.paused = true;
    for (const l of this.#diskErrors) l({ drive, noSpace: true, reason: 'No space left on device' });
  }
  /** The guest app exits by itself. */
  crash(code: number): void {
    this.#end({ guestExitCode: code, processCode: 0, processSignal: null });
  }
  async waitForPort(_port: number, opts: { signal?: AbortSignal } = {}): Promise<void> {
    // As the QEMU driver's: a signal aborted before the call rejects it at once, not never.
    const aborted = new Promise<never>((_, reject) => {
      if (opts.signal?.aborted) reject(new VmmError('TIMEOUT', 'aborted'));
      opts.signal?.addEventListener('abort', () => reject(new VmmError('TIMEOUT', 'aborted')));
    });
    await Promise.race([this.portReady, aborted, this.exited.then(() => Promise.reject(new VmmError('BOOT_FAILED', 'VM died while booting')))]);
  }
  async pause(): Promise<void> {
    this.paused = true;
  }
  async resume(): Promise<RunTimes> {
    assert.ok(!this.saved, 'a VM whose RAM went into a snapshot must never run again');
    this.paused = false;
    const runningAt = performance.now();
    return { runningAt, clockAt: runningAt };
  }
  async createSnapshot(dir: string, opts: { keepRunning?: boolean } = {}): Promise<Snapshot> {
    assert.ok(this.paused, 'snapshots are taken while paused');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'state'), 'state');
    fs.copyFileSync(path.join(this.config.runDir, 'memory'), path.join(dir, 'mem'));
    if (!opts.keepRunning) this.saved = true;
    return { dir, stateFile: path.join(dir, 'state'), memoryFile: path.join(dir, 'mem'), memoryMb: 128, vcpus: 1, createdAt: '' };
  }
  async reclaimMemory(keepBytes: number): Promise<ReclaimResult> {
    assert.ok(this.paused, 'memory is reclaimed only from a paused VM');
    this.reclaimed.push(keepBytes);
    return { beforeBytes: undefined, afterBytes: undefined, durationMs: 0 };
  }
  /** What memoryUsage() says (the driver's cgroup figure); undefined: cannot tell. */
  usageBytes: number | undefined;
  memoryUsage(): number | undefined {
    return this.usageBytes;
  }
  async syncClock(): Promise<void> {}
  released = false;
  release(): void {
    this.released = true;
  }
  async stop(): Promise<VmExit> {
    this.#end({ guestExitCode: 0, processCode: 0, processSignal: null });
    return this.exited;
  }
  async kill(): Promise<VmExit> {
    this.#end({ processCode: null, processSignal: 'SIGKILL' });
    return this.exited;
  }
}

export class FakeDriver implements VmmDriver {
  readonly name = 'fake';
  readonly vms: FakeVm[] = [];
  restores: Array<{ mode: string; snapshot: Snapshot; paused?: true }> = [];
  portReady: Promise<void> = Promise.resolve();
  alive = new Set<number>();
  /** What each new VM's memoryUsage() says. */
  usageBytes: number | undefined;
  /** Makes the next restores fail (RESTORE_FAILED) while set. */
  failRestores = false;
  async accelerator() {
    return 'tcg' as const;
  }
  async boot(config: VmConfig): Promise<MicroVm> {
    const vm = new FakeVm(config, this.portReady);
    vm.usageBytes = this.usageBytes;
    this.vms.push(vm);
    this.alive.add(vm.pid);
    void vm.exited.then(() => this.alive.delete(vm.pid));
    return vm;
  }
  async restore(config: VmConfig, snapshot: Snapshot, opts: { mode: string; paused?: boolean }): Promise<MicroVm> {
    this.restores.push({ mode: opts.mode, snapshot, ...(opts.paused ? { paused: true } : {}) });
    if (this.failRestores) throw new VmmError('RESTORE_FAILED', 'restore failed (fake)');
    const vm = (await this.boot(config)) as FakeVm;
    vm.booted = false;
    // Primed (paused): no guest code has run; resume() runs it.
    if (opts.paused) vm.paused = true;
    else {
      const at = performance.now();
      vm.restoreTimes = { runningAt: at, clockAt: at };
    }
    return vm;
  }
  async adopt(config: VmConfig, pid: number): Promise<MicroVm> {
    if (!this.alive.has(pid)) throw new VmmError('VM_EXITED', `no VM ${pid}`);
    const vm = this.vms.find((v) => v.pid === pid)!;
    return vm;
  }
}

/** A pool of networks like src/network's, refilled at once: `made` counts the namespaces it ever made. */
export class FakeNetwork implements InstanceNetwork {
  /** Networks VMs hold, by namespace name. */
  held = new Map<string, number>();
  ready: number[] = [];
  made = 0;
  swept: string[] = [];
  constructor(readonly poolSize = 2) {
    this.#refill();
  }
  async acquire(): Promise<NetworkLease> {
    const index = this.ready.shift() ?? this.made++;
    this.#refill();
    const netns = `ns-${index}`;
    this.held.set(netns, index);
    const attachment: NetworkAttachment = { netns, tap: 'tap0', guestMac: 'm', guestIp: '172.31.255.2', gatewayIp: '172.31.255.1', prefixLength: 30, hostReachableIp: `10.0.0.${index}` };
    return { index, attachment };
  }
  async release(held: HeldNetwork): Promise<void> {
    this.held.delete(held.netns);
  }
  async sweep(keep: readonly HeldNetwork[]): Promise<void> {
    const k = new Set(keep.map((x) => x.netns));
    for (const ns of this.held.keys()) if (!k.has(ns)) (this.swept.push(ns), this.held.delete(ns));
  }
  async dispose(): Promise<void> {}
  #refill(): void {
    while (this.ready.length < this.poolSize) this.ready.push(this.made++);
  }
}

export const images: ImageResolver = {
  async resolve(ref) {
    // As the registry's image store answers (the ImageResolver contract: a user error whose code ends in NOT_FOUND).
    if (!ref.startsWith('hello')) throw new ImageStoreError('IMAGE_NOT_FOUND', `image "${ref}" not found in the host registry: push it with 'flick push ${ref}'`, { kind: 'user' });
    // `hello-hc…`: an image with a HEALTHCHECK (the label flick build writes).
    const Labels = ref.startsWith('hello-hc') ? { 'dev.flick.healthcheck': JSON.stringify({ argv: ['/check'], intervalMs: 1000, timeoutMs: 500, startPeriodMs: 0, retries: 3 }) } : undefined;
    return { digest: 'sha256:abc', config: { Cmd: ['/server'], ExposedPorts: { '8080/tcp': {} }, ...(Labels ? { Labels } : {}) }, paths: { vmlinux: 'k', initrd: 'i', rootfs: 'r' } };
  },
};

export function setup(name: string, opts: { db?: string; driver?: FakeDriver; network?: FakeNetwork; hotBudgetBytes?: number; primedPool?: PrimedPoolConfig } = {}) {
  const dataDir = path.join(tmp, name);
  const store = SqliteStateStore.open(opts.db ?? path.join(dataDir, 'state.db'));
  const driver = opts.driver ?? new FakeDriver();
  const network = opts.network ?? new FakeNetwork();
  // Hot standby off unless a test asks: the cold tier is what most tests check.
  const hotStandby = { budgetBytes: opts.hotBudgetBytes ?? 0, pageOutAfterMs: 60_000 };
  const c = new Controller({ store, driver, images, network, dataDir, restartBackoff: { initialMs: 1, maxMs: 5 }, hotStandby, ...(opts.primedPool ? { primedPool: opts.primedPool } : {}) });
  after(async () => {
    await c.dispose();
    await store.close();
  });
  return { c, store, driver, network, dataDir };
}

/**
 * A wake as the proxy makes one, then the record's `running` write, which the wake makes
 * just after its hand-over (wake.ts): what a test that reads the record next must wait for.
 */
export async function wakeUp(c: Controller, id: string, signal: AbortSignal = new AbortController().signal): Promise<AwakeInstance> {
  const up = await c.waker().ensureAwake(id, signal);
  if (c.get(id).status.state === 'running') return up;
  // (wait('running') would not do: it counts standby as serving, and a hot wake's record is standby until then.)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => (off(), reject(new Error(`instance ${id} woke but its record did not say running within 5 s`))), 5000);
    const off = c.on('state', (e) => {
      if (e.id !== id || e.to !== 'running') return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
  return up;
}

/** Polls (every 5 ms) until `cond` holds, for what a timer does in the background; fails after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
