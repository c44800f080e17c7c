// Every error code Flick raises, as one union, for the two edges that turn a
// code into something else: the REST API's HTTP status (api/envelope.ts) and
// the CLI's exit code (cli/exit-codes.ts). Each edge maps codes with a Record
// over these unions, so a code added or renamed anywhere fails to compile until
// the edges decide what it means. Only the edges import this file (it imports
// every module's error type, so anything else importing it would make cycles).
import type { ApiErrorCode } from './api/schemas.js';
import type { CliErrorCode } from './cli/cli-error.js';
import type { CatalogErrorCode } from './cluster/catalog.js';
import type { EtcdErrorCode } from './cluster/etcd-client.js';
import type { MembershipErrorCode } from './cluster/membership.js';
import type { StateErrorCode } from './controller/state/state-store.js';
import type { ServiceErrorCode } from './services/services.js';
import type { DeployErrorCode } from './services/deploy.js';
import type { ControllerErrorCode } from './controller/states.js';
import type { DemoErrorCode } from './demo/steps.js';
import type { ControlErrorCode } from './guest/control.js';
import type { GuestConfigErrorCode } from './guest/config.js';
import type { InitErrorCode } from './guest/init.js';
import type { KernelErrorCode } from './guest/kernel.js';
import type { ImageErrorCode } from './image/image-error.js';
import type { LimitCode } from './limits/limits.js';
import type { NetworkErrorCode } from './network/addresses.js';
import type { ProxyErrorCode } from './proxy/errors.js';
import type { ImageStoreErrorCode } from './registry/image-store.js';
import type { LayoutErrorCode } from './registry/oci-layout.js';
import type { RegistryErrorCode } from './registry/registry-error.js';
import type { TransferErrorCode } from './registry/transfer.js';
import type { CgroupErrorCode } from './security/cgroup-v1.js';
import type { JailerErrorCode } from './security/jailer.js';
import type { UidPoolErrorCode } from './security/uid-pool.js';
import type { VmmErrorCode } from './vmm/driver.js';
import type { VolumeErrorCode } from './volumes/volume-error.js';
import type { JailErrorCode } from './vmm/qemu/jail.js';
import type { QmpErrorCode } from './vmm/qemu/qmp-client.js';

/** What flickd can raise (and the API can answer with). */
export type HostErrorCode =
  | ApiErrorCode
  | ControllerErrorCode
  | ServiceErrorCode
  | DeployErrorCode
  | StateErrorCode
  | VolumeErrorCode
  | EtcdErrorCode
  | CatalogErrorCode
  | MembershipErrorCode
  | LimitCode
  | NetworkErrorCode
  | ProxyErrorCode
  | ImageStoreErrorCode
  | LayoutErrorCode
  | RegistryErrorCode
  | TransferErrorCode
  | ImageErrorCode
  | ControlErrorCode
  | GuestConfigErrorCode
  | InitErrorCode
  | KernelErrorCode
  | VmmErrorCode
  | QmpErrorCode
  | JailErrorCode
  | CgroupErrorCode
  | JailerErrorCode
  | UidPoolErrorCode;

/** Everything, the CLI's own codes included. */
export type FlickErrorCode = HostErrorCode | CliErrorCode | DemoErrorCode;
