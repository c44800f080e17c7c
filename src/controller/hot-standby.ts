// The hot tier of standby: which instances keep a paused VMM process, when
// their guest RAM goes back to its file (page-out), and which are demoted to
// cold (no process) when the hot ones hold more host RAM than the budget.
//
// When to page out: a paused VM that keeps its page cache wakes in ~6 ms
// (minimal) / ~14 ms (node); with all of its guest RAM paged out it holds ~40 /
// ~95 MB less but its next wake costs ~+20 / ~+50 ms while the guest faults its
// RAM back (bench/results/wake.json). Traffic tends to come in bursts, so an
// instance that just went to standby is the likeliest to be asked again: it
// stays resident for `pageOutAfterMs` (default 10 s) and is paged out after
// that, down to `keepResidentBytes` (default 32 MiB) of its most recently used
// guest RAM: measured on the minimal server, keeping 32 MiB brings a paged-out
// wake from ~30 ms to ~9 ms (16 MiB: ~23 ms). `pageOutAfterMs: 0` pages out
// at suspend (densest); the budget then counts paged-out sizes. Over budget,
// the least recently suspended hot instance is demoted first (its own RAM is
// what a cold wake would restore from anyway).
import type { ControllerLogger } from './seams.js';
import { describeError } from '../errors.js';

export interface HotStandbyConfig {
  /** Host RAM all hot-standby instances together may hold (bytes). 0: no hot tier, every suspend is cold. */
  budgetBytes: number;
  /** How long a hot instance keeps its guest RAM resident before it is paged out. */
  pageOutAfterMs: number;
  /**
   * Page cache a paged-out instance keeps: the most recently used part of its
   * guest RAM, which is what its next wake touches first. 0: all of it goes.
   */
  keepResidentBytes: number;
}

export interface HotStandbyActions {
  /** Host RAM instance `id` holds now (its cgroup's usage, or an estimate). */
  usage(id: string): number;
  pageOut(id: string): Promise<void>;
  /** Demote to cold: save what must be saved, end the process. */
  demote(id: string): Promise<void>;
  log: ControllerLogger;
}

export const DEFAULT_PAGE_OUT_AFTER_MS = 10_000;
export const DEFAULT_KEEP_RESIDENT_BYTES = 32 * 1024 * 1024;

export class HotStandby {
  readonly config: HotStandbyConfig;
  readonly #act: HotStandbyActions;
  /** Hot instances in the order they went to standby (Map keeps insertion order: the first is the LRU). */
  readonly #hot = new Map<string, { since: number; timer: NodeJS.Timeout | undefined }>();
  #enforcing: Promise<void> = Promise.resolve();

  constructor(config: HotStandbyConfig, actions: HotStandbyActions) {
    this.config = config;
    this.#act = actions;
  }

  get enabled(): boolean {
    return this.config.budgetBytes > 0;
  }

  ids(): string[] {
    return [...this.#hot.keys()];
  }

  has(id: string): boolean {
    return this.#hot.has(id);
  }

  /** `id` went to hot standby (or was found so after a restart): schedule its page-out, keep the budget. */
  add(id: string): void {
    this.remove(id);
    const timer =
      this.config.pageOutAfterMs > 0
        ? setTimeout(() => void this.#pageOut(id), this.config.pageOutAfterMs).unref()
        : undefined;
    this.#hot.set(id, { since: Date.now(), timer });
    if (this.config.pageOutAfterMs <= 0) void this.#pageOut(id);
    else this.enforceBudget();
  }

  /** `id` is no longer hot (woken, demoted, stopped, removed). */
  remove(id: string): void {
    const e = this.#hot.get(id);
    if (e === undefined) return;
    clearTimeout(e.timer);
    this.#hot.delete(id);
  }

  /** Total host RAM the hot tier holds now. */
  usedBytes(): number {
    let total = 0;
    for (const id of this.#hot.keys()) total += this.#act.usage(id);
    return total;
  }

  /** Demotes least recently suspended instances until the hot tier fits the budget. One pass at a time. */
  enforceBudget(): void {
    this.#enforcing = this.#enforcing.then(async () => {
      for (;;) {
        if (this.#hot.size === 0 || this.usedBytes() <= this.config.budgetBytes) return;
        const [lru] = this.#hot.keys();
        this.remove(lru!);
        await this.#act.demote(lru!).catch((err) => this.#act.log.warn(`hot standby: demoting ${lru}: ${describeError(err)}`));
      }
    });
  }

  dispose(): void {
    for (const e of this.#hot.values()) clearTimeout(e.timer);
    this.#hot.clear();
  }

  async #pageOut(id: string): Promise<void> {
    const e = this.#hot.get(id);
    if (e === undefined) return;
    e.timer = undefined;
    await this.#act.pageOut(id).catch((err) => this.#act.log.warn(`hot standby: paging out ${id}: ${describeError(err)}`));
    this.enforceBudget();
  }
}
