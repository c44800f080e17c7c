// Which templates the primed pool keeps VMs of, and how many: the busiest first, by cold wakes in
// a sliding window. A template with n cold wakes in the window wants 1 + floor(log2 n) VMs, at
// most `maxPerTemplate`: one covers a template woken now and then, more cover wakes that come in
// bursts faster than a refill (~0.1-0.3 s under TCG). Pure bookkeeping: no VM is touched here.
import type { Snapshot, VmConfig } from '../../vmm/driver.js';

/** What a primed VM of one template is restored from and with. */
export interface PrimeSpec {
  template: Snapshot;
  /** The VM config of an instance that woke from it, without id, run folder or network (the pool's own go in). */
  config: VmConfig;
  /** Where its app answers HTTP (guest port, Host name): what a warmed pool VM is sent its warm-up requests at. */
  http?: { port: number; hostname: string };
}

export interface DemandOptions {
  /** Cold wakes older than this no longer count. */
  windowMs: number;
  maxPerTemplate: number;
}

export const DEFAULT_DEMAND: DemandOptions = { windowMs: 10 * 60_000, maxPerTemplate: 4 };

/** How many VMs one template wants, in the order the pool fills them. */
export interface Want {
  templateDir: string;
  spec: PrimeSpec;
  count: number;
  /** Cold wakes in the window (the priority). */
  wakes: number;
  lastAt: number;
}

export class ColdWakeDemand {
  readonly #opts: DemandOptions;
  readonly #byTemplate = new Map<string, { spec: PrimeSpec; at: number[] }>();

  constructor(opts: Partial<DemandOptions> = {}) {
    this.#opts = { ...DEFAULT_DEMAND, ...opts };
  }

  /** A cold wake of an instance of `spec.template` (served by the pool or not). */
  note(spec: PrimeSpec, now: number): void {
    const dir = spec.template.dir;
    const d = this.#byTemplate.get(dir);
    if (d === undefined) this.#byTemplate.set(dir, { spec, at: [now] });
    else {
      d.spec = spec; // the newest: a replaced template (another createdAt) is what wakes use now
      d.at.push(now);
      this.#prune(d.at, now);
    }
  }

  /** The template went (removed, replaced): it wants nothing until it is woken again. */
  forget(templateDir: string): void {
    this.#byTemplate.delete(templateDir);
  }

  /** The spec the pool should prime `templateDir` with now, if it is in demand. */
  spec(templateDir: string): PrimeSpec | undefined {
    return this.#byTemplate.get(templateDir)?.spec;
  }

  /** Templates in demand, busiest first (ties: most recently woken first). */
  wants(now: number): Want[] {
    const out: Want[] = [];
    for (const [templateDir, d] of this.#byTemplate) {
      this.#prune(d.at, now);
      if (d.at.length === 0) {
        this.#byTemplate.delete(templateDir);
        continue;
      }
      const count = Math.min(this.#opts.maxPerTemplate, 1 + Math.floor(Math.log2(d.at.length)));
      out.push({ templateDir, spec: d.spec, count, wakes: d.at.length, lastAt: d.at[d.at.length - 1]! });
    }
    return out.sort((a, b) => b.wakes - a.wakes || b.lastAt - a.lastAt);
  }

  #prune(at: number[], now: number): void {
    const from = now - this.#opts.windowMs;
    let i = 0;
    while (i < at.length && at[i]! < from) i++;
    if (i > 0) at.splice(0, i);
  }
}

/**
 * The next template to prime one more VM of: in priority order, the first whose
 * count is below its want, filling every template's first VM before anyone's second.
 */
export function nextToPrime(wants: readonly Want[], have: (templateDir: string) => number): Want | undefined {
  const most = Math.max(0, ...wants.map((w) => w.count));
  for (let level = 1; level <= most; level++) {
    for (const w of wants) if (w.count >= level && have(w.templateDir) < level) return w;
  }
  return undefined;
}
