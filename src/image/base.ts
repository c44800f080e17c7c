// Base images made on this host, so Dockerfiles can say `FROM localhost/flick/node:20`
// without Docker Hub: Debian minbase by debootstrap, plus the host's node and npm,
// or plus python3-minimal. The debootstrap tree is cached (as a tar) under
// cacheDir()/base/<key>.tar; a second build only re-commits it when the image is gone.
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
const SUITE = 'bookworm';
const KEY_LABEL = 'dev.flick.base-key';
const BASE_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8'];

export const DEBIAN_BASE = `localhost/flick/debian:${SUITE}`;
export const PYTHON_BASE = 'localhost/flick/python:3';
export function nodeBaseName(): string {
  return `localhost/flick/node:${process.versions.node.split('.')[0]}`;
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

async function hasBase(name: string, key: string): Promise<boolean> {
  const img = await inspectImage(name);
  return img?.config.Labels?.[KEY_LABEL] === key;
}

/** Commits `tars` (added in order at /) on top of `from` as `name`. */
async function commitBase(name: string, from: string, tars: string[], key: string): Promise<void> {
  const ctr = (await run('buildah', [...STORAGE, 'from', '--pull-never', from])).stdout.trim();
  try {
    for (const t of tars) await run('buildah', [...STORAGE, 'add', ctr, t, '/']);
    const env = BASE_ENV.flatMap((e) => ['--env', e]);
    await run('buildah', [...STORAGE, 'config', ...env, '--label', `${KEY_LABEL}=${key}`, ctr]);
    await run('buildah', [...STORAGE, 'commit', '--quiet', ctr, name]);
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

/** Builds the requested base images (Debian always) and returns their names. */
export async function buildBaseImages(opts: BaseBuildOptions = {}): Promise<string[]> {
  const progress = opts.progress ?? (() => {});
  const built: string[] = [];
  const debian = await debootstrapTar([], progress);
  if (!(await hasBase(DEBIAN_BASE, debian.key))) {
    progress(`base: committing ${DEBIAN_BASE}`);
    await commitBase(DEBIAN_BASE, 'scratch', [debian.tar], debian.key);
  }
  built.push(DEBIAN_BASE);
  if (opts.node) {
    const name = nodeBaseName();
    const key = `${debian.key}-node-${process.versions.node}`;
    if (!(await hasBase(name, key))) {
      progress(`base: committing ${name} (host node ${process.version} and npm)`);
      const dir = path.join(cacheDir(), 'base');
      const tar = await hostNodeTar(dir);
      try {
        await commitBase(name, DEBIAN_BASE, [tar], key);
      } finally {
        await fsp.rm(tar, { force: true });
      }
    }
    built.push(name);
  }
  if (opts.python) {
    const py = await debootstrapTar(['python3-minimal'], progress);
    if (!(await hasBase(PYTHON_BASE, py.key))) {
      progress(`base: committing ${PYTHON_BASE}`);
      await commitBase(PYTHON_BASE, 'scratch', [py.tar], py.key);
    }
    built.push(PYTHON_BASE);
  }
  if (opts.push) {
    for (const name of built) {
      const target = `${opts.push}/${name.replace(/^localhost\//, '')}`;
      progress(`base: pushing ${name} to ${target}`);
      const creds = opts.creds ? ['--creds', opts.creds] : [];
      await run('buildah', [...STORAGE, 'push', '--quiet', ...tlsVerifyFor(target), ...creds, name, `docker://${target}`]);
    }
  }
  return built;
}
