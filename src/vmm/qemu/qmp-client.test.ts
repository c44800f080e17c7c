// The QMP client against a fake QMP server on a temporary unix socket: each
// test scripts what "QEMU" answers, including the orderings QEMU really
// produces (events between a command and its reply) and its death.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { QmpClient, QmpError } from './qmp-client.js';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\n';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-qmp-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Handler = (cmd: { execute: string; arguments?: Record<string, unknown>; id: string }, conn: net.Socket) => void;
let n = 0;

/** A fake QEMU monitor: greets, acks qmp_capabilities, hands every other command to `onCommand`. */
async function fakeQmp(onCommand: Handler, greeting = GREETING): Promise<{ path: string; close: () => void }> {
  const sock = path.join(tmp, `qmp-${n++}.sock`);
  const conns = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    conns.add(conn);
    conn.setEncoding('utf8');
    conn.write(greeting);
    let buf = '';
    conn.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (cmd.execute === 'qmp_capabilities') conn.write(`${JSON.stringify({ return: {}, id: cmd.id })}\n`);
        else onCommand(cmd, conn);
      }
    });
    conn.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const close = () => {
    for (const c of conns) c.destroy();
    server.close();
  };
  after(close);
  return { path: sock, close };
}

const reply = (conn: net.Socket, id: string, value: unknown) => conn.write(`${JSON.stringify({ return: value, id })}\n`);
const event = (conn: net.Socket, name: string, data?: object) =>
  conn.write(`${JSON.stringify({ event: name, data, timestamp: { seconds: 1, microseconds: 2 } })}\n`);

test('connects, reads the greeting and negotiates capabilities', async () => {
  const qmp = await fakeQmp((cmd, conn) => reply(conn, cmd.id, { running: false, status: 'prelaunch' }));
  const client = await QmpClient.connect(qmp.path);
  assert.equal(client.greeting.QMP.version.qemu.major, 7);
  assert.deepEqual(await client.execute('query-status'), { running: false, status: 'prelaunch' });
  client.close();
});

test('matches replies by id when they come out of order', async () => {
  const held: Array<{ id: string; name: string }> = [];
  const qmp = await fakeQmp((cmd, conn) => {
    held.push({ id: cmd.id, name: cmd.execute });
    if (held.length === 2) for (const h of held.reverse()) reply(conn, h.id, h.name);
  });
  const client = await QmpClient.connect(qmp.path);
  const [a, b] = await Promise.all([client.execute('first'), client.execute('second')]);
  assert.deepEqual([a, b], ['first', 'second']);
  client.close();
});

test('an event between a command and its reply goes to listeners, not to the command', async () => {
  const qmp = await fakeQmp((cmd, conn) => {
    event(conn, 'STOP');
    reply(conn, cmd.id, {});
  });
  const client = await QmpClient.connect(qmp.path);
  const seen: string[] = [];
  client.onEvent('*', (e) => seen.push(e.event));
  const stopped = client.waitForEvent('STOP');
  assert.deepEqual(await client.execute('stop'), {});
  assert.equal((await stopped).event, 'STOP');
  assert.deepEqual(seen, ['STOP']);
  client.close();
});

test('waitForEvent skips events its predicate rejects', async () => {
  const qmp = await fakeQmp((cmd, conn) => {
    event(conn, 'MIGRATION', { status: 'active' });
    event(conn, 'MIGRATION', { status: 'completed' });
    reply(conn, cmd.id, {});
  });
  const client = await QmpClient.connect(qmp.path);
  const done = client.waitForEvent('MIGRATION', { predicate: (e) => e.data?.status === 'completed' });
  await client.execute('migrate', { uri: 'unix:/nowhere' });
  assert.deepEqual((await done).data, { status: 'completed' });
  client.close();
});

test('an error reply rejects that command with QMP_ERROR and the class QEMU gave', async () => {
  const qmp = await fakeQmp((cmd, conn) => conn.write(`${JSON.stringify({ error: { class: 'CommandNotFound', desc: 'no such command' }, id: cmd.id })}\n`));
  const client = await QmpClient.connect(qmp.path);
  await assert.rejects(client.execute('bogus'), (err: QmpError) => {
    assert.equal(err.code, 'QMP_ERROR');
    assert.equal(err.details?.class, 'CommandNotFound');
    return true;
  });
  client.close();
});

test('QEMU dying mid-command rejects every pending command and waiter with QMP_CLOSED', async () => {
  let kill = () => {};
  const qmp = await fakeQmp((_cmd, conn) => {
    kill = () => conn.destroy();
  });
  const client = await QmpClient.connect(qmp.path);
  const a = client.execute('migrate');
  const b = client.execute('query-migrate');
  const waiter = client.waitForEvent('MIGRATION');
  await new Promise((r) => setTimeout(r, 20));
  kill();
  for (const p of [a, b, waiter]) await assert.rejects(p, (err: QmpError) => err.code === 'QMP_CLOSED');
  assert.equal((await client.closed).code, 'QMP_CLOSED');
  await assert.rejects(client.execute('cont'), (err: QmpError) => err.code === 'QMP_CLOSED');
});

test('malformed JSON from the monitor fails pending commands with QMP_PROTOCOL', async () => {
  const qmp = await fakeQmp((_cmd, conn) => conn.write('{"return": oops\n'));
  const client = await QmpClient.connect(qmp.path);
  await assert.rejects(client.execute('query-status'), (err: QmpError) => err.code === 'QMP_PROTOCOL');
});

test('a greeting that is not QMP is refused', async () => {
  const qmp = await fakeQmp(() => {}, 'SSH-2.0-OpenSSH\n');
  await assert.rejects(QmpClient.connect(qmp.path), (err: QmpError) => err.code === 'QMP_PROTOCOL');
});

test('nothing listening gives QMP_CLOSED', async () => {
  await assert.rejects(QmpClient.connect(path.join(tmp, 'absent.sock')), (err: QmpError) => err.code === 'QMP_CLOSED');
});

test('a timeout or an abort rejects only that command; a late reply is ignored', async () => {
  const held: Array<() => void> = [];
  const qmp = await fakeQmp((cmd, conn) => {
    if (cmd.execute === 'slow') held.push(() => reply(conn, cmd.id, 'late'));
    else reply(conn, cmd.id, 'fast');
  });
  const client = await QmpClient.connect(qmp.path);
  await assert.rejects(client.execute('slow', undefined, { timeoutMs: 20 }), (err: QmpError) => err.code === 'QMP_TIMEOUT');
  const ac = new AbortController();
  const aborted = client.execute('slow', undefined, { signal: ac.signal });
  ac.abort();
  await assert.rejects(aborted, (err: QmpError) => err.code === 'QMP_TIMEOUT');
  for (const h of held) h();
  assert.equal(await client.execute('quick'), 'fast');
  client.close();
});
