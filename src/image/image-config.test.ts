import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { buildImageConfig, commandOf, LABEL_GID, LABEL_UID, resolveUser, servicePort } from './image-config.js';
import { ImageError } from './image-error.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-imgcfg-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
fs.mkdirSync(path.join(root, 'etc'));
fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\napp:x:1000:1001::/home/app:/bin/sh\n');
fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n');

const cases: [string | undefined, { uid: number; gid: number } | string][] = [
  [undefined, { uid: 0, gid: 0 }],
  ['nobody', { uid: 65534, gid: 65534 }],
  ['app', { uid: 1000, gid: 1001 }],
  ['app:staff', { uid: 1000, gid: 50 }],
  ['1000', { uid: 1000, gid: 1001 }],
  ['4242', { uid: 4242, gid: 4242 }],
  ['4242:7', { uid: 4242, gid: 7 }],
  ['ghost', 'no user "ghost"'],
  ['app:ghosts', 'no group "ghosts"'],
];
for (const [user, want] of cases) {
  test(`USER ${user ?? '(unset)'} resolves from the image's own files`, () => {
    if (typeof want === 'string') {
      assert.throws(() => resolveUser(root, user), (e: ImageError) => e.code === 'USER_UNKNOWN' && e.kind === 'user' && e.message.includes(want));
    } else assert.deepEqual(resolveUser(root, user), want);
  });
}

test('Entrypoint + Cmd combine as in Docker; the first TCP port is the service port', () => {
  assert.deepEqual(commandOf({ Entrypoint: ['/server'], Cmd: ['8080'] }), ['/server', '8080']);
  assert.deepEqual(commandOf({ Cmd: ['/bin/sh', '-c', 'x'] }), ['/bin/sh', '-c', 'x']);
  assert.equal(servicePort({ ExposedPorts: { '53/udp': {}, '8080/tcp': {} } }), 8080);
  assert.equal(servicePort({}), undefined);
});

test('the image config carries the container config and the numeric ids', () => {
  const c = buildImageConfig({ Cmd: ['node'], User: 'app', ExposedPorts: { '8080/tcp': {} }, WorkingDir: '' }, { uid: 1000, gid: 1001 }, ['sha256:x']);
  assert.equal(c.config.User, 'app');
  assert.equal(c.config.WorkingDir, '/');
  assert.deepEqual(c.config.Labels, { [LABEL_UID]: '1000', [LABEL_GID]: '1001' });
  assert.deepEqual(c.rootfs, { type: 'layers', diff_ids: ['sha256:x'] });
});
