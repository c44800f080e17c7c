import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  CLOCK_RESEND_MS,
  ControlChannel,
  ControlError,
  decodeGuestMessage,
  decodeHostCommand,
  encodeGuestMessage,
  encodeHostCommand,
  type GuestMessage,
} from './control.js';

test('guest messages decode from the lines the init writes, and encode back', () => {
  const table: [string, GuestMessage][] = [
    ['hello', { type: 'hello' }],
    ['started 25', { type: 'started', pid: 25 }],
    ['exit 0', { type: 'exit', code: 0 }],
    ['exit 143', { type: 'exit', code: 143 }],
    ['open /usr/lib/libc.so.6', { type: 'open', path: '/usr/lib/libc.so.6' }],
    ['open /a path/with spaces', { type: 'open', path: '/a path/with spaces' }],
    ['listen 6379', { type: 'listen', port: 6379 }],
    ['healthy', { type: 'healthy' }],
    ['unhealthy', { type: 'unhealthy' }],
    ['ok time', { type: 'ok', command: 'time' }],
    ['ok poweroff', { type: 'ok', command: 'poweroff' }],
    ['error time: bad value x', { type: 'error', command: 'time', text: 'bad value x' }],
    ['error exec /app: No such file or directory', { type: 'error', text: 'exec /app: No such file or directory' }],
  ];
  for (const [line, message] of table) {
    assert.deepEqual(decodeGuestMessage(line), message, line);
    assert.equal(encodeGuestMessage(message), `${line}\n`);
  }
});

test('lines that are not guest messages are protocol errors', () => {
  for (const line of ['', 'helo', 'hello there', 'started', 'started -1', 'exit 256', 'exit 1.5', 'open relative', 'ok']) {
    assert.throws(() => decodeGuestMessage(line), (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_PROTOCOL', line);
  }
});

test('host commands carry nine digits of nanoseconds', () => {
  assert.equal(encodeHostCommand({ type: 'time', seconds: 1700000000n, nanos: 5 }), 'time 1700000000.000000005\n');
  assert.equal(encodeHostCommand({ type: 'poweroff' }), 'poweroff\n');
  assert.deepEqual(decodeHostCommand('time 12.000000005'), { type: 'time', seconds: 12n, nanos: 5 });
  assert.throws(() => decodeHostCommand('time 12.5'), /9 digits/);
  assert.throws(() => encodeHostCommand({ type: 'time', seconds: 1n, nanos: 1e9 }), RangeError);
});

/** A fake guest: a unix-socket server (QEMU's side) that answers host commands as `answer` says. */
async function fakeGuest(t: TestContext, answer: (line: string, write: (s: string) => void) => void) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-control-'));
  const socketPath = path.join(dir, 'ctl.sock');
  const peers: net.Socket[] = [];
  const received: string[] = [];
  const server = net.createServer((s) => {
    peers.push(s);
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        received.push(line);
        answer(line, (x) => s.write(x));
      }
    });
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  t.after(async () => {
    for (const p of peers) p.destroy();
    await new Promise((r) => server.close(r));
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const connected = new Promise<(s: string) => void>((resolve) => server.once('connection', (s) => resolve((x) => s.write(x))));
  return { socketPath, received, connected, peers };
}

test('syncClock sends the host time and resolves on "ok time"', async (t) => {
  const guest = await fakeGuest(t, (line, write) => {
    if (line.startsWith('time ')) write('ok time\n');
  });
  const ch = await ControlChannel.connect(guest.socketPath);
  t.after(() => ch.close());
  const before = Date.now() / 1000;
  await ch.syncClock();
  const sent = decodeHostCommand(guest.received[0]!);
  assert.equal(sent.type, 'time');
  const seconds = sent.type === 'time' ? Number(sent.seconds) + sent.nanos / 1e9 : 0;
  assert.ok(seconds >= before - 1 && seconds <= Date.now() / 1000 + 1, `sent ${guest.received[0]}`);
});

test('a clock line the guest never answered is sent again, and the first answer settles the sync', async (t) => {
  // The first line is "lost" (as one written while a restored port is still loading can sit unread).
  const guest = await fakeGuest(t, (line, write) => {
    if (line.startsWith('time ') && guest.received.length > 1) write('ok time\n');
  });
  const ch = await ControlChannel.connect(guest.socketPath);
  t.after(() => ch.close());
  const t0 = performance.now();
  await ch.syncClock(10_000);
  assert.ok(performance.now() - t0 >= CLOCK_RESEND_MS - 50, 'answered by the resend');
  assert.equal(guest.received.filter((l) => l.startsWith('time ')).length, 2);
  await new Promise((r) => setTimeout(r, CLOCK_RESEND_MS + 200));
  assert.equal(guest.received.length, 2, 'no more lines once answered');
});

test('the late answer to a resent clock line is not taken for the next sync\'s', async (t) => {
  // Line 1 sits unread until line 2 (the resend) arrives; the guest then answers both, in order,
  // the second 300 ms later, after the next sync has sent line 3 (answered "error" at 600 ms).
  const guest = await fakeGuest(t, (line, write) => {
    if (!line.startsWith('time ')) return;
    const n = guest.received.length;
    if (n === 2) {
      write('ok time\n');
      setTimeout(() => write('ok time\n'), 300);
    }
    if (n === 3) setTimeout(() => write('error time: the third line\n'), 600);
  });
  const ch = await ControlChannel.connect(guest.socketPath);
  t.after(() => ch.close());
  await ch.syncClock(10_000);
  await assert.rejects(ch.syncClock(10_000), (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_REJECTED' && /the third line/.test(e.message), 'the second sync is answered by its own line, not by the resend\'s late "ok time"');
  assert.equal(guest.received.length, 3);
});

test('a refused command rejects with the guest\'s reason; a silent guest times out', async (t) => {
  const guest = await fakeGuest(t, (line, write) => {
    if (line.startsWith('time ')) write('open /noise\nerror time: clock_settime: Operation not permitted\n');
  });
  const ch = await ControlChannel.connect(guest.socketPath);
  t.after(() => ch.close());
  await assert.rejects(ch.syncClock(), (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_REJECTED' && /Operation not permitted/.test(e.message));
  await assert.rejects(ch.poweroff(50), (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_TIMEOUT');
});

test('messages are emitted in order; one-shot messages that came before waitFor still count', async (t) => {
  const guest = await fakeGuest(t, () => {});
  const ch = await ControlChannel.connect(guest.socketPath);
  t.after(() => ch.close());
  const seen: GuestMessage[] = [];
  const bad: ControlError[] = [];
  ch.on('message', (m) => seen.push(m));
  ch.on('protocolError', (e) => bad.push(e));
  const write = await guest.connected;
  // Split across writes, as a stream may deliver it.
  write('hel');
  write('lo\nstarted 7\nbogus line\nopen /bin/a');
  write('pp\n');
  const open = await ch.waitFor('open');
  assert.deepEqual(open, { type: 'open', path: '/bin/app' });
  assert.deepEqual(await ch.waitFor('started'), { type: 'started', pid: 7 });
  assert.deepEqual(seen.map((m) => m.type), ['hello', 'started', 'open']);
  assert.equal(bad.length, 1);
  write('exit 3\n');
  assert.deepEqual(await ch.waitFor('exit'), { type: 'exit', code: 3 });
});

test('waiting fails fast when the VM goes away', async (t) => {
  const guest = await fakeGuest(t, () => {});
  const ch = await ControlChannel.connect(guest.socketPath);
  t.after(() => ch.close());
  await guest.connected;
  const closed = new Promise<void>((r) => ch.once('close', r));
  const exit = ch.waitFor('exit');
  guest.peers[0]!.destroy();
  await assert.rejects(exit, (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_CLOSED');
  await closed;
  assert.equal(ch.closed, true);
  await assert.rejects(ch.syncClock(), (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_CLOSED');
  ch.close();
});

test('connect waits for the socket to appear, and gives up with a clear error', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-test-control-'));
  const socketPath = path.join(dir, 'ctl.sock');
  const server = net.createServer();
  t.after(async () => {
    server.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  await assert.rejects(ControlChannel.connect(socketPath, { timeoutMs: 50 }), (e: unknown) => e instanceof ControlError && e.code === 'CONTROL_CONNECT_FAILED' && /ENOENT/.test(e.message));
  const pending = ControlChannel.connect(socketPath, { timeoutMs: 5000 });
  setTimeout(() => server.listen(socketPath), 50);
  const ch = await pending;
  ch.close();
  ch.close();
});
