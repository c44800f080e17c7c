// A loopback TCP port for a short-lived listener the caller starts next (a
// traced guest's forwarded port, a test server). Another process may take it
// in between; callers start at once and fail loudly if it is gone. A port that
// must stay the caller's while nothing listens on it (across a flickd restart,
// after a route is gone) is taken below the ephemeral range instead.
import net from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A free port below the kernel's ephemeral range (32768-60999): while no one
 * listens there, another process's port-0 listener on a shared machine cannot
 * take it (measured: psql got an HTTP answer on a freePort() port after a
 * flickd restart).
 */
export async function stablePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
}
