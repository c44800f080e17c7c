// Component tests of raw TCP routes: a real echo server as the instance.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { freePort } from '../network/free-port.js';
import { FakeWaker, startProxy, statsOf, until } from './testing.js';

async function startEcho(t: TestContext): Promise<{ port: number; accepted: () => number; open: () => number }> {
  let accepted = 0;
  let open = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted += 1;
    open += 1;
    sockets.add(socket);
    socket.on('close', () => {
      open -= 1;
      sockets.delete(socket);
    });
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted, open: () => open };
}

async function connect(t: TestContext, port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  t.after(() => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

function exchange(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= text.length) {
        socket.off('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
    socket.write(text);
  });
}

test('a TCP route pipes bytes to the instance, waking it on connect, and its listener closes with the route', async (t) => {
  const echo = await startEcho(t);
  const waker = new FakeWaker(false);
  const { proxy, routes } = await startProxy(t, waker, { tcpQuietMs: 10 });
  const port = await freePort();
  routes.setTcp(port, { instanceId: 'i-1', targetPort: echo.port });
  await proxy.settled();
  const socket = await connect(t, port);
  await until(() => waker.wakes.get('i-1') === 1, 'the connection to start a wake');
  const reply = exchange(socket, 'hello before the wake');
  await until(() => statsOf(proxy, 'i-1').parkedNow === 1, 'the connection to park');
  waker.release();
  assert.equal(await reply, 'hello before the wake');
  assert.equal(await exchange(socket, 'and after'), 'and after');
  assert.equal(waker.connections.get('i-1'), 1);
  await until(() => waker.inFlight.get('i-1') === 0, 'the exchange to end after a quiet moment');
  socket.destroy();
  await until(() => waker.connections.get('i-1') === 0, 'the connection to be reported closed');
  routes.deleteTcp(port);
  await proxy.settled();
  await assert.rejects(connect(t, port), { code: 'ECONNREFUSED' });
  assert.equal(waker.minInFlight, 0);
});

test('with the instance in standby, an open TCP connection stays open and its next bytes wake it on a new upstream connection', async (t) => {
  const echo = await startEcho(t);
  const waker = new FakeWaker();
  const { proxy, routes } = await startProxy(t, waker, { tcpQuietMs: 10 });
  const port = await freePort();
  routes.setTcp(port, { instanceId: 'i-1', targetPort: echo.port });
  await proxy.settled();
  const socket = await connect(t, port);
  assert.equal(await exchange(socket, 'one'), 'one');
  await until(() => waker.inFlight.get('i-1') === 0, 'the exchange to end');
  waker.standby('i-1');
  await until(() => echo.open() === 0, 'the upstream connection to be dropped');
  assert.equal(socket.destroyed, false);
  assert.equal(await exchange(socket, 'two'), 'two');
  assert.equal(waker.wakes.get('i-1'), 2);
  assert.equal(echo.accepted(), 2);
});

test('a TCP client that leaves while parked leaves the queue; removing the instance closes its connections', async (t) => {
  const echo = await startEcho(t);
  const waker = new FakeWaker(false);
  const { proxy, routes } = await startProxy(t, waker);
  const port = await freePort();
  routes.setTcp(port, { instanceId: 'i-1', targetPort: echo.port });
  await proxy.settled();
  const leaver = await connect(t, port);
  await until(() => statsOf(proxy, 'i-1').parkedNow === 1, 'the connection to park');
  leaver.end();
  await until(() => statsOf(proxy, 'i-1').parkedNow === 0, 'the connection to leave the queue');
  const stayer = await connect(t, port);
  const closed = new Promise<void>((resolve) => stayer.once('close', () => resolve()));
  await until(() => statsOf(proxy, 'i-1').parkedNow === 1, 'the second connection to park');
  routes.removeInstance('i-1');
  await closed;
  assert.equal(echo.accepted(), 0);
  await until(() => waker.inFlight.get('i-1') === 0 && waker.connections.get('i-1') === 0, 'the accounting to settle');
});

test('a TCP client still waiting for its answer when the instance ends is closed, not left hanging', async (t) => {
  // The instance reads and never answers (a query in flight when its VM died).
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  const waker = new FakeWaker();
  const { proxy, routes } = await startProxy(t, waker, { tcpQuietMs: 10 });
  const port = await freePort();
  routes.setTcp(port, { instanceId: 'i-1', targetPort: (silent.address() as net.AddressInfo).port });
  await proxy.settled();
  const socket = await connect(t, port);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write('SELECT 1');
  await until(() => sockets.size === 1 && waker.inFlight.get('i-1') === 1, 'the query to reach the instance');
  waker.standby('i-1');
  await closed;
});

test("a service's TCP port balances connections over its members, before any instance route of that port, and outlives a removed member", async (t) => {
  const echo = await startEcho(t);
  const waker = new FakeWaker();
  const { proxy, routes } = await startProxy(t, waker, { tcpQuietMs: 10 });
  const port = await freePort();
  const members = ['m-1', 'm-2', 'm-3'];
  waker.running = new Set(members);
  const opened = new Map<string, number>();
  const open = waker.connectionOpened.bind(waker);
  waker.connectionOpened = (id: string) => {
    opened.set(id, (opened.get(id) ?? 0) + 1);
    open(id);
  };
  // Every member declares the port; the last one created holds the instance route.
  routes.setTcp(port, { instanceId: 'm-3', targetPort: echo.port });
  routes.setTcpService(port, { service: 'db', members, targetPort: echo.port });
  await proxy.settled();
  const clients: net.Socket[] = [];
  for (let i = 0; i < 9; i++) {
    const socket = await connect(t, port);
    clients.push(socket);
    assert.equal(await exchange(socket, `hello ${i}\n`), `hello ${i}\n`);
  }
  assert.deepEqual(members.map((m) => opened.get(m)), [3, 3, 3], 'connections spread over the members in turn');
  // The member holding the instance route goes: the port stays open for the service.
  routes.removeInstance('m-3');
  routes.setTcpService(port, { service: 'db', members: ['m-1', 'm-2'], targetPort: echo.port });
  await proxy.settled();
  const after = await connect(t, port);
  assert.equal(await exchange(after, 'still here\n'), 'still here\n');
  assert.equal(opened.get('m-3'), 3, 'the removed member gets no new connection');
  assert.equal(waker.connections.get('m-3'), 0, "the removed member's connections were closed");
  // The listener closes with the service's route (once its open connections are gone).
  for (const c of [...clients, after]) c.destroy();
  routes.deleteTcpService(port);
  await proxy.settled();
  await assert.rejects(connect(t, port), /ECONNREFUSED/);
  assert.equal((opened.get('m-1') ?? 0) + (opened.get('m-2') ?? 0), 7);
});

test("a service member that refuses a TCP connection is skipped for another member; the client's bytes reach that one", async (t) => {
  const echo = await startEcho(t);
  // m-dead answers at 127.0.0.2, where nothing listens on the echo's port: its connection is refused.
  const waker = new FakeWaker();
  const wake = waker.ensureAwake.bind(waker);
  waker.ensureAwake = async (id, signal) => ({ ...(await wake(id, signal)), ...(id === 'm-dead' ? { host: '127.0.0.2' } : {}) });
  const { proxy, routes } = await startProxy(t, waker, { tcpQuietMs: 10 });
  const port = await freePort();
  routes.setTcpService(port, { service: 'db', members: ['m-dead', 'm-live'], targetPort: echo.port });
  await proxy.settled();
  for (let i = 0; i < 4; i++) {
    const socket = await connect(t, port);
    // Sent at once, before any member is reached: held, then delivered to the one that accepts.
    assert.equal(await exchange(socket, `early ${i}\nhello ${i}\n`), `early ${i}\nhello ${i}\n`);
    socket.destroy();
  }
  assert.ok((waker.wakes.get('m-dead') ?? 0) >= 1, 'the refusing member was tried');
  assert.equal(echo.accepted(), 4, 'every connection reached the live member once');
  await until(() => (waker.inFlight.get('m-dead') ?? 0) === 0 && (waker.connections.get('m-dead') ?? 0) === 0 && (waker.connections.get('m-live') ?? 0) === 0, 'the accounting to settle');
  assert.equal(waker.minInFlight, 0);
});
