// Which instance holds which VM network, kept in the store. A network belongs
// to a VM process (src/network/namespace-pool.ts): it is attached, and
// persisted with the record, right before a VM runs (boot, cold wake) and
// released when the process ends (stop, crash, cold standby). So a record
// names a network exactly while its VM may be alive, and after a crash the
// records say which namespaces live VMs still use.
import { describeError } from '../errors.js';
import type { InstanceRecord } from './state/instance-record.js';
import type { StateStore } from './state/state-store.js';
import type { VmConfig } from '../vmm/driver.js';
import type { ControllerLogger, HeldNetwork, InstanceNetwork, NetworkLease } from './seams.js';
import { ControllerError } from './states.js';

export class VmNetworks {
  readonly #store: StateStore;
  readonly #network: InstanceNetwork;
  readonly #log: ControllerLogger;

  constructor(store: StateStore, network: InstanceNetwork, log: ControllerLogger) {
    this.#store = store;
    this.#network = network;
    this.#log = log;
  }

  /**
   * Takes a network for instance `id`'s VM about to run and persists it (slot
   * and attachment) before the VM exists. Returns `config` with the network.
   */
  async attach(id: string, config: VmConfig): Promise<VmConfig> {
    const lease = await this.#network.acquire();
    const vm: VmConfig = { ...config, network: lease.attachment };
    try {
      const rec = this.#store.get(id);
      if (rec === undefined) throw new ControllerError('INSTANCE_NOT_FOUND', `instance ${id} was removed meanwhile`, { kind: 'user' });
      this.#store.updateStatus(id, rec.revision, { networkIndex: lease.index, vm });
    } catch (err) {
      await this.#network.release({ index: lease.index, netns: lease.attachment.netns ?? '' });
      throw err;
    }
    return vm;
  }

  /**
   * Gives instance `id` a VM that already holds `lease` (a primed VM, src/controller/primed/):
   * its network, config and pid in one write, before the VM runs.
   */
  bind(id: string, config: VmConfig, lease: NetworkLease, pid: number): void {
    const rec = this.#store.get(id);
    if (rec === undefined) throw new ControllerError('INSTANCE_NOT_FOUND', `instance ${id} was removed meanwhile`, { kind: 'user' });
    this.#store.updateStatus(id, rec.revision, { networkIndex: lease.index, vm: { ...config, network: lease.attachment }, pid });
  }

  /**
   * Instance `id`'s VM has ended (or never ran): its network goes. The record
   * is updated first: a crash in between leaves an orphan the next sweep
   * removes. Deleting the namespace (~10-30 ms) is not waited for: a suspend
   * or stop is done once the record says so (the pool keeps the slot until
   * the namespace is gone, and its dispose waits for it).
   */
  async release(id: string): Promise<void> {
    const rec = this.#store.get(id);
    if (rec === undefined || (rec.status.networkIndex === null && !rec.status.vm?.network)) return;
    const held = heldNetwork(rec);
    let vm = rec.status.vm;
    if (vm?.network) {
      vm = { ...vm };
      delete vm.network;
    }
    this.#store.updateStatus(id, rec.revision, { networkIndex: null, vm });
    if (held) void this.#network.release(held).catch((err) => this.#log.warn(`instance ${rec.name}: releasing its network: ${describeError(err)}`));
  }

  /** The network `rec` says its VM holds, for a record no longer in the store (claimed by another host): the slot goes back to the pool. */
  async releaseHeld(rec: InstanceRecord): Promise<void> {
    const held = heldNetwork(rec);
    if (held) await this.#network.release(held).catch((err) => this.#log.warn(`instance ${rec.name}: releasing its network: ${describeError(err)}`));
  }

  /**
   * At start, once live VMs are adopted: keeps their networks, releases what
   * other records still name (a crash between a VM's end and its release, or
   * a cold standby of a flickd from before pooling), removes every other
   * network of ours.
   */
  async reconcile(isLive: (id: string) => boolean): Promise<void> {
    const keep: HeldNetwork[] = [];
    for (const rec of this.#store.list()) {
      const held = heldNetwork(rec);
      if (held && isLive(rec.id)) keep.push(held);
      else if (rec.status.networkIndex !== null || rec.status.vm?.network) await this.release(rec.id);
    }
    await this.#network.sweep(keep);
  }

  dispose(): Promise<void> {
    return this.#network.dispose();
  }
}

/** The network a record says its VM holds: a slot and the namespace it lives in. */
function heldNetwork(rec: InstanceRecord): HeldNetwork | undefined {
  const netns = rec.status.vm?.network?.netns;
  return rec.status.networkIndex !== null && netns !== undefined ? { index: rec.status.networkIndex, netns } : undefined;
}
