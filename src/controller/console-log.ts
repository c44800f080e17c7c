// An instance's console log: QEMU appends the guest's ttyS0 to
// `<runDir>/console.log`; older output lives in `<dir>/logs/console.<n>.log`
// (1 = newest). Rotation copies and truncates, because QEMU keeps its file
// descriptor open (a rename would leave it writing to the rotated file).
// While the instance runs in a primed VM (controller/primed/), QEMU writes the
// console.log of that VM's run folder (`currentRunDir`): it is read after the
// instance's own, and joins it when the VM ends (primed/bind.ts).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ConsoleLogOptions {
  /** Rotate when the live file grows past this many bytes. */
  maxBytes?: number;
  /** How many rotated files to keep. */
  keep?: number;
  /** How often `follow` looks for new output. */
  pollMs?: number;
  /** The run folder QEMU writes the console to now, when it is not the instance's own (a primed VM's). */
  currentRunDir?: string;
}

export class ConsoleLog {
  readonly live: string;
  /** The instance's own live file while QEMU writes another (`currentRunDir`): older output than `live`. */
  readonly #before: string | undefined;
  readonly #logDir: string;
  readonly #maxBytes: number;
  readonly #keep: number;
  readonly #pollMs: number;

  constructor(instanceDir: string, runDir: string, opts: ConsoleLogOptions = {}) {
    const own = path.join(runDir, 'console.log');
    this.live = opts.currentRunDir ? path.join(opts.currentRunDir, 'console.log') : own;
    this.#before = opts.currentRunDir ? own : undefined;
    this.#logDir = path.join(instanceDir, 'logs');
    this.#maxBytes = opts.maxBytes ?? 8 * 1024 * 1024;
    this.#keep = opts.keep ?? 3;
    this.#pollMs = opts.pollMs ?? 200;
  }

  #rotated(n: number): string {
    return path.join(this.#logDir, `console.${n}.log`);
  }

  /** Moves the live file into the rotated set (before a new boot, so each boot starts a fresh file). */
  async archive(): Promise<void> {
    await this.#rotate(false);
  }

  /** Rotates if the live file is larger than the limit. Cheap when it is not. */
  async rotateIfLarge(): Promise<void> {
    const size = await fileSize(this.live);
    if (size > this.#maxBytes) await this.#rotate(true);
  }

  async #rotate(keepLiveFile: boolean): Promise<void> {
    if ((await fileSize(this.live)) === 0) return;
    // The instance's own file holds older output than the primed VM's: it goes into the set first.
    if (this.#before !== undefined && (await fileSize(this.#before)) > 0) await this.#shiftIn(this.#before, false);
    await this.#shiftIn(this.live, keepLiveFile);
  }

  async #shiftIn(file: string, keepLiveFile: boolean): Promise<void> {
    await fsp.mkdir(this.#logDir, { recursive: true });
    for (let n = this.#keep - 1; n >= 1; n--) {
      await fsp.rename(this.#rotated(n), this.#rotated(n + 1)).catch(ignoreMissing);
    }
    if (keepLiveFile) {
      await fsp.copyFile(file, this.#rotated(1));
      // Bytes QEMU writes between the copy and the truncate are lost; the window is microseconds.
      await fsp.truncate(file, 0);
    } else {
      await fsp.rename(file, this.#rotated(1)).catch(ignoreMissing);
    }
  }

  /**
   * Yields the log: rotated files oldest first, then the live file. With
   * `follow`, keeps yielding new output until `signal` aborts.
   */
  async *read(opts: { follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    for (let n = this.#keep; n >= 1; n--) {
      const buf = await fsp.readFile(this.#rotated(n)).catch(ignoreMissing);
      if (buf && buf.length > 0) yield buf;
    }
    const before = this.#before === undefined ? undefined : await fsp.readFile(this.#before).catch(ignoreMissing);
    if (before && before.length > 0) yield before;
    let offset = 0;
    for (;;) {
      const size = await fileSize(this.live);
      if (size < offset) offset = 0; // rotated (truncated) under us: its old bytes are in console.1.log
      if (size > offset) {
        const fh = await fsp.open(this.live, 'r');
        try {
          const buf = Buffer.alloc(size - offset);
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          if (bytesRead > 0) yield buf.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
      }
      if (!opts.follow || opts.signal?.aborted) return;
      try {
        await sleep(this.#pollMs, undefined, { signal: opts.signal });
      } catch {
        return; // aborted: the follower left
      }
    }
  }

  /** Removes the rotated files (the live file goes with the run dir). */
  async remove(): Promise<void> {
    await fsp.rm(this.#logDir, { recursive: true, force: true });
  }
}

async function fileSize(p: string): Promise<number> {
  try {
    return (await fsp.stat(p)).size;
  } catch {
    return 0;
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT') return undefined;
  throw err;
}

export function ensureDir(p: string): void {
  fs.mkdirSync(p, { recursive: true });
}
