import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMountFlag, parseVolumeSize, validateMounts, validateVolumeName } from './names.js';
import { VolumeError } from './volume-error.js';

const invalid = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof VolumeError && e.code === 'VOLUME_INVALID' && re.test(e.message));

test('sizes: binary units, bytes, rounded up to a MiB; bad ones say what to give', () => {
  for (const [text, bytes] of [
    ['1G', 2 ** 30],
    ['1GiB', 2 ** 30],
    ['1gb', 2 ** 30],
    ['512M', 512 * 2 ** 20],
    ['1.5G', 1.5 * 2 ** 30],
    ['16777216', 16 * 2 ** 20],
    ['20000000', 20 * 2 ** 20],
    ['1T', 2 ** 40],
  ] as const) {
    assert.equal(parseVolumeSize(text), bytes, text);
  }
  invalid(() => parseVolumeSize('big'), /"big" is not a size: give a size such as 1G/);
  invalid(() => parseVolumeSize('1M'), /too small/);
  invalid(() => parseVolumeSize('2T'), /too large/);
  invalid(() => parseVolumeSize('-1G'), /not a size/);
  invalid(() => parseVolumeSize(''), /not a size/);
});

test('names leave no room for traversal', () => {
  assert.equal(validateVolumeName('pgdata'), 'pgdata');
  for (const bad of ['../etc', '..', '.layers', 'a/b', 'A', '-x', 'x-', '', 'a'.repeat(64), 'a b', 'a\0b']) invalid(() => validateVolumeName(bad), /volume name .* is not valid/);
});

test('-v NAME:/path[:ro]', () => {
  assert.deepEqual(parseMountFlag('pgdata:/data'), { name: 'pgdata', path: '/data', readOnly: false });
  assert.deepEqual(parseMountFlag('pgdata:/var/lib/pg/:ro'), { name: 'pgdata', path: '/var/lib/pg', readOnly: true });
  assert.deepEqual(parseMountFlag('pgdata:/data:rw'), { name: 'pgdata', path: '/data', readOnly: false });
  invalid(() => parseMountFlag('pgdata'), /is not NAME:\/path/);
  invalid(() => parseMountFlag('pgdata:/data:rx'), /is not NAME:\/path/);
  invalid(() => parseMountFlag('pgdata:data'), /is not absolute/);
  invalid(() => parseMountFlag('pgdata:/a/../etc'), /is not allowed/);
  invalid(() => parseMountFlag('pgdata:/'), /system folder/);
  invalid(() => parseMountFlag('pgdata:/proc/x'), /system folder/);
  invalid(() => parseMountFlag('../x:/data'), /volume name/);
  invalid(() => validateMounts([parseMountFlag('a:/data'), parseMountFlag('a:/other')]), /volume "a" is mounted twice/);
  invalid(() => validateMounts([parseMountFlag('a:/data'), parseMountFlag('b:/data')]), /path \/data is mounted twice/);
});
