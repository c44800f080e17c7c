import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { isElf, readElf } from './elf.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-elf-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("reads a dynamic executable's interpreter and libraries (the host's node)", () => {
  const info = readElf(fs.realpathSync(process.execPath));
  assert.ok(info);
  assert.equal(info.interpreter, '/lib64/ld-linux-x86-64.so.2');
  assert.ok(info.needed.includes('libc.so.6'), info.needed.join(','));
});

test('a shared library has DT_NEEDED but no interpreter', () => {
  const info = readElf('/usr/lib/x86_64-linux-gnu/libm.so.6');
  assert.ok(info);
  assert.equal(info.interpreter, undefined);
  assert.ok(info.needed.includes('libc.so.6'));
});

test('anything else is data: scripts, truncated headers, missing files', () => {
  const script = path.join(tmp, 'run.sh');
  fs.writeFileSync(script, '#!/bin/sh\necho hi\n');
  assert.equal(readElf(script), undefined);
  const truncated = path.join(tmp, 'truncated');
  fs.writeFileSync(truncated, Buffer.concat([fs.readFileSync(fs.realpathSync(process.execPath)).subarray(0, 40)]));
  assert.equal(readElf(truncated), undefined);
  assert.equal(readElf(path.join(tmp, 'missing')), undefined);
  assert.equal(isElf(Buffer.from('\x7fEL')), false);
});
