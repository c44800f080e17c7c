// Component tests of push and pull (what `flick push`/`flick pull` do) against the
// real registry handler on port 0: round trip, skipping what the host has, and
// resuming a push that was cut off mid-blob.
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { HostClient } from '../cli/http-client.js';
import { TokenAuth } from '../daemon/auth.js';
import { createDaemonServer, type DaemonServer } from '../daemon/server.js';
import { createRegistryHandler } from './http-handler.js';
import { OciLayout } from './oci-layout.js';
import { Registry } from './registry.js';
import { tarOf, writeImage, writeIndex, writeLayoutIndex } from './testing.js';
import { pushImage, pullImage, type TransferEvent } from './transfer.js';

const TOKEN = 'transfer-test-token-0123456789abcdef0123';
let dir: string;
let daemon: DaemonServer;
let client: HostClient;
/** Bytes of PATCH bodies sent to the registry (by Content-Length): what a push really sent. */
let patchedBytes = 0;

before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-transfer-'));
  const registry = new Registry({ dataDir: path.join(dir, 'host') });
  await registry.init();
  const inner = createRegistryHandler(registry);
  const counting = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'PATCH') patchedBytes += Number(req.headers['content-length'] ?? 0);
    await inner(req, res);
  };
  daemon = createDaemonServer({ routes: [{ prefix: '/v2/', handler: counting }], auth: new TokenAuth(TOKEN) });
  const addr = await daemon.listen('127.0.0.1', 0);
  client = new HostClient({ url: `http://127.0.0.1:${addr.port}`, token: TOKEN });
});

after(async () => {
  await daemon?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

async function makeLayout(sub: string): Promise<OciLayout> {
  const layoutDir = path.join(dir, sub);
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  const amd = await writeImage(layoutDir, { layers: [{ data: await tarOf({ 'a.txt': 'a' }) }, { data: big }] });
  const arm = await writeImage(layoutDir, { layers: [{ data: await tarOf({ 'b.txt': 'b' }) }], architecture: 'arm64' });
  const index = await writeIndex(layoutDir, [{ ...amd, architecture: 'amd64' }, { ...arm, architecture: 'arm64' }]);
  await writeLayoutIndex(layoutDir, { 'app:v1': amd, 'multi:v1': index });
  return new OciLayout(layoutDir);
}

test('push then pull round-trips an image and an index; a second push skips every blob', async () => {
  const layout = await makeLayout('src1');
  const source = (await layout.find({ refName: 'app:v1' }))!;
  await pushImage({ client, layout, source, name: 'app', tag: 'v1', stateDir: path.join(dir, 'state'), chunkBytes: 64 * 1024 });
  const events: TransferEvent[] = [];
  await pushImage({ client, layout, source, name: 'app', tag: 'v1', stateDir: path.join(dir, 'state'), onEvent: (e) => events.push(e) });
  assert.deepEqual(new Set(events.filter((e) => e.kind !== 'manifest').map((e) => e.kind)), new Set(['skip']));

  const multi = (await layout.find({ refName: 'multi:v1' }))!;
  await pushImage({ client, layout, source: multi, name: 'multi', tag: 'v1', stateDir: path.join(dir, 'state') });

  const dest = new OciLayout(path.join(dir, 'dest1'));
  const pulled = await pullImage({ client, layout: dest, name: 'app', reference: 'v1', refName: 'app:v1' });
  assert.equal(pulled.digest, source.digest);
  const m = JSON.parse((await dest.readBlob(source.digest)).toString()) as { layers: Array<{ digest: string }> };
  for (const l of m.layers) assert.deepEqual(await dest.readBlob(l.digest), await layout.readBlob(l.digest));
  const pulledIndex = await pullImage({ client, layout: dest, name: 'multi', reference: 'v1', refName: 'multi:v1' });
  assert.equal(pulledIndex.digest, multi.digest);
  assert.deepEqual((await dest.refNames()).sort(), ['app:v1', 'multi:v1']);
});

test('an interrupted push resumes from the offset the registry has', async () => {
  const layout = await makeLayout('src2');
  const source = (await layout.find({ refName: 'app:v1' }))!;
  const stateDir = path.join(dir, 'state2');
  const chunkBytes = 64 * 1024;
  const abort = new AbortController();
  patchedBytes = 0;
  await assert.rejects(
    pushImage({
      client, layout, source, name: 'resume', tag: 'v1', stateDir, chunkBytes, signal: abort.signal,
      // Cut the push off after the second chunk of the big layer.
      onEvent: (e) => {
        if (e.kind === 'progress' && e.done >= 2 * chunkBytes) abort.abort();
      },
    }),
  );
  const firstTry = patchedBytes;
  assert.ok(firstTry >= 2 * chunkBytes && firstTry < 300_000, `first try sent ${firstTry} bytes`);
  assert.equal((await fsp.readdir(stateDir)).length, 1, 'the unfinished upload is remembered');
  patchedBytes = 0;
  await pushImage({ client, layout, source, name: 'resume', tag: 'v1', stateDir, chunkBytes });
  assert.ok(patchedBytes < 300_000, `the resumed push re-sent only the rest (${patchedBytes} bytes)`);
  assert.deepEqual(await fsp.readdir(stateDir), []);
  const dest = new OciLayout(path.join(dir, 'dest2'));
  assert.equal((await pullImage({ client, layout: dest, name: 'resume', reference: 'v1', refName: 'resume:v1' })).digest, source.digest);
});

test('a wrong token fails with UNAUTHORIZED and an unknown image with a *_UNKNOWN code', async () => {
  const bad = new HostClient({ url: client.url, token: 'wrong' });
  const dest = new OciLayout(path.join(dir, 'dest3'));
  await assert.rejects(pullImage({ client: bad, layout: dest, name: 'app', reference: 'v1', refName: 'app:v1' }), { code: 'UNAUTHORIZED' });
  await assert.rejects(pullImage({ client, layout: dest, name: 'app', reference: 'nope', refName: 'app:nope' }), { code: 'MANIFEST_UNKNOWN' });
  const down = new HostClient({ url: 'http://127.0.0.1:1', token: TOKEN });
  await assert.rejects(pullImage({ client: down, layout: dest, name: 'app', reference: 'v1', refName: 'app:v1' }), { code: 'UNAVAILABLE' });
});
