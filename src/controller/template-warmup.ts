// Warm-up requests before the template snapshot. An app that has never served
// a request still has its first-request work ahead of it (node: compiling the
// HTTP server's code paths lazily; under TCG each is translated too), and a
// template taken at first readiness makes every cold wake pay it again: node's
// first answer after a restore took ~640 ms from such a template and ~145 ms
// from one taken after three `GET /` (bench/wake-probe.ts). So for an HTTP
// service the controller sends a few `GET /` to the app before it pauses it,
// marked with a `User-Agent` the app can recognize. Any answer (even a 404 or a
// 500) warms the path; no answer within the time limit only means no warm-up.
import http from 'node:http';

/** How many `GET /` the app gets before its template is taken, by default (0: none). */
export const DEFAULT_TEMPLATE_WARMUP_REQUESTS = 3;
export const WARMUP_USER_AGENT = 'flick-template-warmup';
const WARMUP_TIMEOUT_MS = 10_000;

export interface WarmupTarget {
  /** Where the host reaches the guest's port. */
  host: string;
  port: number;
  /** The `Host` header the proxy would send. */
  hostname: string;
}

/**
 * Sends `requests` GET / one after another, each read to its end, and resolves
 * when they are done. Never rejects: a failed or slow request ends the warm-up.
 * Returns how many got an answer.
 */
export async function warmUp(target: WarmupTarget, requests: number, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<number> {
  let answered = 0;
  for (let i = 0; i < requests; i++) {
    if (opts.signal?.aborted) break;
    if (!(await oneRequest(target, opts.timeoutMs ?? WARMUP_TIMEOUT_MS, opts.signal))) break;
    answered++;
  }
  return answered;
}

function oneRequest(t: WarmupTarget, timeoutMs: number, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    // agent: false and Connection: close: no socket of ours stays open into the snapshot.
    const req = http.get({
      host: t.host,
      port: t.port,
      path: '/',
      agent: false,
      headers: { host: t.hostname, 'user-agent': WARMUP_USER_AGENT, connection: 'close' },
      timeout: timeoutMs,
      ...(signal ? { signal } : {}),
    });
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => resolve(true));
      res.once('error', () => resolve(false));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}
