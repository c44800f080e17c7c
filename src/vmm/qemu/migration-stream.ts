// Moving QEMU's migration stream (device state; RAM stays in the memory file
// with x-ignore-shared) between QEMU and a file. Node cannot pass a file
// descriptor to QEMU over a unix socket, so flickd listens (save) or connects
// (restore) on a unix socket in the run folder and copies bytes itself.
// Stream format: QEMU's migration stream (https://www.qemu.org/docs/master/devel/migration/main.html).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { VmmError } from '../driver.js';

/**
 * Listens on `socketPath` and writes the one connection's bytes to `file`
 * (atomically: a temp file renamed over it after fsync). `ready` resolves once
 * listening; `done` resolves with the byte count when the stream is on disk.
 */
export async function receiveStream(socketPath: string, file: string): Promise<{ done: Promise<number>; abort: () => void }> {
  await fsp.rm(socketPath, { force: true });
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  // A jailed QEMU (jail.ts) runs as its own uid and must be able to connect; the run
  // folder's mode (root and the VM's group only) is what keeps everyone else out.
  await fsp.chmod(socketPath, 0o666);
  const tmp = `${file}.tmp`;
  let conn: net.Socket | undefined;
  const done = new Promise<number>((resolve, reject) => {
    server.once('connection', (c) => {
      conn = c;
      server.close();
      const out = fs.createWriteStream(tmp);
      pipeline(c, out)
        .then(async () => {
          const fh = await fsp.open(tmp, 'r+');
          try {
            await fh.sync();
          } finally {
            await fh.close();
          }
          await fsp.rename(tmp, file);
          resolve(out.bytesWritten);
        })
        .catch(reject);
    });
    server.once('close', () => {
      if (!conn) reject(new VmmError('SNAPSHOT_FAILED', 'snapshot: QEMU never connected to write its state'));
    });
  }).finally(() => fsp.rm(socketPath, { force: true }).catch(() => {}));
  done.catch(() => fsp.rm(tmp, { force: true }).catch(() => {}));
  return {
    done,
    abort: () => {
      server.close();
      conn?.destroy(new VmmError('SNAPSHOT_FAILED', 'snapshot aborted'));
    },
  };
}

/**
 * Connects to QEMU's incoming-migration socket and writes `file` into it. QEMU
 * closes its end as soon as it has read the end-of-stream marker, which can be
 * before our side has seen its own write finish: that is success, and whether
 * the load worked is told by QEMU's MIGRATION event, not by this socket.
 */
export async function sendStream(socketPath: string, file: string): Promise<void> {
  const data = await fsp.readFile(file); // tens of KiB: RAM is not in the stream
  await new Promise<void>((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    socket.once('connect', () => socket.end(data));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') resolve(); // the event decides
      else reject(err);
    });
    socket.once('close', () => resolve());
  });
}
