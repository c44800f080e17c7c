// The image pipeline for real: unchanged Dockerfiles built with buildah,
// specialized by a traced microVM run, packed, written to a local OCI layout,
// then booted with the real VMM driver and network until they answer. Bad
// inputs fail with the Dockerfile line, a non-zero exit and no partial image.
// Base images (debootstrap, cached) are built once for the whole file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildInitrd } from '../src/guest/init.js';
import { NamespaceNetwork, sweepLeftovers } from '../src/network/namespace-network.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { buildBaseImages } from '../src/image/base.js';
import { buildImage, type BuildResult } from '../src/image/build.js';
import { imageInfo } from '../src/image/image-info.js';
import { partOf, plainMediaType, unpackLayer } from '../src/image/layer-codec.js';
import { FLICK_ARTIFACT, FLICK_INITRD_XZ, FLICK_KERNEL_XZ, FLICK_ROOTFS_EROFS_XZ, FLICK_ROOTFS_SQUASHFS } from '../src/image/media-types.js';
import { OciLayout } from '../src/image/oci-layout.js';
import { qemuTraceRunner } from '../src/image/trace-runner.js';
import type { MicroVm } from '../src/vmm/driver.js';
import { QemuDriver } from '../src/vmm/qemu/qemu-driver.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'fit';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const APPS = path.join(PACKAGE_ROOT, 'test', 'fixtures', 'apps');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-image-'));
const layout = new OciLayout(path.join(tmp, 'images'));
const network = new NamespaceNetwork({ prefix: PREFIX, pool: runPool(215) });
const driver = new QemuDriver();
const vms = new Set<MicroVm>();
let nextSlot = 1;

before(async () => {
  await sweepDeadRuns(TAG);
  await sweepLeftovers(PREFIX);
  await buildInitrd();
  await buildBaseImages({ node: true, python: true });
});

after(async () => {
  await Promise.all([...vms].map((vm) => vm.kill()));
  await sweepLeftovers(PREFIX);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function build(app: string, tag: string, extra: { buildArgs?: Map<string, string> } = {}): Promise<BuildResult> {
  return buildImage({ context: path.join(APPS, app), tag, layout, tracer: qemuTraceRunner, ...extra });
}

/** Boots a stored image with the real driver in its own network namespace; once its port accepts, `talk` to it (default GET /) and return what it said. */
async function bootAndGet(ref: string, memoryMb = 128, o: { port?: number; talk?: (host: string, port: number) => Promise<string> } = {}): Promise<string> {
  const info = await imageInfo(layout, await layout.resolve(ref));
  const port = o.port ?? Number.parseInt(info.config.exposed_ports[0]!, 10);
  const id = `img-${nextSlot}`;
  const slot = nextSlot++;
  const parts = await unpacked(ref, path.join(tmp, `${id}-parts`));
  const attachment = await network.attach(id, slot);
  try {
    const vm = await driver.boot({
      id,
      runDir: path.join(tmp, id),
      kernel: parts.vmlinux,
      initrd: parts.initrd,
      rootfs: parts.rootfs,
      memoryMb,
      vcpus: 1,
      network: attachment,
      guest: {
        argv: [...info.config.entrypoint, ...info.config.cmd],
        env: info.config.env,
        cwd: info.config.working_dir,
        uid: info.config.uid ?? 0,
        gid: info.config.gid ?? 0,
        hostname: id,
        ...(info.config.healthcheck ? { healthcheck: info.config.healthcheck } : {}),
      },
    });
    vms.add(vm);
    try {
      await vm.waitForPort(port, { timeoutMs: 120_000 });
      return await (o.talk ?? get)(attachment.hostReachableIp, port);
    } finally {
      await vm.kill();
      vms.delete(vm);
    }
  } finally {
    await network.detach(id, slot);
  }
}

/** One Redis command over a raw TCP connection (RESP inline form); resolves with the first reply line. */
function redis(command: string): (host: string, port: number) => Promise<string> {
  return (host, port) =>
    new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => s.write(`${command}\r\n`));
      let got = '';
      s.setEncoding('utf8').on('data', (d: string) => {
        got += d;
        if (got.includes('\r\n')) {
          s.destroy();
          resolve(got.split('\r\n')[0]!);
        }
      });
      s.on('error', reject);
    });
}

function get(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
  });
}

/** The image's layers as the host runs them: unpacked into `dir`. */
async function unpacked(ref: string, dir: string): Promise<Record<'vmlinux' | 'initrd' | 'rootfs', string> & { rootfsType: string }> {
  const { manifest } = await layout.resolve(ref);
  fs.mkdirSync(dir, { recursive: true });
  const out = { vmlinux: '', initrd: '', rootfs: '', rootfsType: '' };
  for (const l of manifest.layers) {
    const part = partOf(l.mediaType);
    if (!part) continue;
    out[part] = path.join(dir, part);
    if (!fs.existsSync(out[part])) await unpackLayer(layout.blobPath(l.digest), l.mediaType, out[part]);
    if (part === 'rootfs') out.rootfsType = plainMediaType(l.mediaType);
  }
  return out;
}

/** Paths inside an image's root filesystem (erofs or squashfs). */
async function rootfsPaths(ref: string): Promise<Set<string>> {
  const dir = fs.mkdtempSync(path.join(tmp, 'rootfs-'));
  try {
    const parts = await unpacked(ref, dir);
    if (parts.rootfsType === FLICK_ROOTFS_SQUASHFS) {
      const r = spawnSync('unsquashfs', ['-lc', '-d', '', parts.rootfs], { encoding: 'utf8', maxBuffer: 64 << 20 });
      return new Set(r.stdout.split('\n').filter(Boolean));
    }
    const tree = path.join(dir, 'tree');
    const r = spawnSync('fsck.erofs', [`--extract=${tree}`, parts.rootfs], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = new Set<string>();
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        out.add(`/${path.relative(tree, p)}`);
        if (e.isDirectory()) walk(p);
      }
    };
    walk(tree);
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('a node app with an npm dependency: ENV, WORKDIR, COPY --chown, .dockerignore, minimized far below its container image', async () => {
  const r = await build('node-npm', 'node-npm:1');
  assert.equal(r.minimization, 'traced', r.fallbackReason);
  assert.ok(r.sizeBytes < r.sourceImageBytes / 5, `microVM image ${r.sizeBytes} B vs container image ${r.sourceImageBytes} B`);
  const { manifest } = await layout.resolve('node-npm:1');
  assert.equal(manifest.artifactType, FLICK_ARTIFACT);
  assert.deepEqual(manifest.layers.map((l) => l.mediaType), [FLICK_KERNEL_XZ, FLICK_INITRD_XZ, FLICK_ROOTFS_EROFS_XZ]);
  const body = JSON.parse(await bootAndGet('node-npm:1', 256)) as Record<string, unknown>;
  assert.deepEqual(body, { greeting: 'hi from node', dep: '1m', owner: 1000, secret: false, cwd: '/srv/app' });
});

/** The product page's Dockerfile, byte for byte: a user's file needs no change. */
const PRODUCT_PAGE_DOCKERFILE = 'FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN npm ci --omit=dev\nCMD ["node","server.js"]\n';

test("the product page's Dockerfile, unchanged (FROM node:20-slim, no EXPOSE): the local base stands in, the traced run finds the port, the image answers", async () => {
  const example = path.join(PACKAGE_ROOT, 'examples', 'hello-node');
  assert.equal(fs.readFileSync(path.join(example, 'Dockerfile'), 'utf8'), PRODUCT_PAGE_DOCKERFILE);
  const lines: string[] = [];
  const r = await buildImage({ context: example, tag: 'hello-node:1', layout, tracer: qemuTraceRunner, progress: (l) => lines.push(l) });
  assert.ok(lines.some((l) => /FROM node:20-slim \(line 1\): .*local base from 'flick base build' stands in: Debian bookworm .*node v20/.test(l) || /FROM node:20-slim \(line 1\): pulled/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /ready \(port 8080 listens, answers HTTP\)/.test(l)), lines.join('\n'));
  assert.equal(r.minimization, 'traced', r.fallbackReason);
  assert.match(await bootAndGet('hello-node:1', 256, { port: 8080 }), /^hello from flick \(up \d+(ms|s|m)\)/, "the npm dependency ms formats the uptime (ms below 1 s, s below 1 min: a loaded machine boots slower)");
});

test('a TCP service that never speaks HTTP (Redis from apt, EXPOSE 6379): ready at its listen, minimized, and answers PING', async () => {
  const r = await build('redis', 'redis:1');
  assert.equal(r.minimization, 'traced', r.fallbackReason);
  assert.ok(r.sizeBytes < r.sourceImageBytes / 10, `microVM image ${r.sizeBytes} B vs container image ${r.sourceImageBytes} B`);
  assert.equal(await bootAndGet('redis:1', 128, { talk: redis('PING') }), '+PONG');
  const files = await rootfsPaths('redis:1');
  assert.ok(files.has('/usr/bin/redis-server') || files.has('/usr/bin/redis-check-rdb'), 'the server binary is kept');
  assert.ok(!files.has('/usr/bin/apt-get'));
});

test('HEALTHCHECK: an app that listens before it is healthy is not ready until its check passes in the guest', async () => {
  const lines: string[] = [];
  const r = await buildImage({ context: path.join(APPS, 'healthcheck'), tag: 'healthcheck:1', layout, tracer: qemuTraceRunner, progress: (l) => lines.push(l) });
  assert.equal(r.minimization, 'traced', r.fallbackReason);
  const info = await imageInfo(layout, await layout.resolve('healthcheck:1'));
  assert.deepEqual(info.config.healthcheck?.argv, ['test', '-f', '/tmp/ready']);
  assert.equal(info.config.healthcheck?.intervalMs, 5000);
  // The first request after readiness (what the controller waits for before routing) is already healthy.
  assert.equal(await bootAndGet('healthcheck:1', 256), 'ready\n');
});

test('a multi-stage C build into FROM scratch, run as ENTRYPOINT + CMD', async () => {
  const r = await build('c-scratch', 'c-scratch:1');
  assert.equal(r.minimization, 'traced');
  assert.equal(await bootAndGet('c-scratch:1'), 'hello-from-scratch\n');
  const files = await rootfsPaths('c-scratch:1');
  assert.ok(files.has('/server'));
  assert.ok(!files.has('/usr/bin/gcc'), 'the build stage must not leak into the image');
});

test('a Python web app with a shell-form CMD, USER nobody, ADD --chown and an ARG default: minimized, it keeps the standard library it imports', async () => {
  const r = await build('python-web', 'python-web:default');
  assert.equal(r.minimization, 'traced');
  const info = await imageInfo(layout, await layout.resolve('python-web:default'));
  assert.deepEqual(info.config.cmd, ['/bin/sh', '-c', 'cd /app && exec python3 app.py']);
  assert.equal(info.config.user, 'nobody');
  // The guest has no name service to ask at boot: the build resolved the name from the image's /etc/passwd.
  assert.deepEqual([info.config.uid, info.config.gid], [65534, 65534]);
  const year = new Date().getUTCFullYear();
  assert.equal(await bootAndGet('python-web:default'), `hello-default uid=65534 gid=65534 year=${year} motd_owner=65534\n`);
  const files = await rootfsPaths('python-web:default');
  assert.ok(files.has('/usr/lib/python3.11/socket.py'), 'an imported module (not ELF, found only by the trace) is kept');
  assert.ok(!files.has('/usr/bin/apt-get'), 'tools the app never runs are dropped');
});

test('--build-arg overrides an ARG default', async () => {
  await build('python-web', 'python-web:arg', { buildArgs: new Map([['GREETING', 'hello-from-build-arg']]) });
  const body = await bootAndGet('python-web:arg');
  assert.match(body, /^hello-from-build-arg uid=65534 gid=65534 /);
  const info = await imageInfo(layout, await layout.resolve('python-web:arg'));
  assert.ok(info.config.env.includes('GREETING=hello-from-build-arg'));
});

test('when the minimized image fails its boot check, the build says so and ships the full root filesystem', async () => {
  const lines: string[] = [];
  const r = await buildImage({
    context: path.join(APPS, 'python-web'),
    tag: 'python-web:fallback',
    layout,
    // The full tree is 139 MiB: zstd packs it in a third of xz's time, and the format is not what this test is about.
    format: 'squashfs-zstd',
    tracer: { trace: qemuTraceRunner.trace, check: async () => ({ kind: 'timeout', text: 'simulated: port 8080 never answered', output: '' }) },
    progress: (l) => lines.push(l),
  });
  assert.equal(r.minimization, 'full-fallback');
  assert.match(r.fallbackReason ?? '', /simulated: port 8080 never answered/);
  assert.ok(lines.some((l) => /falling back to the full root filesystem/.test(l)));
  const files = await rootfsPaths('python-web:fallback');
  assert.ok(files.has('/usr/bin/apt-get'));
  assert.match(await bootAndGet('python-web:fallback'), /^hello-default uid=65534 /);
});

// ---- bad input: the CLI, as a user runs it ----------------------------------

interface Outcome {
  status: number | null;
  stderr: string;
}

function flickBuild(context: string, dockerfile: string | undefined, extra: string[] = []): Outcome {
  const args = [path.join(PACKAGE_ROOT, 'bin', 'flick'), 'build', '-t', 'bad:1', ...extra];
  if (dockerfile !== undefined) {
    const file = path.join(tmp, `Dockerfile.${Math.random().toString(36).slice(2)}`);
    fs.writeFileSync(file, dockerfile);
    args.push('-f', file);
  }
  args.push(context);
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, FLICK_IMAGES_DIR: layout.dir } });
  return { status: r.status, stderr: r.stderr };
}

function buildahLeftovers(): string[] {
  const ctrs = spawnSync('buildah', ['--storage-driver', 'overlay', 'containers', '--format', '{{.ContainerName}} {{.ImageName}}'], { encoding: 'utf8' }).stdout;
  const imgs = spawnSync('buildah', ['--storage-driver', 'overlay', 'images', '--format', '{{.Name}}'], { encoding: 'utf8' }).stdout;
  return [...ctrs.split('\n'), ...imgs.split('\n')].filter((l) => l.includes('flick-build'));
}

const badContext = path.join(APPS, 'bad');
const badCases: { name: string; dockerfile?: string; context?: string; line?: number; expect: RegExp }[] = [
  { name: 'a syntax error', dockerfile: 'FROM localhost/flick/debian:bookworm\nRUNN echo hi\nCMD ["true"]\n', line: 2, expect: /unknown instruction/ },
  { name: 'a missing base image', dockerfile: 'FROM localhost/flick/no-such-base:1\nCMD ["true"]\n', line: 1, expect: /FROM localhost\/flick\/no-such-base:1/ },
  { name: 'no CMD or ENTRYPOINT', dockerfile: 'FROM scratch\nCOPY app.txt /app.txt\n', line: 1, expect: /no CMD or ENTRYPOINT/ },
  { name: 'no CMD or ENTRYPOINT in an image whose base sets none', dockerfile: 'FROM localhost/flick/debian:bookworm\nCOPY app.txt /app.txt\n', line: 1, expect: /no CMD or ENTRYPOINT/ },
  { name: 'COPY of a missing file', dockerfile: 'FROM localhost/flick/debian:bookworm\nWORKDIR /app\nCOPY missing.js ./\nCMD ["true"]\n', line: 3, expect: /COPY missing\.js/ },
  { name: 'a failing RUN step', dockerfile: 'FROM localhost/flick/debian:bookworm\nRUN echo about to fail && false\nCMD ["true"]\n', line: 2, expect: /RUN echo about to fail/ },
  { name: 'an empty context', dockerfile: 'FROM localhost/flick/debian:bookworm\nCMD ["true"]\n', context: 'empty', expect: /build context .* is empty/ },
];

test('an app that exits during the traced run: the build fails with its own output and says how to build anyway', async () => {
  const before = (await layout.list()).map((i) => i.ref);
  const r = flickBuild(path.join(APPS, 'exits'), undefined);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /exited during the traced run .*code 3/);
  assert.match(r.stderr, /config error: DATABASE_URL is not set/);
  assert.match(r.stderr, /--allow-unready/);
  assert.deepEqual((await layout.list()).map((i) => i.ref), before);
});

for (const c of badCases) {
  test(`bad input, ${c.name}: a clear error naming the line, a non-zero exit, no partial image`, async () => {
    const context = c.context === 'empty' ? fs.mkdtempSync(path.join(tmp, 'empty-')) : badContext;
    const before = (await layout.list()).map((i) => i.ref);
    const leftoversBefore = new Set(buildahLeftovers());
    const r = flickBuild(context, c.dockerfile);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, c.expect);
    if (c.line !== undefined) assert.match(r.stderr, new RegExp(`Dockerfile\\.[a-z0-9]+:${c.line}:`));
    assert.deepEqual((await layout.list()).map((i) => i.ref), before);
    // Compared with before, so another build running on the machine at the same time does not count.
    assert.deepEqual(buildahLeftovers().filter((l) => !leftoversBefore.has(l)), []);
  });
}
