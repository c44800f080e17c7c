// Volumes: named ext4 block devices with a lifetime of their own, kept under
// <dataDir>/volumes/ (see the README's "Volumes and databases"):
//
//   <name>/volume.json   the record (VolumeState), written atomically
//   <name>/disk.qcow2    the disk QEMU opens (the *head*)
//   .layers/<id>.qcow2   frozen layers that clones' heads read through
//   .tmp/                scratch: a volume is made here and renamed into place
//
// Every change is made in scratch and becomes visible by one rename, so a
// failure or a crash leaves no half-made volume (.tmp is emptied at start).
// Who holds a volume (attachments) is in its record: an instance claims its
// volumes when it is created and lets go when it is removed; at most one
// holder may write, and nobody else may hold a volume that is written. The
// record and view types are in volume-state.ts; the collection of unused layers in layers.ts.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../registry/fs-atomic.js';
import { checkDisk, diskFullError, diskSpace, isDiskFull, type DiskSpace } from '../limits/limits.js';
import { allocatedBytes, backingChain, copySparse, makeExt4Qcow2, makeOverlay, syncFile } from './disk-file.js';
import { validateMounts, validateVolumeName, type VolumeMount } from './names.js';
import { collectLayers } from './layers.js';
import { VolumeError } from './volume-error.js';
import { VOLUME_STATE_VERSION, type AttachedVolume, type VolumeInfo, type VolumeState } from './volume-state.js';

export interface VolumeManagerOptions {
  /** Volumes live under `<dataDir>/volumes`. */
  dataDir: string;
  diskSpace?: (dir: string) => DiskSpace;
  /** Free space kept on the host disk below which create and clone are refused. Default 64 MiB. */
  minFreeBytes?: number;
}

const RECORD = 'volume.json';
const DISK = 'disk.qcow2';
/** What a create or clone writes before the guest writes anything (1.3 MiB for 1 GiB, measured). */
const CREATE_NEED_BYTES = 8 * 2 ** 20;

export class VolumeManager {
  readonly root: string;
  readonly #opts: VolumeManagerOptions;
  /** Mutations run one at a time: a name is checked and taken in one turn of this queue. */
  #queue: Promise<unknown> = Promise.resolve();
  #beforeFreeze: (holder: string) => Promise<void> = async () => {};

  constructor(opts: VolumeManagerOptions) {
    this.#opts = opts;
    this.root = path.join(opts.dataDir, 'volumes');
    fs.mkdirSync(path.join(this.root, '.layers'), { recursive: true, mode: 0o700 });
    // Whatever a crash left half-made.
    fs.rmSync(path.join(this.root, '.tmp'), { recursive: true, force: true });
    fs.mkdirSync(path.join(this.root, '.tmp'), { mode: 0o700 });
  }

  /** Runs for each writer of a volume before `clone` or `freeze` freezes its disk (a VMM process that holds it open without a record naming it must end first). */
  beforeFreeze(hook: (holder: string) => Promise<void>): void {
    this.#beforeFreeze = hook;
  }

  // ---- queries ----

  list(): VolumeInfo[] {
    return fs
      .readdirSync(this.root)
      .filter((n) => !n.startsWith('.'))
      .sort()
      .flatMap((n) => {
        const s = this.#read(n);
        return s ? [this.#info(s)] : [];
      });
  }

  get(name: string): VolumeInfo {
    return this.#info(this.#require(name));
  }

  /** Whether a volume of this (valid) name exists. */
  has(name: string): boolean {
    validateVolumeName(name);
    return fs.existsSync(path.join(this.root, name));
  }

  /** Throws VOLUME_INVALID or VOLUME_EXISTS unless a volume could be made under `name` now. */
  checkNewName(name: string): void {
    validateVolumeName(name);
    this.#refuseTaken(name);
  }

  // ---- commands ----

  async create(name: string, sizeBytes: number): Promise<VolumeInfo> {
    validateVolumeName(name);
    return this.#serial(async () => {
      this.#refuseTaken(name);
      this.#checkSpace(`volume "${name}"`);
      const state: VolumeState = { version: VOLUME_STATE_VERSION, id: newId(), name, sizeBytes, createdAt: new Date().toISOString(), attachments: [] };
      await this.#inScratch(name, async (dir) => {
        await makeExt4Qcow2(path.join(dir, DISK), sizeBytes, name);
        await writeFileAtomic(path.join(dir, RECORD), json(state), 0o600);
      });
      return this.get(name);
    });
  }

  /**
   * A copy-on-write clone: the source's head becomes a frozen layer and both
   * volumes get a fresh head on top of it (a few hundred KiB each). The source
   * must not be open in any VMM process (`open` says whether a holder has one):
   * it would go on writing the frozen layer; a cold-standby instance has none,
   * and its restore opens the new head by name. Unless `switchWriter` moves that
   * (paused) process to the new head before it takes the head's name (a live fork).
   */
  async clone(src: string, dst: string, open: (holder: string) => boolean = () => true, switchWriter?: (head: string, overlay: string) => Promise<void>): Promise<VolumeInfo> {
    validateVolumeName(dst);
    return this.#serial(async () => {
      const source = this.#require(src);
      this.#refuseTaken(dst);
      await this.#writersLetGo(source);
      if (!switchWriter) this.#refuseOpenWriter(source, open);
      this.#checkSpace(`clone "${dst}"`);
      const head = path.join(this.root, src, DISK);
      const layer = path.join(this.root, '.layers', `${newId()}.qcow2`);
      // A second name for the source's disk first: until the rename below the source is untouched.
      const srcHead = path.join(this.root, '.tmp', `${newId()}.qcow2`);
      await fsp.link(head, layer);
      try {
        const state: VolumeState = { ...source, id: newId(), name: dst, createdAt: new Date().toISOString(), clonedFrom: src, attachments: [] };
        await fsp.mkdir(path.dirname(srcHead), { recursive: true });
        await this.#inScratch(dst, async (dir) => {
          await makeOverlay(srcHead, layer, src);
          await makeOverlay(path.join(dir, DISK), layer, dst);
          await writeFileAtomic(path.join(dir, RECORD), json(state), 0o600);
          await switchWriter?.(head, srcHead);
          // The source's switch to its new head is atomic; from here the layer is shared and frozen.
          await fsp.rename(srcHead, head);
        });
        await fsp.chmod(layer, 0o400);
      } catch (err) {
        await fsp.rm(srcHead, { force: true });
        await this.#collectLayers();
        throw err;
      }
      return this.get(dst);
    });
  }

  /**
   * A full copy of `src`'s head as the new volume `dst` (a fork of a running
   * instance). Precondition: the writer's VM is paused and its disk flushed
   * (after a snapshot QEMU has written back every cache and inactivated the
   * image), so the head is consistent and nothing writes it during the copy;
   * a clone would freeze the head under a process that goes on writing it.
   * Sparse: only allocated clusters take disk; a head that reads through a
   * frozen layer keeps reading through it.
   */
  async copy(src: string, dst: string): Promise<VolumeInfo> {
    validateVolumeName(dst);
    return this.#serial(async () => {
      const source = this.#require(src);
      this.#refuseTaken(dst);
      const head = path.join(this.root, src, DISK);
      checkDisk(`copy "${dst}"`, this.root, CREATE_NEED_BYTES + allocatedBytes(head), (this.#opts.diskSpace ?? diskSpace)(this.root), this.#opts.minFreeBytes ?? 64 * 2 ** 20);
      const state: VolumeState = { ...source, id: newId(), name: dst, createdAt: new Date().toISOString(), clonedFrom: src, attachments: [] };
      await this.#inScratch(dst, async (dir) => {
        await copySparse(head, path.join(dir, DISK), `volume "${dst}"`);
        await syncFile(path.join(dir, DISK));
        await writeFileAtomic(path.join(dir, RECORD), json(state), 0o600);
      });
      return this.get(dst);
    });
  }

  /**
   * Freezes `src`'s disk as it is now into a shared read-only layer and gives
   * `src` a fresh head over it; returns the layer, which `branch` makes new
   * volumes from (a template volume: one frozen state, any number of branches,
   * each one head over it). Same precondition as `clone`.
   */
  async freeze(src: string, open: (holder: string) => boolean = () => true): Promise<string> {
    return this.#serial(async () => {
      const source = this.#require(src);
      await this.#writersLetGo(source);
      this.#refuseOpenWriter(source, open);
      this.#checkSpace(`freezing "${src}"`);
      const head = path.join(this.root, src, DISK);
      const layer = path.join(this.root, '.layers', `${newId()}.qcow2`);
      const srcHead = path.join(this.root, '.tmp', `${newId()}.qcow2`);
      await fsp.link(head, layer);
      try {
        await makeOverlay(srcHead, layer, src);
        await fsp.rename(srcHead, head);
        await fsp.chmod(layer, 0o400);
      } catch (err) {
        await fsp.rm(srcHead, { force: true });
        await this.#collectLayers();
        throw err;
      }
      return layer;
    });
  }

  /** A new volume `dst`: a fresh head over `layer`, a frozen state of `src` (`freeze`); a few hundred KiB. */
  async branch(src: string, layer: string, dst: string): Promise<VolumeInfo> {
    validateVolumeName(dst);
    return this.#serial(async () => {
      const source = this.#require(src);
      this.#refuseTaken(dst);
      if (path.dirname(layer) !== path.join(this.root, '.layers') || !fs.existsSync(layer)) {
        throw new VolumeError('VOLUME_FAILED', `the frozen state of volume "${src}" (${layer}) is gone: fork again from the instance`, { kind: 'user' });
      }
      this.#checkSpace(`volume "${dst}"`);
      const state: VolumeState = { ...source, id: newId(), name: dst, createdAt: new Date().toISOString(), clonedFrom: src, attachments: [] };
      await this.#inScratch(dst, async (dir) => {
        await makeOverlay(path.join(dir, DISK), layer, dst);
        await writeFileAtomic(path.join(dir, RECORD), json(state), 0o600);
      });
      return this.get(dst);
    });
  }

  /** Removes a volume nobody holds, then the layers no head reads any more. */
  rm(name: string): Promise<void> {
    return this.#serial(async () => {
      const s = this.#require(name);
      if (s.attachments.length > 0) {
        throw new VolumeError('VOLUME_IN_USE', `volume "${name}" is attached to instance ${s.attachments.map((a) => a.holder).join(', ')}: remove the instance first ('flick rm')`, {
          kind: 'user',
        });
      }
      // Only the layers this head read through can become unused by its removal (undefined: any).
      const chain = await backingChain(path.join(this.root, name, DISK)).catch(() => undefined);
      // Out of sight in one rename, then deleted.
      const gone = path.join(this.root, '.tmp', `rm-${newId()}`);
      await fsp.mkdir(path.dirname(gone), { recursive: true });
      await fsp.rename(path.join(this.root, name), gone);
      await fsp.rm(gone, { recursive: true, force: true });
      await this.#collectLayers(chain && new Set(chain.slice(1).map((f) => path.resolve(f))));
    });
  }

  /**
   * Claims `mounts` for `holder`, all or none: VOLUME_NOT_FOUND for an unknown
   * name, VOLUME_IN_USE when another holder writes it, or when this one would
   * write a volume somebody else holds. Claiming again what `holder` holds is a no-op.
   */
  async attach(holder: string, mounts: readonly VolumeMount[]): Promise<AttachedVolume[]> {
    const checked = validateMounts(mounts);
    return this.#serial(async () => {
      const states = checked.map((m) => this.#require(m.name));
      checked.forEach((m, i) => {
        const others = states[i]!.attachments.filter((a) => a.holder !== holder);
        const writer = others.find((a) => !a.readOnly);
        if (writer || (!m.readOnly && others.length > 0)) {
          const by = (writer ?? others[0])!;
          throw new VolumeError(
            'VOLUME_IN_USE',
            `volume "${m.name}" is attached to instance ${by.holder}${by.readOnly ? ' (read-only)' : ''}: a volume has one writer at a time; ` +
              `remove that instance first, attach it read-only (NAME:/path:ro) where nobody writes it, or clone it ('flick volume clone')`,
            { kind: 'user', details: { volume: m.name, holder: by.holder } },
          );
        }
      });
      const since = new Date().toISOString();
      for (const [i, m] of checked.entries()) {
        const s = states[i]!;
        const attachments = [...s.attachments.filter((a) => a.holder !== holder), { holder, readOnly: m.readOnly, since }];
        await this.#write({ ...s, attachments });
      }
      return checked.map((m, i) => this.#attached(states[i]!, m));
    });
  }

  /** What `holder` holds, as the VM needs it (at boot, restore and adoption). */
  attachedTo(holder: string, mounts: readonly VolumeMount[]): AttachedVolume[] {
    return mounts.map((m) => this.#attached(this.#require(m.name), m));
  }

  /** Lets go of everything `holder` holds. Safe twice. */
  detach(holder: string): Promise<void> {
    return this.#serial(async () => {
      for (const s of this.list()) {
        if (s.attachments.some((a) => a.holder === holder)) await this.#write({ ...stateOf(s), attachments: s.attachments.filter((a) => a.holder !== holder) });
      }
    });
  }

  /** At start: drops attachments whose holder is not in `keep` (instances removed while flickd was down). */
  sweep(keep: ReadonlySet<string>): Promise<string[]> {
    return this.#serial(async () => {
      const dropped: string[] = [];
      for (const s of this.list()) {
        const kept = s.attachments.filter((a) => keep.has(a.holder));
        if (kept.length === s.attachments.length) continue;
        dropped.push(s.name);
        await this.#write({ ...stateOf(s), attachments: kept });
      }
      await this.#collectLayers();
      return dropped;
    });
  }

  // ---- plumbing ----

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #read(name: string): VolumeState | undefined {
    try {
      const s = JSON.parse(fs.readFileSync(path.join(this.root, name, RECORD), 'utf8')) as VolumeState;
      return s.version === VOLUME_STATE_VERSION ? s : undefined;
    } catch {
      return undefined;
    }
  }

  #require(name: string): VolumeState {
    validateVolumeName(name);
    const s = this.#read(name);
    if (!s) throw new VolumeError('VOLUME_NOT_FOUND', `volume "${name}" not found: create it with 'flick volume create ${name} --size 1G', or list volumes with 'flick volume ls'`, { kind: 'user' });
    return s;
  }

  #refuseTaken(name: string): void {
    if (fs.existsSync(path.join(this.root, name))) {
      throw new VolumeError('VOLUME_EXISTS', `volume "${name}" already exists: choose another name, or remove it first with 'flick volume rm ${name}'`, { kind: 'user' });
    }
  }

  async #writersLetGo(source: VolumeState): Promise<void> {
    for (const a of source.attachments) if (!a.readOnly) await this.#beforeFreeze(a.holder);
  }

  /** A writer with a VMM process would go on writing a frozen layer. */
  #refuseOpenWriter(source: VolumeState, open: (holder: string) => boolean): void {
    const writer = source.attachments.find((a) => !a.readOnly && open(a.holder));
    if (writer) {
      throw new VolumeError('VOLUME_IN_USE', `volume "${source.name}" is open in the VM of instance ${writer.holder}: stop it first, or let it go to cold standby (or fork the instance with 'flick fork')`, {
        kind: 'user',
      });
    }
  }

  #checkSpace(what: string): void {
    checkDisk(what, this.root, CREATE_NEED_BYTES, (this.#opts.diskSpace ?? diskSpace)(this.root), this.#opts.minFreeBytes ?? 64 * 2 ** 20);
  }

  /** Runs `fill(dir)` in a scratch folder, then renames it to `name`; on failure nothing stays. */
  async #inScratch(name: string, fill: (dir: string) => Promise<void>): Promise<void> {
    const dir = path.join(this.root, '.tmp', `${name}-${newId()}`);
    try {
      await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      await fill(dir);
      await fsp.rename(dir, path.join(this.root, name));
    } catch (err) {
      await fsp.rm(dir, { recursive: true, force: true });
      if (isDiskFull(err)) throw diskFullError(err, `volume "${name}"`, this.root);
      throw err;
    }
  }

  async #write(s: VolumeState): Promise<void> {
    await writeFileAtomic(path.join(this.root, s.name, RECORD), json(s), 0o600);
  }

  #info(s: VolumeState): VolumeInfo {
    const file = path.join(this.root, s.name, DISK);
    return { ...s, state: s.attachments.length > 0 ? 'attached' : 'available', allocatedBytes: allocatedBytes(file), file };
  }

  #attached(s: VolumeState, m: VolumeMount): AttachedVolume {
    return { ...m, id: s.id, file: path.join(this.root, s.name, DISK), format: 'qcow2' };
  }

  #collectLayers(candidates?: ReadonlySet<string>): Promise<void> {
    return collectLayers(path.join(this.root, '.layers'), () => this.list().map((v) => v.file), candidates);
  }
}

function newId(): string {
  return crypto.randomBytes(6).toString('hex');
}

function json(s: VolumeState): string {
  return `${JSON.stringify(s, null, 2)}\n`;
}

function stateOf(i: VolumeInfo): VolumeState {
  const { state: _s, allocatedBytes: _a, file: _f, ...s } = i;
  return s;
}
