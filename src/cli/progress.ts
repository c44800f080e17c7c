// Transfer progress for push and pull, on stderr: a bar per blob redrawn in place
// on a terminal, one plain line per finished blob otherwise (logs, CI, tests).
import type { TransferEvent } from '../registry/transfer.js';

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function progressReporter(verb: string, out: NodeJS.WriteStream = process.stderr): (e: TransferEvent) => void {
  const tty = out.isTTY === true;
  const short = (d: string) => d.replace(/^sha256:/, '').slice(0, 12);
  let lastDraw = 0;
  return (e) => {
    switch (e.kind) {
      case 'skip':
        out.write(`${short(e.digest)}  exists (${formatBytes(e.size)})\n`);
        return;
      case 'progress': {
        if (!tty) return;
        const now = Date.now();
        if (now - lastDraw < 100 && e.done < e.size) return;
        lastDraw = now;
        const width = 30;
        const filled = e.size === 0 ? width : Math.round((e.done / e.size) * width);
        out.write(`\r${short(e.digest)}  [${'='.repeat(filled)}${' '.repeat(width - filled)}] ${formatBytes(e.done)} / ${formatBytes(e.size)}\x1b[K`);
        return;
      }
      case 'done':
        out.write(`${tty ? '\r' : ''}${short(e.digest)}  ${verb} ${formatBytes(e.size)}${tty ? '\x1b[K' : ''}\n`);
        return;
      case 'manifest':
        out.write(`manifest ${e.digest}\n`);
    }
  };
}
