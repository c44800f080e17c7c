// The interfaces the controller consumes, declared here by their consumer
// (STYLE.md: one interface per seam, owned by whoever uses it) so that flickd
// can plug in the registry's image store and src/network, and tests can plug
// in three-line fakes.
import type { NetworkAttachment } from '../vmm/driver.js';

/** The parts of an OCI image config (`config` object) the controller runs by. */
export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, unknown> | null;
  /** `flick build` resolves USER to numeric ids at build time: `dev.flick.uid` / `dev.flick.gid`. */
  Labels?: Record<string, string> | null;
}

/** An image from the host registry, unpacked into files QEMU can use. */
export interface PreparedImage {
  digest: string;
  config: ImageRunConfig;
  paths: { vmlinux: string; initrd: string; rootfs: string };
}

export interface ImageResolver {
  /**
   * Resolves `name:tag` or `name@sha256:…` to a prepared image. Rejects with a
   * user error (a code ending in NOT_FOUND) when the host registry lacks it.
   */
  resolve(ref: string): Promise<PreparedImage>;
}

/** Per-instance networking (src/network): one namespace, tap and host-reachable address per index. */
export interface InstanceNetwork {
  /** Creates (or finds, idempotently) the instance's network for `index`. */
  attach(instanceId: string, index: number): Promise<NetworkAttachment>;
  /** Removes it; safe when it is already gone. */
  detach(instanceId: string, index: number): Promise<void>;
  /** Removes every instance network not in `keep` (left over by a crash). */
  sweep(keep: ReadonlyArray<{ instanceId: string; index: number }>): Promise<void>;
}

export interface ControllerLogger {
  info(msg: string): void;
  warn(msg: string): void;
}
