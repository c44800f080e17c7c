import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { LimitError } from '../limits/limits.js';
import { backingChain } from './disk-file.js';
import { VolumeManager } from './volume-manager.js';
import { VolumeError } from './volume-error.js';

// Real mkfs.ext4 and qemu-img on a temp folder: each takes a few ms.
const made: string[] = [];
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
function manager(opts: { free?: number } = {}): VolumeManager {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-vol-'));
  made.push(dataDir);
  const free = opts.free;
  return new VolumeManager({ dataDir, ...(free === undefined ? {} : { diskSpace: () => ({ freeBytes: free, totalBytes: 2 ** 40 }) }) });
}
const code = (c: string) => (e: unknown) => e instanceof VolumeError && e.code === c;
const entries = (m: VolumeManager) => fs.readdirSync(m.root).filter((n) => !n.startsWith('.')).concat(fs.readdirSync(path.join(m.root, '.tmp')).map((n) => `.tmp/${n}`));

test('create: a sparse qcow2 with ext4; ls, get, rm', async () => {
  const m = manager();
  const v = await m.create('pgdata', 2 ** 30);
  assert.equal(v.state, 'available');
  assert.equal(v.sizeBytes, 2 ** 30);
  assert.ok(v.allocatedBytes < 4 * 2 ** 20, `${v.allocatedBytes} bytes on disk for 1 GiB`);
  assert.deepEqual(m.list().map((x) => x.name), ['pgdata']);
  await assert.rejects(m.create('pgdata', 2 ** 30), code('VOLUME_EXISTS'));
  await m.rm('pgdata');
  assert.deepEqual(m.list(), []);
  await assert.rejects(m.rm('pgdata'), code('VOLUME_NOT_FOUND'));
  assert.throws(() => m.get('../x'), code('VOLUME_INVALID'));
});

test('one writer: a second attach is refused, readers share, rm waits for detach', async () => {
  const m = manager();
  await m.create('data', 64 * 2 ** 20);
  const [a] = await m.attach('i1', [{ name: 'data', path: '/data', readOnly: false }]);
  assert.equal(a!.file, m.get('data').file);
  assert.equal(m.get('data').state, 'attached');
  await assert.rejects(m.attach('i2', [{ name: 'data', path: '/data', readOnly: true }]), (e: unknown) => code('VOLUME_IN_USE')(e) && /attached to instance i1: a volume has one writer/.test((e as Error).message));
  await m.attach('i1', [{ name: 'data', path: '/data', readOnly: false }]); // again: no-op
  await assert.rejects(m.rm('data'), code('VOLUME_IN_USE'));
  await m.detach('i1');
  await m.attach('r1', [{ name: 'data', path: '/data', readOnly: true }]);
  await m.attach('r2', [{ name: 'data', path: '/d', readOnly: true }]);
  await assert.rejects(m.attach('w', [{ name: 'data', path: '/data', readOnly: false }]), code('VOLUME_IN_USE'));
  // all or none: the unknown second volume leaves the first unclaimed
  await m.sweep(new Set());
  await assert.rejects(m.attach('i3', [{ name: 'data', path: '/data', readOnly: false }, { name: 'nope', path: '/x', readOnly: false }]), code('VOLUME_NOT_FOUND'));
  assert.equal(m.get('data').state, 'available');
});

test('clone: copy-on-write through a shared layer, a few hundred KiB; layers go with the last head', async () => {
  const m = manager();
  await m.create('src', 2 ** 30);
  const c = await m.clone('src', 'copy');
  assert.equal(c.clonedFrom, 'src');
  assert.ok(c.allocatedBytes < 512 * 1024, `clone takes ${c.allocatedBytes} bytes`);
  const [srcChain, copyChain] = [await backingChain(m.get('src').file), await backingChain(c.file)];
  assert.equal(srcChain.length, 2);
  assert.equal(srcChain[1], copyChain[1]);
  await m.attach('i1', [{ name: 'src', path: '/d', readOnly: false }]);
  await assert.rejects(m.clone('src', 'again'), code('VOLUME_IN_USE'));
  await m.clone('src', 'again', () => false); // held by a VM with no process: allowed
  await m.detach('i1');
  await m.rm('src');
  await m.rm('copy');
  assert.equal(fs.readdirSync(path.join(m.root, '.layers')).length, 2, 'the layers "again" reads through stay');
  await m.rm('again');
  assert.deepEqual(fs.readdirSync(path.join(m.root, '.layers')), []);
});

test('copy: a whole head (a fork of a running VM) reads through the same layers and stays independent', async () => {
  const m = manager();
  await m.create('base', 64 * 2 ** 20);
  await m.clone('base', 'src');
  await m.attach('i1', [{ name: 'src', path: '/d', readOnly: false }]);
  const c = await m.copy('src', 'forked');
  assert.equal(c.clonedFrom, 'src');
  assert.equal(c.state, 'available', 'the copy is nobody\'s until an instance claims it');
  assert.notEqual(c.id, m.get('src').id);
  const [srcChain, copyChain] = [await backingChain(m.get('src').file), await backingChain(c.file)];
  assert.equal(copyChain.length, srcChain.length);
  assert.equal(copyChain[1], srcChain[1], 'the frozen layer is shared, not copied');
  assert.ok(m.has('forked') && !m.has('nope'));
  await assert.rejects(m.copy('src', 'forked'), code('VOLUME_EXISTS'));
  await assert.rejects(m.copy('nope', 'x'), code('VOLUME_NOT_FOUND'));
  await m.detach('i1');
  await m.rm('src');
  await m.rm('base');
  assert.ok(fs.readdirSync(path.join(m.root, '.layers')).length >= 1, 'the copy still reads through its layer');
  await m.rm('forked');
  assert.deepEqual(fs.readdirSync(path.join(m.root, '.layers')), []);
  assert.deepEqual(entries(m), []);
});

test('freeze + branch: one frozen layer, any number of branches over it, one level deep each', async () => {
  const m = manager();
  await m.create('tpl', 2 ** 30);
  const layer = await m.freeze('tpl');
  const branches = await Promise.all(['b1', 'b2', 'b3'].map((n) => m.branch('tpl', layer, n)));
  for (const b of branches) {
    assert.ok(b.allocatedBytes < 512 * 1024, `a branch takes ${b.allocatedBytes} bytes`);
    assert.deepEqual(await backingChain(b.file), [b.file, layer]);
  }
  assert.deepEqual(await backingChain(m.get('tpl').file), [m.get('tpl').file, layer]);
  await assert.rejects(m.branch('tpl', layer, 'b1'), code('VOLUME_EXISTS'));
  await assert.rejects(m.branch('tpl', '/etc/passwd', 'b4'), code('VOLUME_FAILED'));
  await m.attach('i1', [{ name: 'tpl', path: '/d', readOnly: false }]);
  await assert.rejects(m.freeze('tpl'), code('VOLUME_IN_USE'));
  await m.detach('i1');
  // A stray layer (a crash mid-clone) is not a rm's business (it looks only at the layers the removed
  // head read through, and stops once it sees them in use); the sweep at start takes it.
  fs.writeFileSync(path.join(m.root, '.layers', 'stray.qcow2'), '');
  await m.rm('b1');
  assert.deepEqual(fs.readdirSync(path.join(m.root, '.layers')).sort(), [path.basename(layer), 'stray.qcow2'].sort());
  for (const n of ['tpl', 'b2', 'b3']) await m.rm(n);
  assert.deepEqual(fs.readdirSync(path.join(m.root, '.layers')), ['stray.qcow2']);
  await m.sweep(new Set());
  assert.deepEqual(fs.readdirSync(path.join(m.root, '.layers')), []);
  assert.deepEqual(entries(m), []);
});

test('bad input and a full disk leave nothing half-made', async () => {
  const m = manager({ free: 10 * 2 ** 20 });
  await assert.rejects(m.create('full', 2 ** 30), (e: unknown) => e instanceof LimitError && e.code === 'DISK_FULL');
  await assert.rejects(m.create('../evil', 2 ** 30), code('VOLUME_INVALID'));
  await assert.rejects(m.clone('nope', 'x'), code('VOLUME_NOT_FOUND'));
  assert.deepEqual(entries(m), []);
});
