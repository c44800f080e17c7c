import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ImageError } from './image-error.js';
import { FLICK_ARTIFACT, FLICK_KERNEL, OCI_CONFIG, OCI_MANIFEST } from './media-types.js';
import { normalizeRef, OciLayout } from './oci-layout.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-layout-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function addImage(layout: OciLayout, ref: string, payload: string) {
  const file = path.join(tmp, `layer-${payload}`);
  fs.writeFileSync(file, payload);
  const layer = await layout.addFile(file, FLICK_KERNEL);
  const config = await layout.addJson({ payload }, OCI_CONFIG);
  const manifest = await layout.addJson({ schemaVersion: 2, mediaType: OCI_MANIFEST, artifactType: FLICK_ARTIFACT, config, layers: [layer] }, OCI_MANIFEST);
  await layout.tag(ref, manifest);
  return { layer, manifest };
}

test('an image appears when tagged; re-tagging replaces it; blobs are content-addressed', async () => {
  const layout = new OciLayout(path.join(tmp, 'a'));
  assert.deepEqual(await layout.list(), []);
  const one = await addImage(layout, 'app:1', 'one');
  assert.equal(fs.readFileSync(layout.blobPath(one.layer.digest), 'utf8'), 'one');
  assert.equal(one.layer.size, 3);
  await addImage(layout, 'app:latest', 'two');
  const three = await addImage(layout, 'app:1', 'three');
  const list = await layout.list();
  assert.deepEqual(list.map((i) => i.ref).sort(), ['app:1', 'app:latest']);
  assert.equal((await layout.resolve('app:1')).digest, three.manifest.digest);
  assert.equal((await layout.resolve('app')).ref, 'app:latest');
  assert.equal((await layout.resolve(three.manifest.digest.slice(7, 19))).ref, 'app:1');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(layout.dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
});

test('concurrent tags all land in index.json', async () => {
  const layout = new OciLayout(path.join(tmp, 'b'));
  await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => addImage(layout, `img-${n}:1`, n)));
  assert.equal((await layout.list()).length, 5);
});

test('unknown images and bad names are user errors', async () => {
  const layout = new OciLayout(path.join(tmp, 'c'));
  await assert.rejects(layout.resolve('nope:1'), (e: ImageError) => e.code === 'IMAGE_NOT_FOUND' && e.kind === 'user');
  assert.equal(normalizeRef('hello'), 'hello:latest');
  assert.equal(normalizeRef('team/app:v1.2'), 'team/app:v1.2');
  for (const bad of ['Hello', 'a:b:c', '', 'app:', '-app']) assert.throws(() => normalizeRef(bad), (e: ImageError) => e.code === 'INVALID_REFERENCE');
});
