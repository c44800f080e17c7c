import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run, toolFailure } from './exec.js';
import { ImageError } from './image-error.js';

test('a tool that says it ran out of disk fails with DISK_FULL, keeping its own failure as the cause', async () => {
  await assert.rejects(run('sh', ['-c', 'echo "write /var/lib/containers/x: no space left on device" >&2; exit 1']), (err: any) => {
    assert.equal(err.code, 'DISK_FULL');
    assert.equal(err.kind, 'user');
    assert.equal(err.cause.code, 'TOOL_FAILED');
    assert.match(err.message, /^sh -c .* failed: the disk is full \(.*write \/var\/lib\/containers\/x: no space left on device\): remove/);
    return true;
  });
  await assert.rejects(run('sh', ['-c', 'echo "Disk quota exceeded" >&2; exit 1']), (err: any) => err.code === 'DISK_FULL');
});

test('any other tool failure stays TOOL_FAILED with its last lines', async () => {
  await assert.rejects(run('sh', ['-c', 'echo "permission denied" >&2; exit 3']), (err: any) => err.code === 'TOOL_FAILED' && /exit 3/.test(err.message) && /permission denied/.test(err.message));
});

test('a build step whose output says the disk is full becomes DISK_FULL naming the step', () => {
  const step = new ImageError('BUILD_STEP_FAILED', 'Dockerfile:5: RUN npm ci: the step failed', { kind: 'user' });
  const err = toolFailure(step, ['npm ERR! nospc ENOSPC: no space left on device, write'], 'Dockerfile:5: RUN npm ci') as any;
  assert.equal(err.code, 'DISK_FULL');
  assert.equal(err.cause, step);
  assert.match(err.message, /^Dockerfile:5: RUN npm ci failed: the disk is full/);
  assert.equal(toolFailure(step, ['npm ERR! code E404'], 'x'), step);
});
