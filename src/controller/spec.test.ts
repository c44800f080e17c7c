import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControllerError } from './states.js';
import { userIds } from './spec.js';

test('the app runs as the ids flick build resolved from the image, else as a numeric USER', () => {
  const cases: Array<[Parameters<typeof userIds>[0], { uid: number; gid: number }]> = [
    [{ User: 'nobody', Labels: { 'dev.flick.uid': '65534', 'dev.flick.gid': '65534' } }, { uid: 65534, gid: 65534 }],
    [{ User: '1000:50' }, { uid: 1000, gid: 50 }],
    [{ User: '1000' }, { uid: 1000, gid: 1000 }],
    [{ User: 'root' }, { uid: 0, gid: 0 }],
    [{}, { uid: 0, gid: 0 }],
  ];
  for (const [config, want] of cases) assert.deepEqual(userIds(config), want, JSON.stringify(config));
});

test('a USER name without resolved ids is refused with what to do', () => {
  assert.throws(() => userIds({ User: 'app' }), (err: unknown) => err instanceof ControllerError && err.code === 'INVALID_SPEC' && /numeric ids/.test(err.message));
});
