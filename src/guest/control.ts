// The host's side of the guest control port: a virtio-serial port named
// dev.flick.ctl that QEMU exposes on the host as a unix socket
// (`-chardev socket,id=ctl,path=<runDir>/ctl.sock,server=on,wait=off`).
// Line-based ASCII, one message per line (the guest side is guest/init/init.c):
//   host -> guest  `time <unix_seconds>.<9-digit nanos>`   `poweroff`
//   guest -> host  `hello`  `started <pid>`  `exit <code>`  `open <path>` (trace mode)  `listen <port>` (listen=1)
//                  `healthy` / `unhealthy` (the image's HEALTHCHECK, run by the init)
//                  `ok <command>`  `error <text>` (`error <command>: <text>` answers a command)
// QEMU's socket chardev serves one client at a time; a channel lives as long
// as its QEMU process (a restored VM gets a new QEMU and a new channel).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { FlickError } from '../errors.js';

export type ControlErrorCode =
  | 'CONTROL_CONNECT_FAILED' // the socket did not accept a connection in time
  | 'CONTROL_CLOSED' // the connection closed (QEMU exited) while waiting
  | 'CONTROL_TIMEOUT' // the guest did not answer in time
  | 'CONTROL_REJECTED' // the guest answered a command with an error
  | 'CONTROL_PROTOCOL'; // a line that is not a control message
export class ControlError extends FlickError<ControlErrorCode> {}

export type GuestMessage =
  | { type: 'hello' }
  | { type: 'started'; pid: number }
  | { type: 'exit'; code: number }
  | { type: 'open'; path: string }
  | { type: 'listen'; port: number }
  | { type: 'healthy' }
  | { type: 'unhealthy' }
  | { type: 'ok'; command: string }
  | { type: 'error'; text: string; command?: HostCommand['type'] };

export type HostCommand = { type: 'time'; seconds: bigint; nanos: number } | { type: 'poweroff' };

const COMMANDS: readonly HostCommand['type'][] = ['time', 'poweroff'];
/** An unanswered clock line is sent again after this long (ControlChannel.syncClock). */
export const CLOCK_RESEND_MS = 1000;

function protocolError(line: string, why: string): ControlError {
  return new ControlError('CONTROL_PROTOCOL', `control port: bad message "${line.slice(0, 80)}": ${why}`);
}

/** Parses one line (without its newline) from the guest. */
export function decodeGuestMessage(line: string): GuestMessage {
  const sp = line.indexOf(' ');
  const word = sp < 0 ? line : line.slice(0, sp);
  const rest = sp < 0 ? '' : line.slice(sp + 1);
  const int = (max: number): number => {
    if (!/^\d{1,10}$/.test(rest) || Number(rest) > max) throw protocolError(line, `expected an integer up to ${max}`);
    return Number(rest);
  };
  switch (word) {
    case 'hello':
      if (rest !== '') throw protocolError(line, 'hello takes no argument');
      return { type: 'hello' };
    case 'started':
      return { type: 'started', pid: int(2 ** 22) };
    case 'exit':
      return { type: 'exit', code: int(255) };
    case 'open':
      if (!rest.startsWith('/')) throw protocolError(line, 'expected an absolute path');
      return { type: 'open', path: rest };
    case 'listen':
      return { type: 'listen', port: int(65535) };
    case 'healthy':
    case 'unhealthy':
      if (rest !== '') throw protocolError(line, `${word} takes no argument`);
      return { type: word };
    case 'ok':
      if (rest === '') throw protocolError(line, 'ok names the command it answers');
      return { type: 'ok', command: rest };
    case 'error': {
      const m = /^([a-z]+): /.exec(rest);
      const command = COMMANDS.find((c) => c === m?.[1]);
      return command ? { type: 'error', text: rest.slice(command.length + 2), command } : { type: 'error', text: rest };
    }
    default:
      throw protocolError(line, 'unknown message');
  }
}

/** One line, newline included, as the guest writes it (the inverse of decodeGuestMessage). */
export function encodeGuestMessage(m: GuestMessage): string {
  switch (m.type) {
    case 'hello':
      return 'hello\n';
    case 'started':
      return `started ${m.pid}\n`;
    case 'exit':
      return `exit ${m.code}\n`;
    case 'open':
      return `open ${m.path}\n`;
    case 'listen':
      return `listen ${m.port}\n`;
    case 'healthy':
    case 'unhealthy':
      return `${m.type}\n`;
    case 'ok':
      return `ok ${m.command}\n`;
    case 'error':
      return `error ${m.command ? `${m.command}: ` : ''}${m.text}\n`;
  }
}

/** One line, newline included, for the guest. */
export function encodeHostCommand(c: HostCommand): string {
  if (c.type === 'poweroff') return 'poweroff\n';
  if (c.nanos < 0 || c.nanos > 999_999_999 || !Number.isInteger(c.nanos)) throw new RangeError(`nanos ${c.nanos} out of range`);
  return `time ${c.seconds}.${String(c.nanos).padStart(9, '0')}\n`;
}

/** Parses one host line (for fakes of the guest in tests). */
export function decodeHostCommand(line: string): HostCommand {
  if (line === 'poweroff') return { type: 'poweroff' };
  const m = /^time (\d+)\.(\d{9})$/.exec(line);
  if (!m) throw protocolError(line, 'expected "time <s>.<9 digits>" or "poweroff"');
  return { type: 'time', seconds: BigInt(m[1]!), nanos: Number(m[2]) };
}

/** The host's wall clock now, with sub-millisecond resolution. */
export function wallClockNow(): { seconds: bigint; nanos: number } {
  const ms = performance.timeOrigin + performance.now();
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6));
  return { seconds: BigInt(seconds), nanos };
}

function isTimeAnswer(m: GuestMessage): boolean {
  return (m.type === 'ok' || m.type === 'error') && m.command === 'time';
}

interface Waiter {
  match: (m: GuestMessage) => boolean;
  /** An answer to a command: consumed by the first waiter (the guest answers in order). */
  exclusive: boolean;
  resolve: (m: GuestMessage) => void;
  reject: (err: Error) => void;
}

export interface ControlChannelEvents {
  message: [GuestMessage];
  /** A line that did not parse; the channel keeps going. */
  protocolError: [ControlError];
  close: [];
}

/** One connection to a VM's control socket. Owned by whoever owns the VM's QEMU process. */
export class ControlChannel extends EventEmitter<ControlChannelEvents> {
  #socket: net.Socket;
  #buffer = '';
  #waiters = new Set<Waiter>();
  #closed = false;
  /** "time" lines written, and answers to them read: a time waiter takes only answers to its own lines. */
  #timeSent = 0;
  #timeAnswered = 0;
  /** One-shot messages, kept so that a late waitFor() still sees them. */
  #seen = new Map<'hello' | 'started' | 'exit' | 'healthy', GuestMessage>();

  private constructor(socket: net.Socket) {
    super();
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('error', () => {}); // 'close' follows and says the same
    socket.on('close', () => this.#onClose());
  }

  /**
   * Connects to `socketPath`, retrying while QEMU has not created or is not
   * yet accepting on it.
   */
  static async connect(socketPath: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ControlChannel> {
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(socketPath);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        return new ControlChannel(socket);
      } catch (cause) {
        const code = (cause as NodeJS.ErrnoException).code;
        const retriable = code === 'ENOENT' || code === 'ECONNREFUSED';
        if (!retriable || Date.now() >= deadline) {
          throw new ControlError('CONTROL_CONNECT_FAILED', `control port ${socketPath}: cannot connect (${code ?? String(cause)}): is the VM's QEMU running?`, {
            cause,
          });
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The next message of `type`. For the one-shot messages (hello, started,
   * exit) one that already arrived counts, so there is no race with connect.
   */
  waitFor<T extends GuestMessage['type']>(
    type: T,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Extract<GuestMessage, { type: T }>> {
    const seen = type === 'hello' || type === 'started' || type === 'exit' || type === 'healthy' ? this.#seen.get(type) : undefined;
    if (seen) return Promise.resolve(seen as Extract<GuestMessage, { type: T }>);
    return this.#wait((m) => m.type === type, `"${type}"`, opts) as Promise<Extract<GuestMessage, { type: T }>>;
  }

  /**
   * Sets the guest's CLOCK_REALTIME to the host's and waits for `ok time`. Unanswered after
   * CLOCK_RESEND_MS, the line (with the time then) is sent again, and again each CLOCK_RESEND_MS
   * until `timeoutMs`: a line written while a restored VM's port is still loading can sit unread
   * until more bytes arrive (a restore at load ~20 saw no answer within 10 s), and setting the
   * clock twice is harmless. The first `ok time` to one of its own lines answers; the guest
   * answers every line, in order, so the answers to lines sent before (an earlier sync's resends)
   * are skipped (#timeSent/#timeAnswered), never taken for this one's.
   */
  async syncClock(timeoutMs = 2000): Promise<void> {
    await this.#time(() => wallClockNow(), timeoutMs, CLOCK_RESEND_MS);
  }

  /** Sets the guest's CLOCK_REALTIME to `time` and waits for `ok time`. */
  async setClock(time: { seconds: bigint; nanos: number }, timeoutMs = 2000): Promise<void> {
    await this.#time(() => time, timeoutMs);
  }

  /**
   * Asks the init to stop the app (SIGTERM, SIGKILL after 5 s) and power off;
   * resolves when the guest acknowledges. The VM's end is the QEMU process's exit.
   */
  async poweroff(timeoutMs = 2000): Promise<void> {
    await this.#command({ type: 'poweroff' }, timeoutMs);
  }

  /** Closes the connection. Safe to call twice. */
  close(): void {
    this.#socket.destroy();
  }

  /** Writes a "time" line (again each `resendMs`, if given) and waits for the answer to one of its own lines. */
  async #time(now: () => { seconds: bigint; nanos: number }, timeoutMs: number, resendMs?: number): Promise<void> {
    if (this.#closed) throw this.#closedError('an answer to "time"');
    const first = this.#timeSent; // the guest answers in order: answers below this index are earlier lines'
    const answer = this.#wait((m) => isTimeAnswer(m) && this.#timeAnswered > first, 'an answer to "time"', { timeoutMs, exclusive: true });
    const send = () => {
      this.#timeSent += 1;
      this.#socket.write(encodeHostCommand({ type: 'time', ...now() }));
    };
    send();
    const resend = resendMs === undefined ? undefined : setInterval(send, resendMs);
    try {
      const m = await answer;
      if (m.type === 'error') throw new ControlError('CONTROL_REJECTED', `guest refused "time": ${m.text}`);
    } finally {
      clearInterval(resend);
    }
  }

  async #command(cmd: HostCommand, timeoutMs: number): Promise<void> {
    // Register before writing: the answer can arrive before write()'s callback.
    const answer = this.#wait((m) => (m.type === 'ok' || m.type === 'error') && m.command === cmd.type, `an answer to "${cmd.type}"`, {
      timeoutMs,
      exclusive: true,
    });
    this.#socket.write(encodeHostCommand(cmd));
    const m = await answer;
    if (m.type === 'error') throw new ControlError('CONTROL_REJECTED', `guest refused "${cmd.type}": ${m.text}`);
  }

  #wait(
    match: (m: GuestMessage) => boolean,
    what: string,
    opts: { timeoutMs?: number; signal?: AbortSignal; exclusive?: boolean },
  ): Promise<GuestMessage> {
    if (this.#closed) return Promise.reject(this.#closedError(what));
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        this.#waiters.delete(waiter);
      };
      const waiter: Waiter = {
        match,
        exclusive: opts.exclusive ?? false,
        resolve: (m) => (done(), resolve(m)),
        reject: (err) => (done(), reject(err)),
      };
      const onAbort = () => waiter.reject(opts.signal!.reason as Error);
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => waiter.reject(new ControlError('CONTROL_TIMEOUT', `control port: no ${what} from the guest within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
      if (opts.signal?.aborted) onAbort();
    });
  }

  #closedError(what: string): ControlError {
    return new ControlError('CONTROL_CLOSED', `control port closed while waiting for ${what}: the VM has exited`);
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let i: number;
    while ((i = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, i).replace(/\r$/, '');
      this.#buffer = this.#buffer.slice(i + 1);
      let m: GuestMessage;
      try {
        m = decodeGuestMessage(line);
      } catch (err) {
        this.emit('protocolError', err as ControlError);
        continue;
      }
      if (m.type === 'hello' || m.type === 'started' || m.type === 'exit' || m.type === 'healthy') this.#seen.set(m.type, m);
      if (isTimeAnswer(m)) this.#timeAnswered += 1;
      let answered = false;
      for (const w of [...this.#waiters]) {
        if (!w.match(m) || (w.exclusive && answered)) continue;
        answered ||= w.exclusive;
        w.resolve(m);
      }
      this.emit('message', m);
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#waiters]) w.reject(this.#closedError('an answer'));
    this.emit('close');
  }
}
