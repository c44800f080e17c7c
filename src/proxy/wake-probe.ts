// The proxy's side of a wake's breakdown: the first request forwarded after a
// wake marks when it went upstream, when its response began and when its first
// byte reached the client, and reports the three through the seam
// (AwakeInstance.reportWake) with how long the gate waited for the wake.
import { performance } from 'node:perf_hooks';
import type { ProxyWakeTimes } from './waker.js';

/**
 * Times the first request forwarded after a wake (the wake breakdown's proxy side) and reports
 * it through the seam once its first byte reached the client. Marks after the first are ignored.
 */
export class WakeProbe {
  readonly #report: (times: ProxyWakeTimes) => void;
  readonly #waitMs: number;
  readonly #woke: number;
  #forwarded: number | undefined;
  #upstream: number | undefined;
  #reported = false;

  constructor(report: (times: ProxyWakeTimes) => void, waitMs: number, woke: number) {
    this.#report = report;
    this.#waitMs = waitMs;
    this.#woke = woke;
  }

  /** The request was written upstream. */
  forwarded(): void {
    this.#forwarded ??= performance.now();
  }

  /** The instance's response began. */
  upstreamByte(): void {
    if (this.#forwarded !== undefined) this.#upstream ??= performance.now();
  }

  /** The proxy wrote its first byte of the response to the client: the wake is over. */
  clientByte(): void {
    if (this.#reported || this.#forwarded === undefined || this.#upstream === undefined) return;
    this.#reported = true;
    const now = performance.now();
    try {
      this.#report({ waitMs: this.#waitMs, forwardMs: this.#forwarded - this.#woke, upstreamMs: this.#upstream - this.#forwarded, clientMs: now - this.#upstream });
    } catch {
      // The breakdown is for reading; a failure to record it must not break the response.
    }
  }
}
