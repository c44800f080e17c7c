import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { computeKeepSet } from './closure.js';

// A small image root made of the host's real binaries, laid out like Debian
// 12 (merged /usr: /lib and /bin are symlinks into /usr).
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-closure-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function put(p: string, from?: string, content = ''): void {
  const dst = path.join(root, p);
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  if (from) fs.copyFileSync(from, dst);
  else fs.writeFileSync(dst, content);
}

const LIB = '/usr/lib/x86_64-linux-gnu';
before(() => {
  for (const lib of ['libc.so.6', 'ld-linux-x86-64.so.2', 'libm.so.6', 'libnss_files.so.2']) put(`${LIB}/${lib}`, path.join(LIB, lib));
  fs.symlinkSync('usr/lib', path.join(root, 'lib'));
  fs.symlinkSync('usr/bin', path.join(root, 'bin'));
  fs.mkdirSync(path.join(root, 'lib64'));
  // An absolute link target must resolve inside the image, not on the host.
  fs.symlinkSync(`${LIB}/ld-linux-x86-64.so.2`, path.join(root, 'lib64/ld-linux-x86-64.so.2'));
  put('/usr/bin/dash', '/usr/bin/dash');
  fs.symlinkSync('dash', path.join(root, 'usr/bin/sh'));
  put('/usr/bin/env', '/usr/bin/env');
  put('/usr/bin/unused', '/usr/bin/dash');
  put('/app/start.sh', undefined, '#!/usr/bin/env sh\nexec /bin/sh -c "echo hi"\n');
  put('/app/lib/helper.txt', undefined, 'x');
  put('/etc/passwd', undefined, 'root:x:0:0::/root:/bin/sh\n');
  put('/etc/ssl/certs/ca-certificates.crt', undefined, 'certs');
  put('/usr/lib/python3.11/socket.py', undefined, '');
  put('/usr/lib/python3.11/__pycache__/socket.cpython-311.pyc', undefined, '');
  put('/usr/lib/python3.11/unused.py', undefined, '');
  put('/opt/data/big.bin', undefined, 'x');
});

test('the closure of a script: its interpreter via env, that ELF loader and libraries, through symlinks', () => {
  const keep = computeKeepSet({ root, argv: ['./start.sh'], env: ['PATH=/usr/bin:/bin'], workingDir: '/app', copiedPaths: [] });
  for (const p of ['/app/start.sh', '/app/lib/helper.txt', '/usr/bin/env', '/usr/bin/sh', '/usr/bin/dash', `${LIB}/libc.so.6`, '/lib64/ld-linux-x86-64.so.2', `${LIB}/ld-linux-x86-64.so.2`, '/etc/passwd', '/etc/ssl/certs/ca-certificates.crt', `${LIB}/libnss_files.so.2`]) {
    assert.ok(keep.paths.has(p), `keeps ${p}`);
  }
  for (const p of ['/usr/bin/unused', '/opt/data/big.bin', '/usr/lib/python3.11/socket.py']) assert.ok(!keep.paths.has(p), `drops ${p}`);
  // Parents are listed so the copy keeps their modes.
  assert.ok(keep.paths.has('/usr/lib') && keep.paths.has('/app/lib'));
});

test('a shell-form command keeps the programs and files it names', () => {
  const keep = computeKeepSet({ root, argv: ['/bin/sh', '-c', 'cd /opt/data && exec env FOO=1 dash big.bin'], env: [], workingDir: '/', copiedPaths: [] });
  assert.ok(keep.paths.has('/usr/bin/env'));
  assert.ok(keep.paths.has('/opt/data/big.bin'));
  assert.ok(!keep.paths.has('/usr/bin/unused'));
});

test('traced paths are kept, with the source of every cached .pyc; copied paths are kept whole', () => {
  const keep = computeKeepSet({
    root,
    argv: ['/usr/bin/dash'],
    env: [],
    workingDir: '/',
    copiedPaths: ['/opt/data'],
    tracedPaths: ['/usr/lib/python3.11/__pycache__/socket.cpython-311.pyc', '/proc/self/maps', '/no/such/file'],
  });
  assert.ok(keep.paths.has('/usr/lib/python3.11/socket.py'));
  assert.ok(keep.paths.has('/usr/lib/python3.11/__pycache__/socket.cpython-311.pyc'));
  assert.ok(!keep.paths.has('/usr/lib/python3.11/unused.py'));
  assert.ok(keep.paths.has('/opt/data/big.bin'));
  assert.ok(!keep.paths.has('/proc/self/maps') && !keep.paths.has('/no/such/file'));
});
