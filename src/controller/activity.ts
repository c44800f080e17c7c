// Scale to zero's in-flight accounting: requests and client connections per
// instance, and the cooldown timer that suspends an instance once it is idle.
import { describeError } from '../errors.js';
import type { InstanceRecord } from './state/instance-record.js';
import type { InstanceHost } from './instance-host.js';

export class Activity {
  readonly #t: InstanceHost;
  /** What the cooldown does when it expires (ScaleToZero.suspend). */
  readonly #suspend: (id: string) => Promise<void>;
  readonly #inFlight = new Map<string, number>();
  /** Open client connections (policy `on` waits for them to close; `idle` does not). */
  readonly #connections = new Map<string, number>();
  readonly #idleTimers = new Map<string, NodeJS.Timeout>();

  constructor(target: InstanceHost, suspend: (id: string) => Promise<void>) {
    this.#t = target;
    this.#suspend = suspend;
  }

  inFlight(id: string): number {
    return this.#inFlight.get(id) ?? 0;
  }

  connections(id: string): number {
    return this.#connections.get(id) ?? 0;
  }

  requestStarted(id: string): void {
    this.#inFlight.set(id, (this.#inFlight.get(id) ?? 0) + 1);
    this.clearIdle(id);
  }

  requestFinished(id: string): void {
    const n = Math.max(0, (this.#inFlight.get(id) ?? 0) - 1);
    this.#inFlight.set(id, n);
    if (n === 0) {
      const rec = this.#t.get(id);
      if (rec) this.#scheduleIdle(rec);
    }
  }

  /** Called when an instance becomes running: start its cooldown. */
  onRunning(rec: InstanceRecord): void {
    if ((this.#inFlight.get(rec.id) ?? 0) === 0) this.#scheduleIdle(rec);
  }

  connectionOpened(id: string): void {
    this.#connections.set(id, (this.#connections.get(id) ?? 0) + 1);
  }

  connectionClosed(id: string): void {
    const n = Math.max(0, (this.#connections.get(id) ?? 0) - 1);
    this.#connections.set(id, n);
    if (n === 0 && (this.#inFlight.get(id) ?? 0) === 0) {
      const rec = this.#t.get(id);
      if (rec) this.#scheduleIdle(rec);
    }
  }

  /** Drops the instance's counts (it was removed). */
  forget(id: string): void {
    this.#inFlight.delete(id);
    this.#connections.delete(id);
  }

  clearIdle(id: string): void {
    clearTimeout(this.#idleTimers.get(id));
    this.#idleTimers.delete(id);
  }

  dispose(): void {
    for (const t of this.#idleTimers.values()) clearTimeout(t);
    this.#idleTimers.clear();
  }

  #scheduleIdle(rec: InstanceRecord): void {
    this.clearIdle(rec.id);
    if (rec.spec.scaleToZero.policy === 'off') return;
    const timer = setTimeout(() => {
      this.#idleTimers.delete(rec.id);
      void this.#suspend(rec.id).catch((err) => this.#t.log.warn(`instance ${rec.name}: suspend: ${describeError(err)}`));
    }, rec.spec.scaleToZero.cooldownTimeMs);
    this.#idleTimers.set(rec.id, timer);
  }
}
