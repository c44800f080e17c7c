// Base images made on this host under the names Dockerfiles use (`FROM node:20-slim`,
// `debian:bookworm`, `python:3-slim`…, as docker.io/library/… the way short names
// resolve), so an unchanged Dockerfile builds without Docker Hub: Debian minbase by
// debootstrap, plus the host's node and npm, or plus Debian's python3. Each carries
// a label saying what it is, which `flick build` reports when one stands in for a
// name. The debootstrap tree is cached (as a tar) under cacheDir()/base/<key>.tar;
// a second build only re-commits it when the image is gone.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { cacheDir } from '../paths.js';
import { STORAGE, inspectImage, tlsVerifyFor } from './buildah.js';
import { run } from './exec.js';
import { ImageError } from './image-error.js';

/** Bump when the recipe below changes the resulting trees. */
const RECIPE_VERSION = '1';
/** Python's tree: the whole standard library and `python`, as the python images have. */
const PYTHON_PACKAGES = ['python3', 'python-is-python3'];
const SUITE = 'bookworm';
const KEY_LABEL = 'dev.flick.base-key';
/** What a local base is, in words ("Debian bookworm minbase + this host's node v20.20.2 and npm 10.8.2"). */
export const STAND_IN_LABEL = 'dev.flick.base';
const BASE_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8'];

const HUB = 'docker.io/library';
/** Every name each base is tagged with: the official images' usual tags, then Flick's own older name. */
export const DEBIAN_NAMES = [SUITE, `${SUITE}-slim`, '12', '12-slim'].map((t) => `${HUB}/debian:${t}`).concat(`localhost/flick/debian:${SUITE}`);
const PYTHON_VERSION = '3.11';
export const PYTHON_NAMES = ['3', '3-slim', PYTHON_VERSION, `${PYTHON_VERSION}-slim`, `3-${SUITE}`, `3-slim-${SUITE}`, `${PYTHON_VERSION}-slim-${SUITE}`]
  .map((t) => `${HUB}/python:${t}`)
  .concat('localhost/flick/python:3');
export function nodeNames(): string[] {
  const major = process.versions.node.split('.')[0]!;
  return [major, `${major}-slim`, `${major}-${SUITE}`, `${major}-${SUITE}-slim`].map((t) => `${HUB}/node:${t}`).concat(`localhost/flick/node:${major}`);
}

export interface BaseBuildOptions {
  node?: boolean;
  python?: boolean;
  /** Registry host[:port] to push every built base image to. */
  push?: string;
  /** user:password for the registry (flickd accepts flick:<token>). */
  creds?: string;
  progress?: (line: string) => void;
}

/** The Debian mirror this host already uses (deb822 URIs: or one-line `deb` entries). */
export function debianMirror(): string {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of fs.readdirSync('/etc/apt/sources.list.d')) files.push(path.join('/etc/apt/sources.list.d', f));
  } catch {
    // no sources.list.d
  }
  for (const f of files) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)/gm)) {
      const uri = m[1]!;
      if (/\/debian\/?$/.test(uri)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

/** A debootstrap minbase tree (plus `include` packages) as a cached tar without /dev. */
async function debootstrapTar(include: string[], progress: (l: string) => void): Promise<{ tar: string; key: string }> {
  const mirror = debianMirror();
  const key = crypto.createHash('sha256').update(JSON.stringify([RECIPE_VERSION, SUITE, mirror, include])).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir(), 'base');
  const tar = path.join(dir, `${SUITE}-${key}.tar`);
  if (fs.existsSync(tar)) return { tar, key };
  await fsp.mkdir(dir, { recursive: true });
  const scratch = await fsp.mkdtemp(path.join(dir, '.debootstrap-'));
  try {
    const root = path.join(scratch, 'root');
    progress(`base: debootstrap --variant=minbase ${SUITE}${include.length ? ` +${include.join(',')}` : ''} from ${mirror} (about a minute)`);
    const args = ['--variant=minbase', ...(include.length ? [`--include=${include.join(',')}`] : []), SUITE, root, mirror];
    await run('debootstrap', args, {
      onLine: (l) => {
        if (!/^I: (Validating|Retrieving|Extracting|Unpacking|Installing|Configuring) /.test(l)) progress(`  ${l}`);
      },
    });
    // Package caches and indexes are build leftovers, not part of a base image.
    for (const p of ['var/cache/apt/archives', 'var/lib/apt/lists', 'var/log']) {
      await run('find', [path.join(root, p), '-mindepth', '1', '-type', 'f', '-delete']);
    }
    await fsp.rm(path.join(root, 'var/cache/apt/pkgcache.bin'), { force: true });
    await fsp.rm(path.join(root, 'var/cache/apt/srcpkgcache.bin'), { force: true });
    // Device nodes belong to the runtime (devtmpfs in the guest), never to a layer.
    const partial = `${tar}.${process.pid}.partial`;
    await run('tar', ['-C', root, '--exclude=./dev/*', '--numeric-owner', '-cf', partial, '.']);
    await fsp.rename(partial, tar);
    return { tar, key };
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

/** Makes sure every name is tagged on the base with `key`: committed once, the rest re-tagged (cheap). */
async function ensureBase(names: string[], key: string, commit: () => Promise<void>, progress: (l: string) => void): Promise<void> {
  const isCurrent = async (n: string) => (await inspectImage(n))?.config.Labels?.[KEY_LABEL] === key;
  if (!(await isCurrent(names[0]!))) {
    progress(`base: committing ${names[0]}`);
    await commit();
  }
  for (const n of names.slice(1)) if (!(await isCurrent(n))) await run('buildah', [...STORAGE, 'tag', names[0]!, n]);
}

/** Commits `tars` (added in order at /) on top of `from` as `names[0]`, tagged with the other names too. */
async function commitBase(names: string[], from: string, tars: string[], key: string, description: string): Promise<void> {
  const ctr = (await run('buildah', [...STORAGE, 'from', '--pull-never', from])).stdout.trim();
  try {
    for (const t of tars) await run('buildah', [...STORAGE, 'add', ctr, t, '/']);
    const env = BASE_ENV.flatMap((e) => ['--env', e]);
    await run('buildah', [...STORAGE, 'config', ...env, '--label', `${KEY_LABEL}=${key}`, '--label', `${STAND_IN_LABEL}=${description}`, ctr]);
    await run('buildah', [...STORAGE, 'commit', '--quiet', ctr, names[0]!]);
  } finally {
    await run('buildah', [...STORAGE, 'rm', ctr]).catch(() => {});
  }
}

/** A tar of the host's node and npm laid out under /usr/local like the official node images. */
async function hostNodeTar(dir: string): Promise<string> {
  const node = fs.realpathSync(process.execPath);
  const npmDir = fs.realpathSync(path.join(path.dirname(node), '..', 'lib', 'node_modules', 'npm'));
  if (!fs.existsSync(path.join(npmDir, 'bin', 'npm-cli.js'))) {
    throw new ImageError('TOOL_FAILED', `node base: npm not found at ${npmDir}: install npm beside ${node}`);
  }
  const stage = await fsp.mkdtemp(path.join(dir, '.node-'));
  try {
    await fsp.mkdir(path.join(stage, 'usr/local/bin'), { recursive: true });
    await fsp.mkdir(path.join(stage, 'usr/local/lib/node_modules'), { recursive: true });
    await fsp.copyFile(node, path.join(stage, 'usr/local/bin/node'));
    await run('cp', ['-a', npmDir, path.join(stage, 'usr/local/lib/node_modules/npm')]);
    await fsp.symlink('../lib/node_modules/npm/bin/npm-cli.js', path.join(stage, 'usr/local/bin/npm'));
    await fsp.symlink('../lib/node_modules/npm/bin/npx-cli.js', path.join(stage, 'usr/local/bin/npx'));
    const tar = path.join(dir, `node-${process.versions.node}.tar`);
    await run('tar', ['-C', stage, '--numeric-owner', '--owner=0', '--group=0', '-cf', tar, '.']);
    return tar;
  } finally {
    await fsp.rm(stage, { recursive: true, force: true });
  }
}

/** Builds the requested base images (Debian always; all three when neither node nor python is asked for) and returns their names. */
export async function buildBaseImages(opts: BaseBuildOptions = {}): Promise<string[]> {
  const progress = opts.progress ?? (() => {});
  const all = !opts.node && !opts.python;
  const built: string[] = [];
  const mirror = debianMirror();
  const debian = await debootstrapTar([], progress);
  const debianWords = `Debian ${SUITE} minbase (debootstrap from ${mirror})`;
  await ensureBase(DEBIAN_NAMES, debian.key, () => commitBase(DEBIAN_NAMES, 'scratch', [debian.tar], debian.key, debianWords), progress);
  built.push(...DEBIAN_NAMES);
  if (opts.node || all) {
    const names = nodeNames();
    const key = `${debian.key}-node-${process.versions.node}`;
    const words = `${debianWords} + this host's node ${process.version} and npm`;
    await ensureBase(names, key, async () => {
      const dir = path.join(cacheDir(), 'base');
      const tar = await hostNodeTar(dir);
      try {
        await commitBase(names, DEBIAN_NAMES[0]!, [tar], key, words);
      } finally {
        await fsp.rm(tar, { force: true });
      }
    }, progress);
    built.push(...names);
  }
  if (opts.python || all) {
    const py = await debootstrapTar(PYTHON_PACKAGES, progress);
    const words = `Debian ${SUITE} minbase (debootstrap from ${mirror}) + ${PYTHON_PACKAGES.join(', ')} ${PYTHON_VERSION}`;
    await ensureBase(PYTHON_NAMES, py.key, () => commitBase(PYTHON_NAMES, 'scratch', [py.tar], py.key, words), progress);
    built.push(...PYTHON_NAMES);
  }
  if (opts.push) {
    for (const name of built.filter((n) => n.startsWith('localhost/'))) {
      const target = `${opts.push}/${name.replace(/^localhost\//, '')}`;
      progress(`base: pushing ${name} to ${target}`);
      const creds = opts.creds ? ['--creds', opts.creds] : [];
      await run('buildah', [...STORAGE, 'push', '--quiet', ...tlsVerifyFor(target), ...creds, name, `docker://${target}`]);
    }
  }
  return built;
}
