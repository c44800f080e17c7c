// Integration tests: a real flickd (bin/flickd, child process, free port, temp
// data dir) spoken to by real OCI clients from Debian (skopeo, buildah, podman)
// and by `flick push`/`flick pull`.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../src/paths.js';
import { sha256, tarOf, writeImage, writeIndex, writeLayoutIndex } from '../src/registry/testing.js';

const run = promisify(execFile);
let dir: string;
let flickd: ChildProcess | undefined;
let host: string;
let token: string;

before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-registry-it-'));
  const proc = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin/flickd'), '--data-dir', path.join(dir, 'data'), '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  flickd = proc;
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  host = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = out.match(/listening on http:\/\/(127\.0\.0\.1:\d+)/);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`flickd exited with ${code}: ${stderr}`)));
  });
  token = (await fsp.readFile(path.join(dir, 'data', 'token'), 'utf8')).trim();
});

after(async () => {
  if (flickd && flickd.exitCode === null) {
    const exited = new Promise((r) => flickd!.once('exit', r));
    flickd.kill('SIGTERM');
    await exited;
  }
  await fsp.rm(dir, { recursive: true, force: true });
});

const creds = () => `flick:${token}`;
const engine = (tool: 'buildah' | 'podman') => [`--root=${path.join(dir, tool, 'root')}`, `--runroot=${path.join(dir, tool, 'run')}`, '--storage-driver=vfs'];

async function layoutWithImages(): Promise<string> {
  const layout = path.join(dir, 'layout');
  const amd = await writeImage(layout, {
    layers: [{ data: await tarOf({ 'hello.txt': 'hello\n' }) }, { data: await tarOf({ 'etc/app.conf': 'x=1\n', 'bin/app': 'app' }) }, { data: await tarOf({ 'data/big': Buffer.alloc(200_000, 7) }) }],
  });
  const arm = await writeImage(layout, { layers: [{ data: await tarOf({ 'arm.txt': 'arm\n' }) }], architecture: 'arm64' });
  const index = await writeIndex(layout, [{ ...amd, architecture: 'amd64' }, { ...arm, architecture: 'arm64' }]);
  await writeLayoutIndex(layout, { multi: amd, both: index });
  return layout;
}

test('flickd writes its token with mode 0600 in a 0700 data dir and SIGTERM is graceful', async () => {
  assert.equal(fs.statSync(path.join(dir, 'data', 'token')).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.join(dir, 'data')).mode & 0o777, 0o700);
  const r = await fetch(`http://${host}/v2/`);
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate') ?? '', /^Basic/);
});

test('skopeo copies a multi-layer image and an index in, and back out', async () => {
  const layout = await layoutWithImages();
  await run('skopeo', ['copy', '--dest-tls-verify=false', `--dest-creds=${creds()}`, `oci:${layout}:multi`, `docker://${host}/it/multi:v1`]);
  await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', `--dest-creds=${creds()}`, `oci:${layout}:both`, `docker://${host}/it/both:v1`]);
  const out = path.join(dir, 'out');
  await run('skopeo', ['copy', '--src-tls-verify=false', `--src-creds=${creds()}`, `docker://${host}/it/multi:v1`, `oci:${out}:multi`]);
  await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `--src-creds=${creds()}`, `docker://${host}/it/both:v1`, `oci:${out}:both`]);
  const index = JSON.parse(await fsp.readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  const byRef = (i: typeof index, ref: string) => i.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === ref)?.digest;
  const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `--creds=${creds()}`, `docker://${host}/it/both:v1`]);
  assert.equal(byRef(index, 'both'), sha256(raw.stdout), 'the index comes back byte for byte');
  assert.equal((JSON.parse(raw.stdout) as { manifests: unknown[] }).manifests.length, 2);
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `--creds=${creds()}`, `docker://${host}/it/multi:v1`]);
  assert.equal((JSON.parse(stdout) as { layers: unknown[] }).layers.length, 3);
});

test('skopeo without credentials is refused', async () => {
  const layout = path.join(dir, 'layout');
  await assert.rejects(run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:multi`, `docker://${host}/it/nocreds:v1`]));
  const r = await fetch(`http://${host}/v2/it/nocreds/tags/list`);
  assert.equal(r.status, 401);
});

test('buildah builds FROM an image in the registry and pushes the result; podman pulls it', async () => {
  const ctx = path.join(dir, 'ctx');
  await fsp.mkdir(ctx, { recursive: true });
  await fsp.writeFile(path.join(ctx, 'added.txt'), 'added by buildah\n');
  await fsp.writeFile(path.join(ctx, 'Containerfile'), `FROM ${host}/it/multi:v1\nCOPY added.txt /added.txt\n`);
  await run('buildah', [...engine('buildah'), 'build', '--isolation=chroot', '--tls-verify=false', `--creds=${creds()}`, '-t', 'flick-it-built', ctx]);
  await run('buildah', [...engine('buildah'), 'push', '--tls-verify=false', `--creds=${creds()}`, 'flick-it-built', `docker://${host}/it/built:latest`]);
  await run('podman', [...engine('podman'), 'pull', '--tls-verify=false', `--creds=${creds()}`, `${host}/it/built:latest`]);
  const { stdout } = await run('podman', [...engine('podman'), 'image', 'inspect', '--format', '{{len .RootFS.Layers}}', `${host}/it/built:latest`]);
  assert.equal(stdout.trim(), '4', 'three base layers and the COPY');
});

test('a digest mismatch is refused with DIGEST_INVALID and leaves no blob', async () => {
  const data = Buffer.from('payload');
  const wrong = sha256('another payload');
  const r = await fetch(`http://${host}/v2/it/bad/blobs/uploads/?digest=${wrong}`, { method: 'POST', body: data, headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 400);
  assert.equal(((await r.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'DIGEST_INVALID');
  const blobs = path.join(dir, 'data', 'registry', 'blobs', 'sha256');
  assert.equal(fs.existsSync(path.join(blobs, wrong.slice(7))), false);
  assert.equal(fs.existsSync(path.join(blobs, sha256(data).slice(7))), false);
});

test('flick push and flick pull round-trip an image through the host', async () => {
  const env = { ...process.env, FLICK_HOST: `http://${host}`, FLICK_TOKEN: token, FLICK_IMAGES_DIR: path.join(dir, 'cli-src'), XDG_STATE_HOME: path.join(dir, 'state'), XDG_CONFIG_HOME: path.join(dir, 'config') };
  const src = env.FLICK_IMAGES_DIR;
  const img = await writeImage(src, { layers: [{ data: await tarOf({ 'app.txt': 'cli\n' }) }] });
  await writeLayoutIndex(src, { 'cli/app:v1': img });
  const flick = path.join(PACKAGE_ROOT, 'bin/flick');
  const pushed = await run(process.execPath, [flick, 'push', 'cli/app:v1'], { env });
  assert.equal(pushed.stdout.trim(), `cli/app:v1@${img.digest}`);
  const again = await run(process.execPath, [flick, 'push', 'cli/app:v1'], { env });
  assert.match(again.stderr, /exists/);
  const dest = path.join(dir, 'cli-dest');
  const pulled = await run(process.execPath, [flick, 'pull', 'cli/app:v1'], { env: { ...env, FLICK_IMAGES_DIR: dest } });
  assert.equal(pulled.stdout.trim(), `cli/app:v1@${img.digest}`);
  assert.deepEqual(await fsp.readFile(path.join(dest, 'blobs', 'sha256', img.digest.slice(7))), img.manifest);
  await assert.rejects(run(process.execPath, [flick, 'pull', 'cli/app:nope'], { env: { ...env, FLICK_IMAGES_DIR: dest } }), (err: { code: number }) => err.code === 66);
  await assert.rejects(run(process.execPath, [flick, 'push', 'cli/app:v1'], { env: { ...env, FLICK_TOKEN: 'wrong' } }), (err: { code: number }) => err.code === 77);
});
