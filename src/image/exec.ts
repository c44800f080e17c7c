// Runs the host tools the image pipeline drives (buildah, mksquashfs,
// debootstrap, tar) as child processes, each owned until it exits.
import { spawn } from 'node:child_process';
import { diskFullError } from '../limits/limits.js';
import { ImageError } from './image-error.js';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with each line the tool writes (stdout and stderr interleaved). */
  onLine?: (line: string) => void;
  /** Bytes to write to the tool's stdin. */
  input?: string | Buffer;
  signal?: AbortSignal;
  /**
   * Run in a process group of its own, so a Ctrl-C at the terminal reaches only
   * flick, which then lets the tool finish and cleans up after it (buildah
   * killed mid-commit leaves its working container behind).
   */
  ownProcessGroup?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Keeps the last `max` lines seen, for error messages. */
class Tail {
  readonly lines: string[] = [];
  constructor(private readonly max: number) {}
  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  }
}

/** Exit status and output of a tool, without throwing on a non-zero exit. */
export function runTool(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult & { code: number | null; tail: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], signal: opts.signal, detached: opts.ownProcessGroup ?? false });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const tail = new Tail(40);
    const splitter = () => {
      let buf = '';
      return (chunk: Buffer, end = false) => {
        buf += chunk.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          tail.push(line);
          opts.onLine?.(line);
        }
        if (end && buf) {
          tail.push(buf);
          opts.onLine?.(buf);
          buf = '';
        }
      };
    };
    const onOut = splitter();
    const onErr = splitter();
    child.stdout.on('data', (c: Buffer) => {
      out.push(c);
      onOut(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      err.push(c);
      onErr(c);
    });
    child.on('error', (cause) => {
      // spawn's own AbortSignal handling kills the tool and reports an AbortError: pass on why it was aborted.
      if (opts.signal?.aborted) reject(opts.signal.reason);
      else reject(new ImageError('TOOL_FAILED', `${cmd} could not be started: ${cause.message}; run 'bash scripts/setup.sh' to install it`, { cause }));
    });
    child.on('close', (code) => {
      onOut(Buffer.alloc(0), true);
      onErr(Buffer.alloc(0), true);
      resolve({ stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code, tail: tail.lines });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * Whether a tool that failed said it ran out of disk (ENOSPC, EDQUOT). A tool
 * reports the errno only in its output, so this is where it is seen: the
 * callers of runTool turn such a failure into DISK_FULL (src/limits).
 */
export function toolRanOutOfDisk(lines: readonly string[]): boolean {
  return lines.some((l) => /\b(no space left on device|disk quota exceeded)\b/i.test(l));
}

/** The failure `err` of a tool as DISK_FULL when its output says the disk is full, else `err` itself. */
export function toolFailure(err: ImageError, lines: readonly string[], what: string): Error {
  return toolRanOutOfDisk(lines) ? diskFullError(err, what) : err;
}

/** Runs a tool and rejects with TOOL_FAILED (carrying its last output lines; DISK_FULL if it ran out of disk) unless it exits 0. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) {
    const what = `${cmd} ${args.slice(0, 3).join(' ')}`;
    const err = new ImageError('TOOL_FAILED', `${what} failed (exit ${r.code}): ${r.tail.slice(-8).join('\n')}`, {
      details: { cmd, args, code: r.code },
    });
    throw toolFailure(err, r.tail, what);
  }
  return r;
}
