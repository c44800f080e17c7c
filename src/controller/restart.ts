// The restart policy: when an instance's VM ends without being asked to,
// `always` starts it again and `on-failure` does so unless it exited with 0.
// Restarts back off exponentially while the instance keeps crashing; a run of
// STABLE_MS or more resets the backoff.
import type { InstanceRecord, InstanceSpec } from './state/instance-record.js';

export const STABLE_MS = 10_000;

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** The delay before the (streak+1)-th consecutive restart. */
export function backoffDelay(backoff: Backoff, streak: number): number {
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(streak, 30));
}

export function shouldRestart(policy: InstanceSpec['restartPolicy'], outcome: 'failed' | 'stopped'): boolean {
  return policy === 'always' || (policy === 'on-failure' && outcome === 'failed');
}

export class RestartScheduler {
  readonly #backoff: Backoff;
  readonly #restart: (id: string) => Promise<void>;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #streak = new Map<string, number>();
  readonly #runningSince = new Map<string, number>();

  constructor(backoff: Backoff, restart: (id: string) => Promise<void>) {
    this.#backoff = backoff;
    this.#restart = restart;
  }

  onRunning(id: string): void {
    this.#runningSince.set(id, Date.now());
  }

  /** Schedules a restart if the policy asks for one; returns the delay, or undefined. */
  onExit(rec: InstanceRecord, outcome: 'failed' | 'stopped'): number | undefined {
    if (!shouldRestart(rec.spec.restartPolicy, outcome)) return undefined;
    const since = this.#runningSince.get(rec.id);
    if (since !== undefined && Date.now() - since >= STABLE_MS) this.#streak.delete(rec.id);
    this.#runningSince.delete(rec.id);
    const streak = this.#streak.get(rec.id) ?? 0;
    this.#streak.set(rec.id, streak + 1);
    const delay = backoffDelay(this.#backoff, streak);
    this.cancel(rec.id);
    const timer = setTimeout(() => {
      this.#timers.delete(rec.id);
      void this.#restart(rec.id);
    }, delay);
    this.#timers.set(rec.id, timer);
    return delay;
  }

  /** A user's start, stop or rm supersedes a pending restart. */
  cancel(id: string): void {
    clearTimeout(this.#timers.get(id));
    this.#timers.delete(id);
  }

  dispose(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }
}
