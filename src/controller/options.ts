// What a Controller is built from (flickd's host-instances.ts, the tests'
// testing.ts): the seams it consumes and its timings. Its own file so that the
// controller's parts (lifecycle.ts, reconcile.ts) depend on it, not on controller.ts.
import type { StateStore } from './state/state-store.js';
import type { VmConfig, VmmDriver } from '../vmm/driver.js';
import type { ConsoleLogOptions } from './console-log.js';
import type { HotStandbyConfig } from './hot-standby.js';
import type { PrimedPoolConfig } from './primed/primed-pool.js';
import type { ControllerLogger, ImageResolver, InstanceNetwork, InstanceVolumes } from './seams.js';

export interface ControllerOptions {
  /** Where records live (src/store's SQLite; a cluster's etcd): the controller never sees which. */
  store: StateStore;
  driver: VmmDriver;
  images: ImageResolver;
  network: InstanceNetwork;
  /** Volumes (src/volumes); without it, instances cannot mount any. */
  volumes?: InstanceVolumes;
  /** Instances live under `<dataDir>/instances/<id>/`. */
  dataDir: string;
  logger?: ControllerLogger;
  /** How long a booting guest may take to accept a connection (TCG is slow: node needs ~6 s). */
  readyTimeoutMs?: number;
  /** How long a graceful stop waits before killing. */
  stopTimeoutMs?: number;
  restartBackoff?: { initialMs: number; maxMs: number };
  consoleLog?: ConsoleLogOptions;
  accel?: VmConfig['accel'];
  /** The hot standby tier: RAM budget (0: every suspend is cold) and when to page out. Default: 10% of host RAM, 10 s. */
  hotStandby?: Partial<HotStandbyConfig>;
  /** GET / requests an HTTP app gets before its template snapshot (template-warmup.ts). Default 3; 0: none. */
  templateWarmupRequests?: number;
  /** VMs restored paused ahead of cold wakes of stateless instances (primed/primed-pool.ts). Default: none. */
  primedPool?: PrimedPoolConfig;
}
