import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { ImageError } from '../image/image-error.js';
import { checkAddresses, checkDisk, checkQuota, checkRam, diskFullError, diskSpace, isDiskFull, LimitError, RAM_RESERVE_BYTES, VM_OVERHEAD_BYTES } from './limits.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

function thrown(fn: () => void): LimitError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof LimitError, `a LimitError, got ${String(err)}`);
    return err;
  }
}

test('checkDisk: passes with room to spare, and says how much is free, how much is needed and what to do when not', () => {
  const table: Array<[string, number, number, boolean]> = [
    ['plenty', 10 * GiB, 100 * MiB, true],
    ['exactly need + minimum', 612 * MiB, 100 * MiB, true],
    ['one byte short', 612 * MiB - 1, 100 * MiB, false],
    ['empty disk', 0, 0, false],
  ];
  for (const [what, free, need, ok] of table) {
    const err = thrown(() => checkDisk('the push', '/var/lib/flick', need, { freeBytes: free, totalBytes: 100 * GiB }, 512 * MiB));
    assert.equal(err === undefined, ok, what);
    if (err) {
      assert.equal(err.code, 'DISK_FULL');
      assert.equal(err.kind, 'user');
      assert.match(err.message, new RegExp(`^not enough disk space for the push: .* free under /var/lib/flick, ${(need + 512 * MiB) / MiB} MiB needed \\(512 MiB is kept free\\)`), what);
      assert.match(err.message, /flick rm|flickd gc/, what);
    }
  }
});

test('diskSpace reads the file system of the nearest existing folder', () => {
  const s = diskSpace(`${os.tmpdir()}/flick-test-does-not-exist/deeper`);
  assert.ok(s.totalBytes > 0 && s.freeBytes >= 0 && s.freeBytes <= s.totalBytes);
});

test('isDiskFull: ENOSPC and EDQUOT, as the error or its cause; not other errors, nor a message that merely says so', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: write failed`), { code });
  const table: Array<[string, unknown, boolean]> = [
    ['ENOSPC', errno('ENOSPC'), true],
    ['EDQUOT', errno('EDQUOT'), true],
    ['ENOSPC as the cause', new Error('writing blob', { cause: errno('ENOSPC') }), true],
    ['only a message says it (a tool\'s output is read in src/image/exec.ts)', new ImageError('BUILD_STEP_FAILED', 'Dockerfile:5: RUN npm ci: the step failed:\n  write /var/lib/containers/x: no space left on device'), false],
    ['EACCES', errno('EACCES'), false],
    ['a string', 'no space left on device', false],
    ['our own DISK_FULL (not wrapped twice)', diskFullError(errno('ENOSPC'), 'x'), false],
  ];
  for (const [what, err, want] of table) assert.equal(isDiskFull(err), want, what);
});

test('diskFullError names what failed, the disk, the cause line, and keeps the cause', () => {
  const cause = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const err = diskFullError(cause, 'flick build .', '/var/cache/flick');
  assert.equal(err.code, 'DISK_FULL');
  assert.equal(err.cause, cause);
  assert.match(err.message, /^flick build \. failed: the disk holding \/var\/cache\/flick is full \(ENOSPC: no space left on device, write\): remove/);
});

test('checkQuota: no quota never refuses; at the quota the message names it and the way out', () => {
  assert.equal(thrown(() => checkQuota('web', 10_000, undefined)), undefined);
  assert.equal(thrown(() => checkQuota('web', 2, 3)), undefined);
  const err = thrown(() => checkQuota('web', 3, 3));
  assert.equal(err?.code, 'QUOTA_EXCEEDED');
  assert.equal(err?.message, `cannot create instance "web": this host allows at most 3 instances (flickd --max-instances) and has 3: remove some with 'flick rm', or raise the quota`);
  assert.match(thrown(() => checkQuota('web', 1, 1))!.message, /at most 1 instance \(/);
});

test('checkAddresses: the last free address is handed out, then NO_ADDRESS says how to get more', () => {
  assert.equal(thrown(() => checkAddresses(63, 64)), undefined);
  const err = thrown(() => checkAddresses(64, 64));
  assert.equal(err?.code, 'NO_ADDRESS');
  assert.match(err!.message, /all 64 addresses of its pool are held by running VMs: stop .*'flick stop'.*, or start flickd with a larger pool \(FLICK_NET_POOL/);
});

test('checkRam: guest RAM plus overhead must fit in what is available minus the reserve', () => {
  const fits = 128 * MiB + VM_OVERHEAD_BYTES + RAM_RESERVE_BYTES;
  assert.equal(thrown(() => checkRam('web', 128, fits)), undefined);
  const err = thrown(() => checkRam('web', 128, fits - 1));
  assert.equal(err?.code, 'RAM_EXHAUSTED');
  assert.match(err!.message, /^cannot start instance "web" with 128 MiB: the host has .* available, keeps 512 MiB in reserve, and a VM of this size needs 192 MiB: .*-m/);
  assert.match(thrown(() => checkRam('big', 65536, 8 * GiB))!.message, /with 65536 MiB/);
});
