// A loopback TCP port for a short-lived listener the caller starts next (a
// traced guest's forwarded port, a test server). Another process may take it
// in between; callers start at once and fail loudly if it is gone.
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
