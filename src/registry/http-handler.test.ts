// Component tests: the registry handler behind flickd's server and token check,
// on a real socket (port 0) with a temp data dir, spoken to over plain HTTP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TokenAuth } from '../daemon/auth.js';
import { registryAccess } from '../daemon/main.js';
import { createDaemonServer, type DaemonServer } from '../daemon/server.js';
import { FLICK_ARTIFACT, FLICK_INITRD, FLICK_KERNEL, FLICK_ROOTFS_EROFS, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from '../image/media-types.js';
import { collectGarbage } from './gc.js';
import { createRegistryHandler } from './http-handler.js';
import { RegistryImageStore } from './image-store.js';
import { Registry } from './registry.js';
import { sha256 } from './testing.js';

const TOKEN = 'test-token-0123456789abcdef0123456789abcdef';
let dir: string;
let daemon: DaemonServer;
let registry: Registry;
let images: RegistryImageStore;
let base: string;

before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-registry-'));
  registry = new Registry({ dataDir: dir });
  await registry.init();
  images = new RegistryImageStore(registry, dir);
  daemon = createDaemonServer({
    routes: [{ prefix: '/v2/', handler: createRegistryHandler(registry), access: registryAccess(false) }],
    auth: new TokenAuth(TOKEN),
  });
  const addr = await daemon.listen('127.0.0.1', 0);
  base = `http://127.0.0.1:${addr.port}`;
});

after(async () => {
  await daemon?.close();
  await images?.settle();
  await fsp.rm(dir, { recursive: true, force: true });
});

function req(method: string, p: string, init: { headers?: Record<string, string>; body?: Buffer | string; auth?: boolean } = {}) {
  return fetch(`${base}${p}`, {
    method,
    headers: { ...(init.auth === false ? {} : { authorization: `Bearer ${TOKEN}` }), ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
}

async function upload(name: string, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const r = await req('POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, { body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 201, await r.text());
  return digest;
}

async function putManifest(name: string, ref: string, m: unknown, type = OCI_MANIFEST) {
  return req('PUT', `/v2/${name}/manifests/${ref}`, { body: JSON.stringify(m), headers: { 'content-type': type } });
}

function errorCode(body: unknown): string | undefined {
  return (body as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
}

test('base endpoint: 401 with a Basic challenge without the token; 200 with Bearer or Basic', async () => {
  const anon = await req('GET', '/v2/', { auth: false });
  assert.equal(anon.status, 401);
  assert.match(anon.headers.get('www-authenticate') ?? '', /^Basic realm=/);
  assert.equal(errorCode(await anon.json()), 'UNAUTHORIZED');
  const wrong = await req('GET', '/v2/', { auth: false, headers: { authorization: 'Bearer nope' } });
  assert.equal(wrong.status, 401);
  assert.equal((await req('GET', '/v2/')).status, 200);
  const basic = Buffer.from(`anyone:${TOKEN}`).toString('base64');
  const b = await req('GET', '/v2/', { auth: false, headers: { authorization: `Basic ${basic}` } });
  assert.equal(b.status, 200);
  assert.equal(b.headers.get('docker-distribution-api-version'), 'registry/2.0');
});

test('blob: monolithic upload, HEAD, GET with Range, digest mismatch leaves nothing', async () => {
  const data = Buffer.from('hello registry');
  const digest = await upload('t/blob', data);
  const head = await req('HEAD', `/v2/t/blob/blobs/${digest}`);
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(data.length));
  assert.equal(head.headers.get('docker-content-digest'), digest);
  const part = await req('GET', `/v2/t/blob/blobs/${digest}`, { headers: { range: 'bytes=6-13' } });
  assert.equal(part.status, 206);
  assert.equal(await part.text(), 'registry');
  assert.equal(part.headers.get('content-range'), `bytes 6-13/${data.length}`);
  const bad = await req('GET', `/v2/t/blob/blobs/${digest}`, { headers: { range: 'bytes=100-' } });
  assert.equal(bad.status, 416);

  const other = Buffer.from('not what the digest says');
  const claimed = sha256('something else');
  const r = await req('POST', `/v2/t/blob/blobs/uploads/?digest=${claimed}`, { body: other });
  assert.equal(r.status, 400);
  assert.equal(errorCode(await r.json()), 'DIGEST_INVALID');
  assert.equal((await req('HEAD', `/v2/t/blob/blobs/${claimed}`)).status, 404);
  assert.equal((await req('HEAD', `/v2/t/blob/blobs/${sha256(other)}`)).status, 404);
  assert.equal(fs.existsSync(registry.blobPath(claimed)), false);
  assert.equal(fs.existsSync(registry.blobPath(sha256(other))), false);
  assert.deepEqual(await fsp.readdir(registry.blobs.uploadsDir), []);
});

test('chunked upload: PATCH with Content-Range, out-of-order chunk 416, status, PUT with final chunk', async () => {
  const data = Buffer.from('0123456789abcdefghij');
  const post = await req('POST', '/v2/t/chunks/blobs/uploads/');
  assert.equal(post.status, 202);
  const loc = post.headers.get('location')!;
  assert.match(loc, /^\/v2\/t\/chunks\/blobs\/uploads\/[0-9a-f-]{36}$/);
  const p1 = await req('PATCH', loc, { body: data.subarray(0, 8), headers: { 'content-range': '0-7' } });
  assert.equal(p1.status, 202);
  assert.equal(p1.headers.get('range'), '0-7');
  const skip = await req('PATCH', loc, { body: data.subarray(10, 12), headers: { 'content-range': '10-11' } });
  assert.equal(skip.status, 416);
  const status = await req('GET', loc);
  assert.equal(status.status, 204);
  assert.equal(status.headers.get('range'), '0-7');
  const p2 = await req('PATCH', p1.headers.get('location')!, { body: data.subarray(8, 15), headers: { 'content-range': '8-14' } });
  assert.equal(p2.status, 202);
  const digest = sha256(data);
  const put = await req('PUT', `${loc}?digest=${digest}`, { body: data.subarray(15), headers: { 'content-range': '15-19' } });
  assert.equal(put.status, 201, await put.text());
  assert.equal(put.headers.get('location'), `/v2/t/chunks/blobs/${digest}`);
  assert.equal(await (await req('GET', `/v2/t/chunks/blobs/${digest}`)).text(), data.toString());
  assert.equal((await req('GET', loc)).status, 404);
});

test('upload cancel and cross-repository mount', async () => {
  const post = await req('POST', '/v2/t/cancel/blobs/uploads/');
  const loc = post.headers.get('location')!;
  assert.equal((await req('DELETE', loc)).status, 204);
  assert.equal(errorCode(await (await req('GET', loc)).json()), 'BLOB_UPLOAD_UNKNOWN');
  const digest = await upload('t/src', Buffer.from('shared layer'));
  const mount = await req('POST', `/v2/t/dst/blobs/uploads/?mount=${digest}&from=t/src`);
  assert.equal(mount.status, 201);
  assert.equal(mount.headers.get('docker-content-digest'), digest);
  assert.equal((await req('HEAD', `/v2/t/dst/blobs/${digest}`)).status, 200);
  const miss = await req('POST', `/v2/t/dst/blobs/uploads/?mount=${sha256('absent')}&from=t/src`);
  assert.equal(miss.status, 202, 'an impossible mount starts an ordinary upload');
});

test('manifests: refuse garbage, oversized, wrong digest and missing blobs; accept, tag, list, delete', async () => {
  const name = 't/man';
  const layer = await upload(name, Buffer.from('layer'));
  const cfg = Buffer.from('{}');
  const config = await upload(name, cfg);
  const garbage = await req('PUT', `/v2/${name}/manifests/v1`, { body: 'not json', headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(garbage.status, 400);
  assert.equal(errorCode(await garbage.json()), 'MANIFEST_INVALID');
  const shape = await putManifest(name, 'v1', { schemaVersion: 2, layers: 'x' });
  assert.equal(errorCode(await shape.json()), 'MANIFEST_INVALID');
  const huge = await req('PUT', `/v2/${name}/manifests/v1`, { body: Buffer.alloc(4 * 1024 * 1024 + 1, 32), headers: { 'content-type': OCI_MANIFEST } });
  assert.equal(huge.status, 413);
  const good = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: config, size: cfg.length }, layers: [{ mediaType: 'application/octet-stream', digest: layer, size: 5 }] };
  const missing = await putManifest(name, 'v1', { ...good, layers: [{ mediaType: 'x/y', digest: sha256('nope'), size: 4 }] });
  assert.equal(missing.status, 400);
  assert.equal(errorCode(await missing.json()), 'MANIFEST_BLOB_UNKNOWN');
  const byWrongDigest = await putManifest(name, sha256('other'), good);
  assert.equal(errorCode(await byWrongDigest.json()), 'DIGEST_INVALID');

  const put = await putManifest(name, 'v1', good);
  assert.equal(put.status, 201);
  const digest = put.headers.get('docker-content-digest')!;
  assert.equal(digest, sha256(JSON.stringify(good)));
  for (const ref of ['v1', digest]) {
    const get = await req('GET', `/v2/${name}/manifests/${ref}`);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('content-type'), OCI_MANIFEST);
    assert.equal(await get.text(), JSON.stringify(good), 'exact bytes come back');
  }
  for (const t of ['b', 'a', 'c', 'v2']) assert.equal((await putManifest(name, t, good)).status, 201);
  const page = await req('GET', `/v2/${name}/tags/list?n=2`);
  assert.deepEqual(await page.json(), { name, tags: ['a', 'b'] });
  assert.equal(page.headers.get('link'), `</v2/${name}/tags/list?n=2&last=b>; rel="next"`);
  assert.deepEqual(await (await req('GET', `/v2/${name}/tags/list?n=2&last=b`)).json(), { name, tags: ['c', 'v1'] });
  assert.deepEqual(((await (await req("GET", `/v2/${name}/tags/list?n=0`)).json()) as { tags: string[] }).tags, []);

  const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest, size: JSON.stringify(good).length }] };
  assert.equal((await putManifest(name, 'multi', index, OCI_INDEX)).status, 201);
  const badIndex = { ...index, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256('no manifest'), size: 2 }] };
  assert.equal(errorCode(await (await putManifest(name, 'multi2', badIndex, OCI_INDEX)).json()), 'MANIFEST_BLOB_UNKNOWN');

  assert.equal((await req('DELETE', `/v2/${name}/manifests/a`)).status, 202);
  assert.equal((await req('GET', `/v2/${name}/manifests/a`)).status, 404);
  assert.equal((await req('GET', `/v2/${name}/manifests/b`)).status, 200);
});

test('referrers: a manifest with a subject is listed, with OCI-Subject on its PUT', async () => {
  const name = 't/ref';
  const cfg = await upload(name, Buffer.from('{}'));
  const subject = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: cfg, size: 2 }, layers: [] };
  const s = await putManifest(name, 'v1', subject);
  const subjectDigest = s.headers.get('docker-content-digest')!;
  const sig = { ...subject, artifactType: 'application/vnd.example.sig', subject: { mediaType: OCI_MANIFEST, digest: subjectDigest, size: JSON.stringify(subject).length } };
  const r = await putManifest(name, sha256(JSON.stringify(sig)), sig);
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('oci-subject'), subjectDigest);
  const list = (await (await req('GET', `/v2/${name}/referrers/${subjectDigest}`)).json()) as { manifests: Array<{ artifactType: string }> };
  assert.deepEqual(list.manifests.map((m) => m.artifactType), ['application/vnd.example.sig']);
});

test('errors: unknown repository, bad names, path traversal, unknown endpoint', async () => {
  const unknown = await req('GET', '/v2/no/such/manifests/latest');
  assert.equal(unknown.status, 404);
  const body = (await unknown.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]!.code, 'NAME_UNKNOWN');
  assert.equal(typeof body.errors[0]!.message, 'string');
  assert.equal(errorCode(await (await req('GET', '/v2/no/such/tags/list')).json()), 'NAME_UNKNOWN');
  for (const p of ['/v2/UPPER/tags/list', '/v2/a/..%2f../tags/list', '/v2/caf%C3%A9/tags/list']) {
    const r = await req('GET', p);
    assert.equal(r.status, 400, p);
    assert.equal(errorCode(await r.json()), 'NAME_INVALID', p);
  }
  // A client normalizes "..", but a raw request can carry it: it must never reach the file system.
  const raw = await new Promise<number>((resolve, reject) => {
    import('node:http').then(({ request }) => {
      const r = request({ host: '127.0.0.1', port: new URL(base).port, path: '/v2/a/../../../../etc/blobs/uploads/', method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      r.on('error', reject);
      r.end();
    }, reject);
  });
  assert.equal(raw, 400);
  assert.equal((await req('GET', '/v2/t/man/nothing/here')).status, 404);
});

test('a Flick image is laid out as files at push time and resolved by tag or digest', async () => {
  const name = 'apps/hello';
  const kernel = Buffer.from('ELF kernel');
  const initrd = Buffer.from('cpio');
  const rootfs = Buffer.from('erofs image');
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/app'], ExposedPorts: { '8080/tcp': {} } } }));
  const layers = [
    { mediaType: FLICK_KERNEL, digest: await upload(name, kernel), size: kernel.length },
    { mediaType: FLICK_INITRD, digest: await upload(name, initrd), size: initrd.length },
    { mediaType: FLICK_ROOTFS_EROFS, digest: await upload(name, rootfs), size: rootfs.length },
  ];
  const m = { schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: FLICK_ARTIFACT, config: { mediaType: OCI_CONFIG, digest: await upload(name, cfg), size: cfg.length }, layers };
  const put = await putManifest(name, 'v1', m);
  assert.equal(put.status, 201);
  const digest = put.headers.get('docker-content-digest')!;
  const img = await images.resolve('apps/hello:v1');
  assert.equal(img.digest, digest);
  assert.deepEqual(img.config.config?.Cmd, ['/app']);
  assert.equal(await fsp.readFile(img.paths.rootfs, 'utf8'), 'erofs image');
  assert.equal(await fsp.readFile(img.paths.vmlinux, 'utf8'), 'ELF kernel');
  assert.equal(fs.statSync(img.paths.rootfs).ino, fs.statSync(registry.blobPath(layers[2]!.digest)).ino, 'hard link, not a copy');
  assert.equal((await images.resolve(`apps/hello@${digest}`)).paths.initrd, img.paths.initrd);
  assert.deepEqual((await images.list()).map((i) => i.ref), ['apps/hello:v1']);
  await assert.rejects(images.resolve('apps/hello:nope'), { code: 'IMAGE_NOT_FOUND' });
  await assert.rejects(images.resolve('t/man:v1'), { code: 'IMAGE_INVALID' });
});

test('garbage collection removes unreferenced blobs past their grace, keeps referenced and recent ones', async () => {
  const name = 't/gc';
  const orphan = await upload(name, Buffer.from('orphan blob'));
  const kept = await upload(name, Buffer.from('{"kept":true}'));
  const m = { schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: kept, size: 13 }, layers: [] };
  assert.equal((await putManifest(name, 'v1', m)).status, 201);
  const recent = await collectGarbage(registry, { imagesDir: images.imagesDir });
  assert.equal(recent.blobsDeleted, 0, 'a blob just uploaded waits for its manifest');
  assert.equal(fs.existsSync(registry.blobPath(orphan)), true);
  const later = await collectGarbage(registry, { imagesDir: images.imagesDir, now: Date.now() + 2 * 60 * 60 * 1000 });
  assert.ok(later.blobsDeleted >= 1);
  assert.equal(fs.existsSync(registry.blobPath(orphan)), false);
  assert.equal((await req('HEAD', `/v2/${name}/blobs/${orphan}`)).status, 404);
  assert.equal((await req('HEAD', `/v2/${name}/blobs/${kept}`)).status, 200);
  assert.equal((await req('GET', `/v2/${name}/manifests/v1`)).status, 200);
  assert.equal((await images.resolve('apps/hello:v1')).name, 'apps/hello', 'a prepared Flick image survives');
});
