// Shared template snapshots. Instances of one image and one guest-visible
// configuration (everything that ends up in guest memory: image digest, RAM
// size, vCPUs, argv, env, cwd, user, hostname, the port the app listens on)
// share ONE template: `<dataDir>/templates/<key>/{state,mem,snapshot.json}`.
// A stateless wake restores it as a clone (MAP_PRIVATE, share=off), so many
// instances map the same file and a standby instance costs a record, a route
// and its network. The network identity stays per instance: every namespace
// gives its guest the same address and MAC (src/network), so the template's
// baked-in network config is right for all of them.
//
// References are the instance records themselves (`snapshots.template.dir`):
// no counter to drift. A template goes when the last record naming it goes.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { InstanceRecord } from './state/instance-record.js';
import type { GuestConfig, Snapshot } from '../vmm/driver.js';
import { ControllerError } from './states.js';

/** What a template is keyed by: exactly what the guest's memory depends on. */
export interface TemplateKeyInput {
  imageDigest: string;
  memoryMb: number;
  vcpus: number;
  guest: GuestConfig;
  /** The port the app listens on (readiness; a woken app must listen there). */
  port: number | undefined;
  /** GET / requests the app served before the snapshot (template-warmup.ts): they change its memory. */
  warmupRequests?: number;
}

/** Bump when what goes into a template changes (kernel command line, driver layout): old templates stop matching. */
const TEMPLATE_FORMAT = 1;

export function templateKey(input: TemplateKeyInput): string {
  const canonical = JSON.stringify({
    f: TEMPLATE_FORMAT,
    d: input.imageDigest,
    m: input.memoryMb,
    c: input.vcpus,
    g: [input.guest.argv, input.guest.env, input.guest.cwd, input.guest.uid, input.guest.gid, input.guest.hostname],
    p: input.port ?? null,
    w: input.warmupRequests ?? 0,
  });
  return crypto.createHash('sha256').update(canonical).digest('hex').slice(0, 24);
}

export class TemplateStore {
  readonly dir: string;
  /** Templates being taken right now: a second instance reaching readiness waits for the first's. */
  readonly #taking = new Map<string, Promise<Snapshot>>();

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'templates');
  }

  dirOf(key: string): string {
    return path.join(this.dir, key);
  }

  /** The finished template for `key`, if one exists on disk. */
  find(key: string): Snapshot | undefined {
    try {
      const s = JSON.parse(fs.readFileSync(path.join(this.dirOf(key), 'snapshot.json'), 'utf8')) as Snapshot & { version?: number };
      if (!fs.existsSync(s.stateFile) || !fs.existsSync(s.memoryFile)) return undefined;
      return { dir: s.dir, stateFile: s.stateFile, memoryFile: s.memoryFile, memoryMb: s.memoryMb, vcpus: s.vcpus, createdAt: s.createdAt };
    } catch {
      return undefined;
    }
  }

  /**
   * The template for `key`: the one on disk, the one being taken, or a new one
   * from `take(dir)` (which writes a snapshot into `dir`). Taken into a scratch
   * folder and renamed, so a crash never leaves a half template under its key.
   */
  async ensure(key: string, take: (dir: string) => Promise<Snapshot>): Promise<{ snapshot: Snapshot; taken: boolean }> {
    const found = this.find(key);
    if (found) return { snapshot: found, taken: false };
    const pending = this.#taking.get(key);
    if (pending) return { snapshot: await pending, taken: false };
    const p = (async () => {
      const final = this.dirOf(key);
      const scratch = `${final}.taking-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
      await fsp.mkdir(this.dir, { recursive: true });
      try {
        const snap = await take(scratch);
        await fsp.rm(final, { recursive: true, force: true });
        await fsp.rename(scratch, final);
        const moved: Snapshot = { ...snap, dir: final, stateFile: path.join(final, path.basename(snap.stateFile)), memoryFile: path.join(final, path.basename(snap.memoryFile)) };
        await fsp.writeFile(path.join(final, 'snapshot.json'), `${JSON.stringify({ version: 1, ...moved }, null, 2)}\n`);
        return moved;
      } catch (err) {
        await fsp.rm(scratch, { recursive: true, force: true });
        throw err;
      }
    })();
    this.#taking.set(key, p);
    try {
      return { snapshot: await p, taken: true };
    } finally {
      this.#taking.delete(key);
    }
  }

  /** Removes the template in `dir` unless a record still names it (`inUse`, asked of the store). Returns whether it went. */
  async releaseIfUnused(dir: string | undefined, inUse: (dir: string) => boolean): Promise<boolean> {
    if (dir === undefined || path.dirname(dir) !== this.dir) return false; // not a shared template
    if (this.#taking.has(path.basename(dir))) return false;
    if (inUse(dir)) return false;
    await fsp.rm(dir, { recursive: true, force: true });
    return true;
  }

  /** At start: removes templates no record names, and scratch folders a crash left. */
  async sweep(records: readonly InstanceRecord[]): Promise<string[]> {
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.dir);
    } catch {
      return [];
    }
    const used = new Set(records.map((r) => r.status.snapshots.template?.dir).filter((d): d is string => d !== undefined));
    const removed: string[] = [];
    for (const name of names) {
      const dir = path.join(this.dir, name);
      if (used.has(dir)) continue;
      await fsp.rm(dir, { recursive: true, force: true });
      removed.push(name);
    }
    return removed;
  }

  /**
   * A stateful instance's own snapshot made from a template: the device state
   * copied, the RAM file a copy-on-write clone where the filesystem can
   * (`cp --reflink=auto`: btrfs, xfs) and a sparse copy elsewhere (ext4: only
   * the pages the template's guest touched take disk). The instance then
   * continues in its own file (restore 'own'), and its suspends are hard links.
   */
  async ownCopy(template: Snapshot, dir: string): Promise<Snapshot> {
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(dir, { recursive: true });
    const stateFile = path.join(dir, 'state');
    const memoryFile = path.join(dir, 'mem');
    try {
      await fsp.copyFile(template.stateFile, stateFile);
      await cp(['--reflink=auto', '--sparse=always', template.memoryFile, memoryFile]);
    } catch (cause) {
      await fsp.rm(dir, { recursive: true, force: true });
      throw new ControllerError('SNAPSHOT_FAILED', `copying template ${template.dir} for a stateful instance failed: ${(cause as Error).message}; check free disk space`, { cause });
    }
    const snap: Snapshot = { ...template, dir, stateFile, memoryFile, createdAt: new Date().toISOString() };
    await fsp.writeFile(path.join(dir, 'snapshot.json'), `${JSON.stringify({ version: 1, ...snap }, null, 2)}\n`);
    return snap;
  }
}

function cp(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('cp', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cp ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))));
  });
}
