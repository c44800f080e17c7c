// A uid (and the gid of the same number) of its own for every jailed VMM, so
// one instance's VMM can open none of another's files even outside its chroot.
// The numbers come from a range no account or subordinate-id map uses; none
// needs an /etc/passwd entry (QEMU takes `-runas uid:gid`). A claim is a file
// `<dir>/<uid>` holding the owner's id, created with O_EXCL, so two flickds (or
// two starts racing) never hand out one number twice. The first number tried
// is a hash of the id: an instance usually gets the same uid on every start.
import fs from 'node:fs';
import path from 'node:path';
import { FlickError } from '../errors.js';

export type UidPoolErrorCode = 'UID_POOL_EXHAUSTED';
export class UidPoolError extends FlickError<UidPoolErrorCode> {}

/** Far above login accounts (<60000) and the usual /etc/subuid ranges (100000 + 65536·n). */
export const UID_BASE = 1_600_000_000;
export const UID_RANGE = 1 << 20;

export class UidPool {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The uid `owner` holds, claiming one if it holds none. */
  claim(owner: string): number {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const start = fnv1a(owner) % UID_RANGE;
    // Bounded probe: a full pool would be ~a million VMs on one host.
    for (let i = 0; i < 4096; i++) {
      const uid = UID_BASE + ((start + i) % UID_RANGE);
      const file = path.join(this.dir, String(uid));
      try {
        fs.writeFileSync(file, owner, { flag: 'wx', mode: 0o600 });
        return uid;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (readOwner(file) === owner) return uid;
      }
    }
    throw new UidPoolError('UID_POOL_EXHAUSTED', `no free VMM uid near ${UID_BASE + start} in ${this.dir}: remove claims of instances that no longer exist`);
  }

  /** Gives back `uid` if `owner` holds it. Safe to call twice. */
  release(owner: string, uid: number): void {
    const file = path.join(this.dir, String(uid));
    if (readOwner(file) === owner) fs.rmSync(file, { force: true });
  }
}

function readOwner(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** FNV-1a, 32 bits: a stable, well-spread start for the probe. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
