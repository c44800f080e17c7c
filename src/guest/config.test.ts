import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { CONFIG_DISK_MAGIC, GuestConfigError, MAX_PAYLOAD_BYTES, decodeConfigDisk, encodeConfigDisk, writeConfigDisk, type ConfigDiskContents } from './config.js';

const base: ConfigDiskContents = { argv: ['/bin/app', '--port', '8080'], env: ['A=1', 'B=x=y'], cwd: '/app', uid: 1000, gid: 1000, hostname: 'web-1' };

test('the disk starts with the magic, version 1 and the payload length, padded to 512-byte sectors', () => {
  const disk = encodeConfigDisk(base);
  assert.equal(disk.toString('latin1', 0, 8), CONFIG_DISK_MAGIC);
  assert.equal(disk.readUInt32LE(8), 1);
  const len = disk.readUInt32LE(12);
  assert.equal(disk.length % 512, 0);
  assert.ok(disk.length >= 16 + len);
  assert.equal(
    disk.toString('utf8', 16, 16 + len),
    'argv=/bin/app\0argv=--port\0argv=8080\0env=A=1\0env=B=x=y\0cwd=/app\0uid=1000\0gid=1000\0hostname=web-1\0',
  );
  assert.ok(disk.subarray(16 + len).every((b) => b === 0), 'padding is zeros');
});

test('contents round-trip, including newlines, UTF-8, trace, listen and nameservers', () => {
  const config: ConfigDiskContents = {
    ...base,
    argv: ['sh', '-c', 'echo "a\nb"', 'ünïcode'],
    trace: true,
    listen: true,
    healthcheck: { argv: ['/bin/sh', '-c', 'test -f /tmp/ready'], intervalMs: 30_000, timeoutMs: 5000, startPeriodMs: 0, retries: 3 },
    stopSignal: 2,
    nameservers: ['10.0.2.3', 'fd00::1'],
    mounts: [{ serial: '0a1b2c3d4e5f', path: '/data', readOnly: false }, { serial: 'ffeedd', path: '/srv/a:b', readOnly: true }],
  };
  assert.deepEqual(decodeConfigDisk(encodeConfigDisk(config)), config);
});

test('bad input is refused with a user error that names the problem', () => {
  const cases: [string, Partial<ConfigDiskContents>, RegExp][] = [
    ['empty argv', { argv: [] }, /argv is empty/],
    ['empty program', { argv: [''] }, /argv\[0\] is empty/],
    ['NUL in argv', { argv: ['a', 'b\0c'] }, /argv\[1\] contains a NUL byte/],
    ['NUL in env', { env: ['A=\0'] }, /env\[0\] contains a NUL byte/],
    ['env without =', { env: ['JUSTKEY'] }, /env\[0\] "JUSTKEY" is not KEY=VALUE/],
    ['relative cwd', { cwd: 'app' }, /cwd "app" is not an absolute path/],
    ['negative uid', { uid: -1 }, /uid -1 is not a valid id/],
    ['uid (uid_t)-1', { uid: 0xffffffff }, /uid 4294967295 is not a valid id/],
    ['fractional gid', { gid: 1.5 }, /gid 1.5 is not a valid id/],
    ['bad hostname', { hostname: 'has space' }, /hostname "has space" is not a valid host name/],
    ['long hostname', { hostname: 'a'.repeat(65) }, /is not a valid host name/],
    ['too large', { env: [`BIG=${'x'.repeat(MAX_PAYLOAD_BYTES)}`] }, /more than the 1048576 the guest accepts/],
    ['too many args', { argv: Array(5000).fill('a') }, /argv has 5000 entries/],
    ['bad nameserver', { nameservers: ['dns.example'] }, /nameserver "dns.example" is not an IP address/],
    ['bad volume serial', { mounts: [{ serial: 'A/B', path: '/data', readOnly: false }] }, /volume serial "A\/B" is not/],
    ['relative volume path', { mounts: [{ serial: 'ab', path: 'data', readOnly: false }] }, /volume path "data" is not an absolute path/],
  ];
  for (const [name, change, message] of cases) {
    assert.throws(
      () => encodeConfigDisk({ ...base, ...change }),
      (err: unknown) => err instanceof GuestConfigError && err.code === 'INVALID_GUEST_CONFIG' && err.kind === 'user' && message.test(err.message),
      name,
    );
  }
});

test('decodeConfigDisk rejects what is not a config disk', () => {
  assert.throws(() => decodeConfigDisk(Buffer.alloc(512)), /no FLICKCFG magic/);
  const disk = encodeConfigDisk(base);
  disk.writeUInt32LE(2, 8);
  assert.throws(() => decodeConfigDisk(disk), /version 2/);
});

test('writeConfigDisk writes the encoded disk', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-config-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.img');
  await writeConfigDisk(file, base);
  assert.deepEqual(await fsp.readFile(file), encodeConfigDisk(base));
});
