// What a volume's name, size and mount may be, checked before anything touches
// the disk. Names become folder names under <dataDir>/volumes/, so the rule
// leaves no room for traversal ('..', '/') or hidden files.
import path from 'node:path';
import { VolumeError } from './volume-error.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const MIN_VOLUME_BYTES = 16 * 2 ** 20;
export const MAX_VOLUME_BYTES = 2 ** 40;
const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

export function validateVolumeName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 70)) : String(name);
    throw new VolumeError(
      'VOLUME_INVALID',
      `volume name ${shown} is not valid: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. pgdata)`,
      { kind: 'user' },
    );
  }
  return name;
}

/**
 * "1G", "512M", "1.5GiB", "10gb", or bytes ("1073741824"); binary units.
 * Rounded up to a whole MiB; 16 MiB (room for ext4's journal) to 1 TiB.
 */
export function parseVolumeSize(size: unknown): number {
  const text = typeof size === 'number' ? String(size) : size;
  const m = typeof text === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text) : null;
  const bad = (why: string): never => {
    throw new VolumeError('VOLUME_INVALID', `volume size ${JSON.stringify(size)} ${why}: give a size such as 1G or 512M (16M to 1T)`, { kind: 'user' });
  };
  if (!m) return bad('is not a size');
  const bytes = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isFinite(bytes) || bytes < MIN_VOLUME_BYTES) return bad('is too small');
  if (bytes > MAX_VOLUME_BYTES) return bad('is too large');
  return Math.ceil(bytes / 2 ** 20) * 2 ** 20;
}

/** One `-v NAME:/path[:ro]` of `flick run`. */
export interface VolumeMount {
  name: string;
  /** Absolute path in the guest, normalized. */
  path: string;
  readOnly: boolean;
}

/** Paths a volume may not cover: the init's own mounts and what the guest needs to boot. */
const RESERVED = ['/', '/proc', '/sys', '/dev', '/tmp', '/etc', '/bin', '/sbin', '/lib', '/lib64', '/usr'];

/** Checks a mount (from the API or the CLI) and returns it normalized. */
export function validateMount(m: { name: unknown; path: unknown; readOnly?: unknown }): VolumeMount {
  const name = validateVolumeName(m.name);
  const p = m.path;
  const bad = (why: string): never => {
    throw new VolumeError('VOLUME_INVALID', `mount path ${JSON.stringify(p)} of volume "${name}" ${why}: use an absolute path such as /data`, { kind: 'user' });
  };
  if (typeof p !== 'string' || !p.startsWith('/')) return bad('is not absolute');
  if (p.length > 200 || /[\0,\n]/.test(p) || p.split('/').includes('..')) return bad('is not allowed');
  const norm = path.posix.normalize(p).replace(/\/+$/, '') || '/';
  if (RESERVED.includes(norm) || norm.startsWith('/proc/') || norm.startsWith('/sys/') || norm.startsWith('/dev/')) return bad('is a system folder');
  return { name, path: norm, readOnly: m.readOnly === true };
}

/** `NAME:/path` or `NAME:/path:ro` (or `:rw`), as `flick run -v` takes it. */
export function parseMountFlag(flag: string): VolumeMount {
  const parts = flag.split(':');
  const [name, p, mode, ...rest] = parts;
  if (parts.length < 2 || rest.length > 0 || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw new VolumeError('VOLUME_INVALID', `volume mount "${flag}" is not NAME:/path or NAME:/path:ro (e.g. -v pgdata:/data)`, { kind: 'user' });
  }
  return validateMount({ name, path: p, readOnly: mode === 'ro' });
}

/** Checks a list of mounts: no volume twice, no path twice. */
export function validateMounts(mounts: readonly VolumeMount[]): VolumeMount[] {
  const out = mounts.map((m) => validateMount(m));
  const seen = new Set<string>();
  for (const m of out) {
    for (const key of [`v:${m.name}`, `p:${m.path}`]) {
      if (seen.has(key)) {
        throw new VolumeError('VOLUME_INVALID', `${key.startsWith('v') ? `volume "${m.name}"` : `path ${m.path}`} is mounted twice: give each once`, { kind: 'user' });
      }
      seen.add(key);
    }
  }
  return out;
}
