// The hot tier of standby: which instances keep a paused VMM process, when
// their guest RAM goes back to its file (page-out), and which are demoted to
// cold (no process) when the hot ones hold more host RAM than the budget.
//
// When to page out: a paused VM that keeps its page cache wakes in ~6 ms
// (minimal) / ~9-12 ms (node); with all of its guest RAM paged out it holds
// less but its next wake costs ~+25 / ~+60 ms while the guest faults its RAM
// back (FINDINGS). Traffic tends to come in bursts, so an
// instance that just went to standby is the likeliest to be asked again: it
// stays resident for `pageOutAfterMs` (default 10 s) and is paged out after
// that, down to `keepResident` (default a quarter of its guest RAM) of its most
// recently used guest RAM. Measured (FINDINGS): the minimal server (128 MiB)
// wakes paged out in ~33 ms keeping nothing, ~23 ms keeping 16 MiB, ~9 ms
// keeping 32; node (256 MiB) in ~67 ms keeping 32 MiB, ~30 ms keeping 64. `pageOutAfterMs: 0` pages out
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
   * guest RAM, which is what its next wake touches first. `{ bytes: 0 }`: all goes.
   */
  keepResident: KeepResident;
}

/** How much of a paged-out instance's guest RAM stays resident: a size, or a share of its guest RAM. */
export type KeepResident = { bytes: number } | { share: number };

/** Bytes to keep of a guest with `memoryMb` of RAM. */
export function keepResidentBytes(keep: KeepResident, memoryMb: number): number {
  return 'bytes' in keep ? keep.bytes : Math.floor(keep.share * memoryMb * 1024 * 1024);
}

/** "25%" → a share, "32M" → bytes (what `--hot-keep-resident` takes); text for the API the other way. */
export function formatKeepResident(keep: KeepResident): string {
  return 'bytes' in keep ? String(keep.bytes) : `${Math.round(keep.share * 100)}%`;
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
export const DEFAULT_KEEP_RESIDENT: KeepResident = { share: 0.25 };

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
