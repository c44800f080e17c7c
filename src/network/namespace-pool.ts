// VM networks by address slot, most of them made before anyone asks. A
// network (namespace, tap, veth, rules: namespace-network.ts) belongs to a VM
// process, not to an instance: the controller acquires one when a VM is about
// to run (boot, cold wake) and releases it when the process ends, so a
// cold-standby instance holds none and 10,000 of them cost no kernel memory.
// Making a namespace takes ~50 ms, so a pool of ready ones (all with the same
// rules as any other) is refilled in the background, one at a time, and a
// cold wake takes one without waiting. A namespace is used once: release
// deletes it, so no VM ever sees conntrack entries or neighbours of another.
//
// Names are `<prefix>n<slot>`; the slot picks the host-reachable /30. The
// pool's own bookkeeping is in memory: after a restart, `sweep(keep)` is told
// which networks live VMs hold and removes every other name of ours (pool
// namespaces and orphans alike), so a crash at any point leaks nothing.
import fs from 'node:fs';
import { describeError } from '../errors.js';
import type { HeldNetwork, InstanceNetwork, NetworkLease } from '../controller/seams.js';
import { allocateIndex } from './addresses.js';
import { NamespaceNetwork, type NamespaceNetworkConfig } from './namespace-network.js';

export const DEFAULT_NETNS_POOL_SIZE = 8;
/**
 * How long after handing a network out the refill starts: making one is ~10
 * process spawns, and on a small host they would compete for the CPU with the
 * restore that network was taken for.
 */
const REFILL_DELAY_MS = 250;
/** Instance ids are 12 hex digits: the per-instance names of flickds before pooling, still swept. */
const LEGACY_NAME = /^[0-9a-f]{12}$/;
const SLOT_NAME = /^n(\d+)$/;

export interface NamespacePoolConfig extends NamespaceNetworkConfig {
  /** Ready networks kept in reserve (0: every VM start makes its own). */
  size?: number;
  log?: (line: string) => void;
}

export class NamespacePool implements InstanceNetwork {
  readonly network: NamespaceNetwork;
  readonly size: number;
  readonly #log: (line: string) => void;
  /** Made and not handed out, oldest first. */
  readonly #ready: NetworkLease[] = [];
  /** Slots whose namespace exists or is being made or removed: never handed out twice. */
  readonly #used = new Set<number>();
  #filling: Promise<void> | undefined;
  #refillTimer: NodeJS.Timeout | undefined;
  /** Namespaces being deleted; dispose waits for them. */
  readonly #releasing = new Set<Promise<void>>();
  #disposed = false;

  constructor(config: NamespacePoolConfig = {}) {
    this.network = new NamespaceNetwork(config);
    this.size = config.size ?? DEFAULT_NETNS_POOL_SIZE;
    this.#log = config.log ?? (() => {});
  }

  get prefix(): string {
    return this.network.prefix;
  }

  /** How many ready networks wait in the pool now. */
  get readyCount(): number {
    return this.#ready.length;
  }

  /** A ready network from the pool (no waiting), or one made now when the pool is empty. */
  async acquire(): Promise<NetworkLease> {
    const lease = this.#ready.shift();
    this.#refillSoon();
    return lease ?? (await this.#make());
  }

  /** Deletes the network (its VM has ended). Its slot is reusable once the namespace is gone. */
  async release(held: HeldNetwork): Promise<void> {
    const name = held.netns.startsWith(this.prefix) ? held.netns.slice(this.prefix.length) : undefined;
    if (name === undefined || !(SLOT_NAME.test(name) || LEGACY_NAME.test(name))) return; // not ours: never touched
    const p = this.network.detach(name, held.index);
    this.#releasing.add(p);
    try {
      await p;
    } finally {
      this.#releasing.delete(p);
    }
    // A legacy name's index was an instance's; it is free the same way. A failed delete keeps the slot taken.
    this.#used.delete(held.index);
    this.#refillSoon();
  }

  /**
   * At start: keeps the networks live VMs hold, removes every other namespace
   * named like ours (`<prefix>n<slot>` or a legacy `<prefix><instance id>`),
   * then fills the pool in the background.
   */
  async sweep(keep: readonly HeldNetwork[]): Promise<void> {
    const kept = new Set(keep.map((k) => k.netns));
    for (const k of keep) this.#used.add(k.index);
    let names: string[] = [];
    try {
      names = fs.readdirSync('/run/netns');
    } catch {
      // No /run/netns: no namespace was ever made.
    }
    for (const ns of names) {
      if (!ns.startsWith(this.prefix) || kept.has(ns)) continue;
      const name = ns.slice(this.prefix.length);
      if (!SLOT_NAME.test(name) && !LEGACY_NAME.test(name)) continue;
      // The index only picks addresses; teardown goes by the name.
      await this.network.detach(name, 0);
    }
    this.#refill();
  }

  /** Stops refilling and removes the pool's ready namespaces (held ones stay with their VMs). Safe twice. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    clearTimeout(this.#refillTimer);
    this.#refillTimer = undefined;
    await this.#filling;
    await Promise.allSettled([...this.#releasing]);
    for (const lease of this.#ready.splice(0)) {
      await this.network.detach(`n${lease.index}`, lease.index).catch((err) => this.#log(`network pool: ${describeError(err)}`));
      this.#used.delete(lease.index);
    }
  }

  async #make(): Promise<NetworkLease> {
    const index = allocateIndex(this.network.pool, this.#used);
    this.#used.add(index);
    try {
      return { index, attachment: await this.network.attach(`n${index}`, index) };
    } catch (err) {
      this.#used.delete(index); // attach removed what it made
      throw err;
    }
  }

  #refillSoon(): void {
    if (this.#refillTimer || this.#disposed) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#refill();
    }, REFILL_DELAY_MS).unref();
  }

  #refill(): void {
    if (this.#filling || this.#disposed || this.#ready.length >= this.size) return;
    this.#filling = (async () => {
      while (!this.#disposed && this.#ready.length < this.size) {
        try {
          this.#ready.push(await this.#make());
        } catch (err) {
          // Out of addresses or a broken host: VM starts then make their own (and report why).
          this.#log(`network pool: refill stopped: ${describeError(err)}`);
          return;
        }
      }
    })().finally(() => (this.#filling = undefined));
  }

  /** Resolves when the background refill (if any) is done: for tests and benchmarks. */
  async settled(): Promise<void> {
    while (this.#filling || this.#refillTimer) await (this.#filling ?? new Promise((r) => setTimeout(r, 20)));
  }
}
