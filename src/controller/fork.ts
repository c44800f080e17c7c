// Forking an instance (Controller.fork): a new instance whose memory and
// volumes are the source's as they were at one instant; it wakes answering
// with the source's state, then the two diverge. No peer ships this generally.
//
// - A cold-standby source has no VMM process: its saved state is copied (a
//   reflink where the filesystem can, a sparse copy elsewhere) and each of its
//   writable volumes cloned copy-on-write. Its disk is closed and, inside its
//   queue, nothing wakes it meanwhile: the state and the disks belong together.
// - A running source is paused (its disks drained and flushed); each volume is
//   cloned copy-on-write while its VM moves to the new head (MicroVm.switchDisk:
//   it must, or it would go on writing the frozen layer); its state is saved
//   with its RAM copied (keepRunning); then it resumes. It keeps its
//   connections. A driver that cannot switch has each head copied whole.
// - A hot-standby source goes to cold standby first: saving a paused QEMU 7.2
//   twice without a `cont` between trips over its already inactive disks.
//
// With `shared`, forks of a standby source share one copy of its state and
// branch their volumes from one frozen layer (fork-template.ts).
//
// Read-only volumes are shared, not copied. The fork is stored in cold standby
// with the source's spec, but its own name, host name, TCP ports and volumes;
// its first connection wakes it. Everything is checked before anything is
// made, and a failure halfway removes what the fork made (volumes, claims,
// folder): nothing half-made stays.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describeError } from '../errors.js';
import type { InstanceRecord, NewInstanceRecord, ServiceConfig, TcpService } from './state/instance-record.js';
import { VmmError, type Snapshot, type VmConfig } from '../vmm/driver.js';
import type { Lifecycle } from './lifecycle.js';
import type { InstanceVolumes, VolumeMountSpec } from './seams.js';
import { DEFAULT_DOMAIN, newInstanceId, validateName } from './spec.js';
import { ControllerError } from './states.js';
import { sharedForkTemplate } from './fork-template.js';

export interface ForkConfig {
  /** The new instance's name. */
  name: string;
  /** Host ports for the source's TCP services (its guest ports); each one needs its own: the source keeps its ports. */
  tcp?: TcpService[];
  /** The fork's HTTP host name; default `<name>.localhost` when the source has its default one. */
  hostname?: string;
  /** The fork's name for each of the source's writable volumes; default `<name>-<volume>`. */
  volumeNames?: Record<string, string>;
  /**
   * Share the standby source's saved state with its other shared forks instead of copying it
   * (fork-template.ts): a fork is then a few hundred KiB. Only from standby.
   */
  shared?: boolean;
}

/** What a fork took and how long: the new record, and how it was taken. */
export interface ForkResult {
  record: InstanceRecord;
  /** cold: from the saved state, volumes cloned; shared: the same with the state shared; live: paused, volumes cloned (the VM moved to new heads), saved and resumed. */
  mode: 'cold' | 'shared' | 'live';
  durationMs: number;
}

export async function forkInstance(lc: Lifecycle, source: InstanceRecord, cfg: ForkConfig): Promise<ForkResult> {
  validateName(cfg.name);
  if (lc.store.getByName(cfg.name) !== undefined) {
    throw new ControllerError('NAME_TAKEN', `an instance named "${cfg.name}" already exists: pick another name for the fork`, { kind: 'user' });
  }
  checkForkable(source);
  const service = forkService(lc, source, cfg);
  const volumes = lc.volumes;
  const plan = (source.spec.volumes ?? []).map((m) => ({ from: m, to: m.readOnly ? m : { ...m, name: cfg.volumeNames?.[m.name] ?? `${cfg.name}-${m.name}` } }));
  const unknown = Object.keys(cfg.volumeNames ?? {}).filter((n) => !plan.some((p) => p.from.name === n && !p.from.readOnly));
  if (unknown.length > 0) throw invalid(`instance "${source.name}" has no writable volume ${unknown.map((n) => `"${n}"`).join(', ')} to name for the fork`);
  const made = plan.filter((p) => !p.from.readOnly);
  if (made.length > 0 && volumes === undefined) throw invalid(`instance "${source.name}" mounts volumes, but this flickd has no volume manager`);
  for (const p of made) volumes!.checkNewName(p.to.name);
  if (new Set(made.map((p) => p.to.name)).size < made.length) throw invalid('the fork\'s volumes need distinct names');

  // A hot source is saved to cold standby first (outside its queue: the demotion queues itself).
  if (source.status.state === 'standby' && source.status.standbyTier === 'hot') await lc.scaleToZero.demote(source.id);

  return lc.serialize(source.id, async () => {
    const t0 = performance.now();
    const rec = lc.fresh(source.id);
    checkForkable(rec);
    const live = rec.status.state === 'running';
    if (live && cfg.shared) {
      throw new ControllerError('ILLEGAL_TRANSITION', `cannot make a shared fork of instance "${rec.name}": it is running, and a shared fork starts from a saved state: put it in standby first (PUT /v1/instances/${rec.name}/suspend?tier=cold), or fork without --shared`, {
        kind: 'user',
        details: { from: rec.status.state },
      });
    }
    if (rec.status.vm === null || (!live && (rec.status.state !== 'standby' || rec.status.standbyTier === 'hot' || rec.status.snapshots.own === undefined))) {
      throw new ControllerError('ILLEGAL_TRANSITION', `cannot fork instance "${rec.name}": it is ${rec.status.state} now; wait until it settles ('flick get ${rec.name}') and try again`, {
        kind: 'user',
        details: { from: rec.status.state },
      });
    }
    const id = newInstanceId();
    const dir = path.join(path.dirname(rec.status.dir), id);
    const ownDir = path.join(dir, 'snapshots', 'own');
    const cloned: string[] = [];
    let snapshots: { own?: Snapshot; template?: Snapshot };
    try {
      if (live) {
        snapshots = { own: await liveCopy(lc, rec, ownDir, made, cloned) };
      } else if (cfg.shared) {
        const { snapshot, layers } = await sharedForkTemplate(lc, rec, made.map((p) => p.from.name));
        for (const p of made) {
          await volumes!.branch(p.from.name, layers[p.from.name]!, p.to.name);
          cloned.push(p.to.name);
        }
        snapshots = { template: snapshot };
      } else {
        snapshots = { own: await lc.templates.ownCopy(rec.status.snapshots.own!, ownDir) };
        for (const p of made) {
          await volumes!.clone(p.from.name, p.to.name, (holder) => lc.live.has(holder));
          cloned.push(p.to.name);
        }
      }
      const mounts: VolumeMountSpec[] = plan.map((p) => p.to);
      const now = new Date().toISOString();
      const record: NewInstanceRecord = {
        version: rec.version,
        id,
        name: cfg.name,
        createdAt: now,
        spec: { ...rec.spec, service, ...(mounts.length > 0 ? { volumes: mounts } : {}) },
        status: {
          state: 'standby',
          standbyTier: 'cold',
          networkIndex: null,
          pid: null,
          vm: null,
          dir,
          snapshots,
          counters: { boots: 0, wakes: 0, restarts: 0 },
          lastExitCode: null,
          startedAt: now,
          stoppedAt: null,
        },
      };
      if (mounts.length > 0) await volumes!.attach(id, mounts);
      const vm = forkVmConfig(rec.status.vm!, record, mounts.length > 0 ? volumes!.attachedTo(id, mounts) : []);
      const stored = await lc.store.create({ ...record, status: { ...record.status, vm } });
      lc.events.emit('state', { id, name: cfg.name, from: null, to: 'standby', at: now });
      const durationMs = performance.now() - t0;
      lc.log.info(`instance ${rec.name}: forked as ${cfg.name} (${live ? 'live: paused, saved, resumed' : cfg.shared ? 'from its cold standby, sharing its state' : 'from its cold standby'}) in ${durationMs.toFixed(0)} ms`);
      return { record: stored, mode: live ? 'live' : cfg.shared ? 'shared' : 'cold', durationMs };
    } catch (err) {
      await undo(volumes, id, cloned, dir);
      throw err;
    }
  });
}

/**
 * The running source: pause, clone each volume copy-on-write while the VM moves to its new head
 * (MicroVm.switchDisk), save (RAM copied), resume. A driver that cannot switch copies each head whole
 * after the save instead (QEMU has then written back and inactivated every disk).
 */
async function liveCopy(lc: Lifecycle, rec: InstanceRecord, ownDir: string, made: Array<{ from: VolumeMountSpec; to: VolumeMountSpec }>, cloned: string[]): Promise<Snapshot> {
  const vm = lc.vm(rec.id);
  if (vm === undefined) throw new ControllerError('ILLEGAL_TRANSITION', `cannot fork instance "${rec.name}": its VM is not attached to this flickd; try again once it runs`, { kind: 'user' });
  await vm.pause();
  let failure: unknown;
  try {
    // Paused: QEMU has drained and flushed every disk, so each head is the state the saved memory knows.
    const switchDisk = vm.switchDisk?.bind(vm);
    const whole: typeof made = [];
    for (const p of made) {
      if (!switchDisk) {
        whole.push(p);
        continue;
      }
      try {
        await lc.volumes!.clone(p.from.name, p.to.name, undefined, switchDisk);
        cloned.push(p.to.name);
      } catch (err) {
        // The clone undid itself; a disk the VM cannot switch (another filesystem) is copied whole.
        if (!(err instanceof VmmError && err.code === 'UNSUPPORTED')) throw err;
        whole.push(p);
      }
    }
    await fsp.mkdir(ownDir, { recursive: true });
    const own = await vm.createSnapshot(ownDir, { keepRunning: true });
    for (const p of whole) {
      await lc.volumes!.copy(p.from.name, p.to.name);
      cloned.push(p.to.name);
    }
    return own;
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    try {
      await vm.resume();
    } catch (err) {
      // The source cannot go on: it fails (its disk is intact, a start boots it again).
      await lc.kill(rec.id, vm);
      await lc.releaseNetwork(rec.id);
      lc.transition(lc.fresh(rec.id), 'failed', { pid: null, vm: null, error: `resume after a fork failed: ${describeError(err)}` });
      if (failure === undefined) throw err;
    }
  }
}

/** A source must be stateful: a stateless standby wakes from the shared template and has no memory of its own to fork. */
function checkForkable(rec: InstanceRecord): void {
  if (!rec.spec.scaleToZero.stateful) {
    throw new ControllerError('ILLEGAL_TRANSITION', `cannot fork instance "${rec.name}": it is stateless, so it keeps no memory of its own: fork a stateful instance (--scale-to-zero stateful=true, or any instance with a volume)`, {
      kind: 'user',
      details: { from: rec.status.state },
    });
  }
  const { state } = rec.status;
  if (state === 'stopped' || state === 'failed' || state === 'stopping') {
    throw new ControllerError('ILLEGAL_TRANSITION', `cannot fork instance "${rec.name}": it is ${state} and has no state in memory to fork: start it first, or copy its disks with 'flick volume clone'`, {
      kind: 'user',
      details: { from: state },
    });
  }
}

/** The source's service under the fork's name and ports: every TCP port must be the fork's own. */
function forkService(lc: Lifecycle, rec: InstanceRecord, cfg: ForkConfig): ServiceConfig {
  const given = cfg.tcp ?? [];
  const taken = new Map<number, string>();
  for (const r of lc.store.list()) for (const t of r.spec.service.tcp) taken.set(t.hostPort, r.name);
  for (const g of given) {
    if (!rec.spec.service.tcp.some((t) => t.guestPort === g.guestPort)) {
      throw invalid(`instance "${rec.name}" serves no TCP guest port ${g.guestPort}: its TCP ports are ${rec.spec.service.tcp.map((t) => `${t.hostPort}:${t.guestPort}`).join(', ') || 'none'}`);
    }
    const holder = taken.get(g.hostPort);
    if (holder !== undefined) throw invalid(`host port ${g.hostPort} is taken by instance "${holder}": give the fork a free port, e.g. -p ${g.hostPort + 1}:${g.guestPort}/tcp`);
  }
  if (new Set(given.map((g) => g.hostPort)).size < given.length) throw invalid('the fork\'s TCP host ports must differ from each other');
  const tcp = rec.spec.service.tcp.map((t) => {
    const mine = given.find((g) => g.guestPort === t.guestPort);
    if (mine === undefined) throw invalid(`instance "${rec.name}" serves TCP on host port ${t.hostPort} (guest ${t.guestPort}): give the fork a host port of its own, e.g. 'flick fork ${rec.name} ${cfg.name} -p ${t.hostPort + 1}:${t.guestPort}/tcp'`);
    return mine;
  });
  const http = rec.spec.service.http;
  if (http === undefined) {
    if (cfg.hostname !== undefined) throw invalid(`instance "${rec.name}" serves no HTTP: a host name means nothing for its fork`);
    return { tcp };
  }
  const isDefault = http.hostname === `${rec.name}.${DEFAULT_DOMAIN}`;
  if (cfg.hostname === undefined && !isDefault) throw invalid(`instance "${rec.name}" answers at its own host name ${http.hostname}: give the fork one (--domain HOST)`);
  const hostname = cfg.hostname ?? `${cfg.name}.${DEFAULT_DOMAIN}`;
  // A certificate names its host: the source's stays with the source (the fork gets the proxy's default one).
  const { tls: _tls, ...rest } = http;
  return { http: { ...rest, hostname }, tcp };
}

/** The source's VM config as the fork's: its id, run folder and disks; no network (a wake attaches one). */
function forkVmConfig(src: VmConfig, rec: NewInstanceRecord, held: ReturnType<InstanceVolumes['attachedTo']>): VmConfig {
  const { network: _n, drives: _d, ...rest } = src;
  const vm: VmConfig = { ...rest, id: rec.id, runDir: path.join(rec.status.dir, 'run') };
  if (held.length === 0) return vm;
  return {
    ...vm,
    drives: held.map((v) => ({ file: v.file, format: v.format, readOnly: v.readOnly, serial: v.id })),
    guest: { ...src.guest, mounts: held.map((v) => ({ serial: v.id, path: v.path, readOnly: v.readOnly })) },
  };
}

async function undo(volumes: InstanceVolumes | undefined, id: string, cloned: string[], dir: string): Promise<void> {
  await volumes?.detach(id).catch(() => {});
  for (const name of cloned) await volumes?.rm(name).catch(() => {});
  await fsp.rm(dir, { recursive: true, force: true });
}

function invalid(message: string): ControllerError {
  return new ControllerError('INVALID_SPEC', message, { kind: 'user' });
}
