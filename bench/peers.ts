// The peers Flick's wake is measured against, on the same machine and in the
// same run: the same node app as a container (podman + runc, host network;
// crun fails on this machine's hybrid cgroups) and as a bare `node server.js`
// process, each from spawn to the first byte of an HTTP answer.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { freePort } from '../src/network/free-port.js';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../src/paths.js';
import { firstByteOnceListening } from './flickd-host.js';

const run = promisify(execFile);
/** The container image of examples/hello-node, built from its unchanged Dockerfile. */
export const CONTAINER_IMAGE = 'localhost/flick-bench/hello-node:latest';
export const STORAGE = ['--storage-driver', 'overlay'];
/**
 * Lowered limits: runc cannot raise RLIMIT_NOFILE/NPROC to podman's defaults
 * inside this machine's sandbox ("error setting rlimit type 7: operation not
 * permitted"); lowering is always allowed and the app needs few.
 */
export const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

/** Builds the container image unless podman has it (the same build flags `flick build` uses). */
export async function ensureContainerImage(log: (l: string) => void): Promise<void> {
  const exists = await run('podman', [...STORAGE, 'image', 'exists', CONTAINER_IMAGE]).then(
    () => true,
    () => false,
  );
  if (exists) return;
  log(`building the container image ${CONTAINER_IMAGE} (buildah bud)`);
  const mounts = [
    ['/etc/ssl/certs/ca-certificates.crt', '/etc/ssl/certs/ca-certificates.crt'],
    ['/etc/npmrc', '/usr/local/etc/npmrc'],
    ['/root/.npmrc', '/root/.npmrc'],
  ]
    .filter(([h]) => fs.existsSync(h!))
    .flatMap(([h, c]) => ['-v', `${h}:${c}:ro`]);
  await run('buildah', [...STORAGE, 'bud', '--isolation', 'chroot', '--pull=false', '--format', 'oci', ...mounts, '-t', CONTAINER_IMAGE, path.join(PACKAGE_ROOT, 'examples', 'hello-node')], { maxBuffer: 64 << 20 });
}

function exitOf(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** `podman run --runtime runc --network host` of the app → first HTTP byte, `runs` times. */
export async function containerColdStarts(runs: number, onRun: () => void = () => {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const port = await freePort();
    const name = `flick-bench-ctr-${process.pid}-${i}`;
    const t0 = performance.now();
    const child = spawn('podman', [...STORAGE, 'run', '--rm', '--runtime', 'runc', '--network', 'host', ...ULIMITS, '--name', name, '-e', `PORT=${port}`, CONTAINER_IMAGE], { stdio: 'ignore' });
    try {
      out.push(await firstByteOnceListening({ host: '127.0.0.1', port }, t0, 60_000, () => child.exitCode === null));
    } finally {
      await run('podman', [...STORAGE, 'rm', '-f', '-t', '0', name]).catch(() => {});
      child.kill('SIGKILL');
      await exitOf(child);
    }
    onRun();
  }
  return out;
}

/** The app's files (with its node_modules) copied out of the container image, for a bare run. */
export async function appCopy(): Promise<{ dir: string; dispose: () => void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-app-'));
  const name = `flick-bench-cp-${process.pid}`;
  try {
    await run('podman', [...STORAGE, 'create', '--name', name, CONTAINER_IMAGE]);
    await run('podman', [...STORAGE, 'cp', `${name}:/app`, dir]);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    await run('podman', [...STORAGE, 'rm', '-f', name]).catch(() => {});
  }
  return { dir: path.join(dir, 'app'), dispose: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A bare `node server.js` (this host's node) → first HTTP byte, `runs` times. */
export async function bareNodeStarts(runs: number, onRun: () => void = () => {}): Promise<number[]> {
  const app = await appCopy();
  const out: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const port = await freePort();
      const t0 = performance.now();
      const child = spawn(process.execPath, ['server.js'], { cwd: app.dir, env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
      try {
        out.push(await firstByteOnceListening({ host: '127.0.0.1', port }, t0, 30_000, () => child.exitCode === null));
      } finally {
        child.kill('SIGKILL');
        await exitOf(child);
      }
      onRun();
    }
  } finally {
    app.dispose();
  }
  return out;
}
