// The one lease a host holds in etcd. Everything the host owns in the cluster
// (its liveness key; later, its instances' ownership records) is attached to
// it or fenced on it, so when the host is gone for longer than the TTL etcd
// drops it all at once. Renewed every third of its TTL; a renewal that finds
// the lease lapsed (the host was cut off or stalled past the TTL) grants a new
// one and reports `lost`, so the owner re-registers under the new id and stops
// acting on what it no longer owns. Renewals that cannot reach etcd are
// retried: a host keeps serving through an etcd outage. The lease id is kept in
// the data dir, so a flickd restarted within the TTL carries on with it.
import { EtcdError, type EtcdClient } from './etcd-client.js';

export interface HostLeaseOptions {
  ttlSeconds: number;
  /** The lease lapsed and `next` replaces it (after an etcd outage longer than the TTL, or a stall). */
  onLost?: (previous: string, next: string) => void | Promise<void>;
  /** Renewals failing or recovering, for logs. */
  onTrouble?: (err: unknown) => void;
}

export class HostLease {
  readonly #etcd: EtcdClient;
  readonly #opts: HostLeaseOptions;
  #id: string;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #renewing = false;
  /** When a renewal last reached etcd (ms since epoch). */
  lastRenewedAt = Date.now();

  private constructor(etcd: EtcdClient, id: string, opts: HostLeaseOptions) {
    this.#etcd = etcd;
    this.#id = id;
    this.#opts = opts;
  }

  /**
   * A new lease, or `previous` (the lease of the flickd this one replaces, from
   * the data dir) if it is still alive: a flickd restarted within its TTL keeps
   * its lease, so the cluster never sees its host down.
   */
  static async grant(etcd: EtcdClient, opts: HostLeaseOptions, previous?: string): Promise<HostLease> {
    let id: string | undefined;
    if (previous) {
      const ttl = await etcd.leaseKeepAlive(previous).catch(() => 0);
      if (ttl > 0) id = previous;
    }
    id ??= (await etcd.leaseGrant(opts.ttlSeconds)).id;
    const lease = new HostLease(etcd, id, opts);
    lease.adopted = id === previous;
    lease.#schedule();
    return lease;
  }

  /** Whether this lease was kept from the flickd before (see grant). */
  adopted = false;

  get id(): string {
    return this.#id;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#renew(), Math.max(200, (this.#opts.ttlSeconds * 1000) / 3));
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#stopped || this.#renewing) return;
    this.#renewing = true;
    try {
      const ttl = await this.#etcd.leaseKeepAlive(this.#id).catch((err: unknown) => {
        if (err instanceof EtcdError && err.code === 'ETCD_LEASE_NOT_FOUND') return 0;
        throw err;
      });
      this.lastRenewedAt = Date.now();
      if (ttl === 0 && !this.#stopped) {
        const previous = this.#id;
        this.#id = (await this.#etcd.leaseGrant(this.#opts.ttlSeconds)).id;
        await this.#opts.onLost?.(previous, this.#id);
      }
    } catch (err) {
      this.#opts.onTrouble?.(err);
    } finally {
      this.#renewing = false;
      this.#schedule();
    }
  }

  /**
   * One renewal now, within `boundMs`: a stopping flickd renews last, so the
   * next one here has the lease's whole TTL to adopt it (fence-guard.ts waits
   * that long). False if etcd did not answer in time.
   */
  async renewNow(boundMs: number): Promise<boolean> {
    if (this.#stopped) return false;
    const before = this.lastRenewedAt;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#renew(), new Promise<void>((r) => (timer = setTimeout(r, boundMs)))]);
    clearTimeout(timer);
    return this.lastRenewedAt !== before;
  }

  /**
   * Stops renewing. `revoke`: the lease goes now (and what is attached to it);
   * otherwise it lapses at its TTL unless a restarted flickd adopts it first.
   * Safe to call twice.
   */
  async release(opts: { revoke?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (opts.revoke) await this.#etcd.leaseRevoke(this.#id).catch(() => {});
  }
}
