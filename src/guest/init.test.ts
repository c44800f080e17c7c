import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeCpio, initramfsEntries } from './init.js';

interface Parsed {
  name: string;
  mode: number;
  rdev: [number, number];
  data: Buffer;
}

/** A newc reader, independent of the writer: checks magic, fields and 4-byte alignment. */
function parseNewc(buf: Buffer): Parsed[] {
  const out: Parsed[] = [];
  let off = 0;
  for (;;) {
    assert.equal(off % 4, 0, 'every header is 4-byte aligned');
    assert.equal(buf.toString('latin1', off, off + 6), '070701');
    const field = (i: number) => parseInt(buf.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.toString('utf8', off + 110, off + 110 + nameSize - 1);
    assert.equal(buf[off + 110 + nameSize - 1], 0, 'name is NUL-terminated');
    let dataOff = off + 110 + nameSize;
    dataOff += (4 - (dataOff % 4)) % 4;
    if (name === 'TRAILER!!!') {
      assert.equal(dataOff, buf.length, 'nothing after the trailer');
      return out;
    }
    out.push({ name, mode, rdev: [field(9), field(10)], data: buf.subarray(dataOff, dataOff + size) });
    off = dataOff + size;
    off += (4 - (off % 4)) % 4;
  }
}

test('the initramfs holds /init, the console node and the init mount points', () => {
  const init = Buffer.from('\x7fELF fake init of odd length');
  const cpio = encodeCpio(initramfsEntries(init));
  const entries = parseNewc(cpio);
  const byName = new Map(entries.map((e) => [e.name, e]));
  assert.deepEqual(byName.get('init')?.data, init);
  assert.equal(byName.get('init')?.mode, 0o100755);
  assert.equal(byName.get('dev/console')?.mode, 0o020600);
  assert.deepEqual(byName.get('dev/console')?.rdev, [5, 1]);
  for (const dir of ['dev', 'proc', 'sys', 'mnt', 'mnt/lower', 'mnt/rw', 'mnt/root']) assert.equal(byName.get(dir)?.mode, 0o040755, dir);
  // Parents come before children, as the kernel's unpacker needs.
  assert.ok(entries.findIndex((e) => e.name === 'mnt') < entries.findIndex((e) => e.name === 'mnt/root'));
});

test('the archive is deterministic', () => {
  const init = Buffer.from('same');
  assert.deepEqual(encodeCpio(initramfsEntries(init)), encodeCpio(initramfsEntries(init)));
});
