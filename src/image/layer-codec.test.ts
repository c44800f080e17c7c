// Compressed layers round-trip through the real xz: what a host unpacks is the file that was packed.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { compressFile, isCompressed, partOf, plainMediaType, unpackLayer } from './layer-codec.js';
import { FLICK_KERNEL, FLICK_KERNEL_XZ, FLICK_ROOTFS_EROFS, FLICK_ROOTFS_EROFS_XZ, FLICK_ROOTFS_SQUASHFS } from './media-types.js';

test('compressed media types name the part they unpack to; plain ones are read as they are', () => {
  assert.equal(plainMediaType(FLICK_ROOTFS_EROFS_XZ), FLICK_ROOTFS_EROFS);
  assert.equal(plainMediaType(FLICK_ROOTFS_SQUASHFS), FLICK_ROOTFS_SQUASHFS);
  assert.ok(isCompressed(FLICK_KERNEL_XZ) && !isCompressed(FLICK_KERNEL));
  assert.deepEqual([FLICK_KERNEL_XZ, FLICK_KERNEL, FLICK_ROOTFS_EROFS_XZ, 'application/json'].map(partOf), ['vmlinux', 'vmlinux', 'rootfs', undefined]);
});

test('a layer compressed with xz unpacks to the same bytes, smaller in between; a plain one is linked', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-codec-test-'));
  try {
    const src = path.join(dir, 'rootfs');
    fs.writeFileSync(src, Buffer.concat([crypto.randomBytes(1000), Buffer.alloc(1 << 20)]));
    await compressFile(src, `${src}.xz`, { level: '6', x86: true });
    assert.ok(fs.statSync(`${src}.xz`).size < 10_000);
    await unpackLayer(`${src}.xz`, FLICK_ROOTFS_EROFS_XZ, path.join(dir, 'out'));
    assert.ok(fs.readFileSync(path.join(dir, 'out')).equals(fs.readFileSync(src)));
    await unpackLayer(src, FLICK_ROOTFS_EROFS, path.join(dir, 'plain'));
    assert.equal(fs.statSync(path.join(dir, 'plain')).ino, fs.statSync(src).ino);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('partial')), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
