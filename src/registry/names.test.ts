import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDigest, isRepositoryName, isTag, parseImageReference, parseManifestReference } from './names.js';

test('repository names follow the spec regex and refuse paths that escape', () => {
  const table: Array<[string, boolean]> = [
    ['app', true],
    ['library/ubuntu', true],
    ['a.b_c__d--e/f-g', true],
    ['a/b/c/d', true],
    ['', false],
    ['..', false],
    ['../etc', false],
    ['a/../b', false],
    ['/abs', false],
    ['a//b', false],
    ['a/', false],
    ['UPPER', false],
    ['a_', false],
    ['a___b', false],
    ['caf\u00e9', false],
    ['a%2e%2e', false],
    ['_layers', false],
    ['x'.repeat(256), false],
  ];
  for (const [name, ok] of table) assert.equal(isRepositoryName(name), ok, name);
});

test('tags and digests', () => {
  assert.equal(isTag('latest'), true);
  assert.equal(isTag('v1.2.3-rc_1'), true);
  assert.equal(isTag('_x'), true);
  assert.equal(isTag('.hidden'), false);
  assert.equal(isTag('-x'), false);
  assert.equal(isTag('a'.repeat(128)), true);
  assert.equal(isTag('a'.repeat(129)), false);
  assert.equal(isTag('../x'), false);
  assert.equal(isDigest(`sha256:${'a'.repeat(64)}`), true);
  assert.equal(isDigest(`sha256:${'A'.repeat(64)}`), false);
  assert.equal(isDigest(`sha256:${'a'.repeat(63)}`), false);
  assert.equal(isDigest(`md5:${'a'.repeat(32)}`), false);
  assert.equal(isDigest(`sha512:${'b'.repeat(128)}`), true);
});

test('manifest references are a tag or a digest, nothing else', () => {
  assert.deepEqual(parseManifestReference('v1'), { kind: 'tag', tag: 'v1' });
  const d = `sha256:${'c'.repeat(64)}`;
  assert.deepEqual(parseManifestReference(d), { kind: 'digest', digest: d });
  assert.equal(parseManifestReference('sha256:zz'), undefined);
  assert.equal(parseManifestReference('..'), undefined);
});

test('image references as users type them', () => {
  const d = `sha256:${'d'.repeat(64)}`;
  assert.deepEqual(parseImageReference('app'), { name: 'app', tag: 'latest' });
  assert.deepEqual(parseImageReference('team/app:v2'), { name: 'team/app', tag: 'v2' });
  assert.deepEqual(parseImageReference(`app@${d}`), { name: 'app', digest: d });
  assert.deepEqual(parseImageReference(`app:v1@${d}`), { name: 'app', tag: 'v1', digest: d });
  assert.equal(parseImageReference('App:v1'), undefined);
  assert.equal(parseImageReference('app:'), undefined);
  assert.equal(parseImageReference('app@sha256:1'), undefined);
});
