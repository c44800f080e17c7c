// A QMP client over a unix socket. Replies are matched to commands by the `id`
// the client puts on each command (never "the next line is the reply"):
// events can arrive between a command and its reply, and go to listeners.
// Every line is validated (qmp-schema.ts). When the socket closes, every
// pending command rejects with QMP_CLOSED: that is what "QEMU died" looks like.
// Spec: https://www.qemu.org/docs/master/interop/qmp-spec.html
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { FlickError } from '../../errors.js';
import { QmpEventSchema, QmpGreetingSchema, QmpMessageSchema, type QmpEvent, type QmpGreeting } from './qmp-schema.js';

export type QmpErrorCode =
  | 'QMP_ERROR' // QEMU answered a command with an error
  | 'QMP_CLOSED' // the QMP connection closed (QEMU died) while a command was pending
  | 'QMP_PROTOCOL' // the monitor sent something that is not QMP (bad greeting, malformed JSON)
  | 'QMP_TIMEOUT'; // no answer in time, or the call was aborted

/** The QEMU driver's own monitor errors; the VMM seam's callers see them only as a `cause`, or as a QmpError's message. */
export class QmpError extends FlickError<QmpErrorCode> {}

export interface QmpCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class QmpClient {
  readonly greeting: QmpGreeting;
  /** Settles (never rejects) when the connection is gone, with the reason. */
  readonly closed: Promise<QmpError>;
  #socket: net.Socket;
  #pending = new Map<string, Pending>();
  #events = new EventEmitter();
  #nextId = 1;
  #closeError: QmpError | undefined;
  #resolveClosed!: (err: QmpError) => void;

  private constructor(socket: net.Socket, greeting: QmpGreeting, rest: string) {
    this.#socket = socket;
    this.greeting = greeting;
    this.#events.setMaxListeners(0);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    let buf = rest;
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line !== '') this.#onLine(line);
        if (this.#closeError) return;
      }
    });
    socket.on('error', () => {}); // 'close' follows and carries the verdict
    socket.on('close', () => this.#fail(new QmpError('QMP_CLOSED', 'QMP connection closed: the QEMU process exited or closed its monitor')));
  }

  /**
   * Connects to `socketPath`, reads the greeting and leaves capabilities
   * negotiation mode. Rejects with QMP_CLOSED if nothing listens there.
   */
  static async connect(socketPath: string, opts: QmpCallOptions = {}): Promise<QmpClient> {
    const socket = net.createConnection(socketPath);
    socket.setEncoding('utf8');
    const cleanupTimer = startTimeout(opts, (err) => socket.destroy(err));
    try {
      const { greeting, rest } = await new Promise<{ greeting: QmpGreeting; rest: string }>((resolve, reject) => {
        let buf = '';
        const onData = (chunk: string) => {
          buf += chunk;
          const i = buf.indexOf('\n');
          if (i < 0) return;
          socket.off('data', onData).off('error', onError).off('close', onClose);
          const parsed = QmpGreetingSchema.safeParse(safeJson(buf.slice(0, i)));
          if (!parsed.success) {
            socket.destroy();
            reject(new QmpError('QMP_PROTOCOL', `QMP greeting on ${socketPath} is not valid: is this a QEMU monitor socket?`));
            return;
          }
          resolve({ greeting: parsed.data, rest: buf.slice(i + 1) });
        };
        const onError = (err: Error) => reject(err instanceof QmpError ? err : closedError(socketPath, err));
        const onClose = () => reject(closedError(socketPath));
        socket.on('data', onData).on('error', onError).on('close', onClose);
      });
      const client = new QmpClient(socket, greeting, '');
      // Safe to feed `rest` after construction: QEMU sends nothing but the greeting before qmp_capabilities.
      if (rest.trim() !== '') socket.emit('data', rest);
      await client.execute('qmp_capabilities', undefined, opts);
      return client;
    } finally {
      cleanupTimer();
    }
  }

  /** Sends a command and resolves with its `return` value; rejects with QMP_ERROR on an `error` reply. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: QmpCallOptions = {}): Promise<T> {
    if (this.#closeError) return Promise.reject(this.#closeError);
    const id = `flick-${this.#nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const cleanupTimer = startTimeout(opts, (err) => {
        this.#pending.delete(id);
        reject(err);
      }, `QMP command ${command}`);
      this.#pending.set(id, {
        command,
        resolve: (v) => {
          cleanupTimer();
          resolve(v as T);
        },
        reject: (e) => {
          cleanupTimer();
          reject(e);
        },
      });
      const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.#socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Calls `listener` for every event named `name` (or every event for '*'); returns an unsubscribe function. */
  onEvent(name: string, listener: (event: QmpEvent) => void): () => void {
    this.#events.on(name, listener);
    return () => this.#events.off(name, listener);
  }

  /**
   * Resolves with the next event named `name` that satisfies `predicate`.
   * Subscribe before sending the command that causes it, or it can be missed.
   */
  waitForEvent(name: string, opts: QmpCallOptions & { predicate?: (event: QmpEvent) => boolean } = {}): Promise<QmpEvent> {
    if (this.#closeError) return Promise.reject(this.#closeError);
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, event?: QmpEvent) => {
        if (settled) return;
        settled = true;
        off();
        cleanupTimer();
        if (err) reject(err);
        else resolve(event as QmpEvent);
      };
      const off = this.onEvent(name, (event) => {
        if (!opts.predicate || opts.predicate(event)) finish(undefined, event);
      });
      const cleanupTimer = startTimeout(opts, (err) => finish(err), `waiting for QMP event ${name}`);
      void this.closed.then((err) => finish(err));
    });
  }

  /** Closes the connection; pending commands reject with QMP_CLOSED. Safe to call twice. */
  close(): void {
    this.#socket.destroy();
  }

  #onLine(line: string): void {
    const json = safeJson(line);
    const parsed = QmpMessageSchema.safeParse(json);
    if (!parsed.success) {
      // A monitor that sends something else cannot be trusted to match replies any more.
      this.#fail(new QmpError('QMP_PROTOCOL', `QMP sent a message that is not valid QMP (${line.slice(0, 120)}): the QEMU process is not usable; kill it`));
      this.#socket.destroy();
      return;
    }
    const msg = parsed.data;
    if ('event' in msg) {
      const event = QmpEventSchema.parse(msg);
      this.#events.emit(event.event, event);
      this.#events.emit('*', event);
      return;
    }
    const id = msg.id === undefined ? undefined : String(msg.id);
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (!pending || id === undefined) return; // a reply to a command we gave up on (timeout/abort)
    this.#pending.delete(id);
    if ('error' in msg) {
      pending.reject(
        new QmpError('QMP_ERROR', `QEMU refused ${pending.command}: ${msg.error.desc} (${msg.error.class})`, {
          details: { command: pending.command, class: msg.error.class, desc: msg.error.desc },
        }),
      );
    } else {
      pending.resolve(msg.return);
    }
  }

  #fail(err: QmpError): void {
    if (this.#closeError) return;
    this.#closeError = err;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(new QmpError(err.code, `${err.message} while ${p.command} was pending`, { cause: err }));
    }
    this.#resolveClosed(err);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function closedError(socketPath: string, cause?: Error): QmpError {
  return new QmpError('QMP_CLOSED', `cannot talk QMP on ${socketPath}: ${cause?.message ?? 'connection closed'}; is the QEMU process running?`, {
    cause,
  });
}

/** Arms `opts.timeoutMs` and `opts.signal`; returns the disarm function. */
export function startTimeout(opts: QmpCallOptions, onFire: (err: Error) => void, what = 'QMP connect'): () => void {
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    disarm();
    onFire(new QmpError('QMP_TIMEOUT', `${what} was aborted`, { cause: opts.signal?.reason }));
  };
  const disarm = () => {
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  };
  if (opts.signal?.aborted) {
    queueMicrotask(onAbort);
    return disarm;
  }
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.timeoutMs !== undefined) {
    timer = setTimeout(() => {
      disarm();
      onFire(new QmpError('QMP_TIMEOUT', `${what} got no answer within ${opts.timeoutMs} ms: QEMU may be hung; kill it`));
    }, opts.timeoutMs);
  }
  return disarm;
}
