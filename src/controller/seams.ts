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
  /** `flick build` resolves USER to numeric ids at build time: `dev.flick.uid` / `dev.flick.gid`; HEALTHCHECK: `dev.flick.healthcheck`. */
  Labels?: Record<string, string> | null;
  StopSignal?: string | null;
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

/** A VM network somebody holds: its address slot and its namespace (persisted with the instance while its VM lives). */
export interface HeldNetwork {
  index: number;
  netns: string;
}

/** A network handed to a VM about to run. */
export interface NetworkLease {
  index: number;
  attachment: NetworkAttachment;
}

/**
 * VM networking (src/network): one namespace per VM *process*, by address
 * slot. Cold-standby and stopped instances hold none; a boot or a cold wake
 * acquires one, the end of the process releases it.
 */
export interface InstanceNetwork {
  /** A ready network (taken from a pool when there is one). */
  acquire(): Promise<NetworkLease>;
  /** Removes it; safe when it is already gone. */
  release(held: HeldNetwork): Promise<void>;
  /** At start: removes every network not in `keep` (the ones live VMs hold). */
  sweep(keep: readonly HeldNetwork[]): Promise<void>;
  /** Stops background work and removes unused networks; held ones stay. Safe twice. */
  dispose(): Promise<void>;
}

/** A volume an instance mounts: `flick run -v NAME:/path[:ro]`. */
export interface VolumeMountSpec {
  name: string;
  path: string;
  readOnly: boolean;
}

/** A volume held by an instance, as its VM attaches it. */
export interface HeldVolume extends VolumeMountSpec {
  /** The disk's serial in the guest. */
  id: string;
  file: string;
  format: 'qcow2';
}

/**
 * Volumes (src/volumes): an instance claims its volumes at create and lets go
 * at rm; they stay attached across stop, standby and flickd restarts. At most
 * one holder writes a volume (VOLUME_IN_USE otherwise).
 */
export interface InstanceVolumes {
  /** Claims all of `mounts` for `holder` or none (VOLUME_NOT_FOUND, VOLUME_IN_USE, VOLUME_INVALID). */
  attach(holder: string, mounts: readonly VolumeMountSpec[]): Promise<HeldVolume[]>;
  /** What `holder` holds, for its VM config (synchronous: read at every boot). */
  attachedTo(holder: string, mounts: readonly VolumeMountSpec[]): HeldVolume[];
  /** Lets go of everything `holder` holds; safe twice. */
  detach(holder: string): Promise<void>;
  /** At start: drops the claims of holders not in `keep`. */
  sweep(keep: ReadonlySet<string>): Promise<unknown>;
  /** Fails (VOLUME_INVALID, VOLUME_EXISTS) unless `name` is a valid name no volume has: checked before a fork makes anything. */
  checkNewName(name: string): void;
  /** A copy-on-write clone `dst` of `src` (a few hundred KiB); refused (VOLUME_IN_USE) while a writer for whom `open` says true holds it. */
  /** `switchWriter`: the (paused) holder's VM moves to the new head first (a live fork), instead of a refusal while it is open. */
  clone(src: string, dst: string, open?: (holder: string) => boolean, switchWriter?: (head: string, overlay: string) => Promise<void>): Promise<unknown>;
  /** Freezes `src`'s disk as it is now (a template volume); returns the frozen layer for `branch`. Same precondition as `clone`. */
  freeze(src: string, open: (holder: string) => boolean): Promise<string>;
  /** A new volume `dst` over `layer`, a frozen state of `src` (a few hundred KiB). */
  branch(src: string, layer: string, dst: string): Promise<unknown>;
  /** A full (sparse) copy `dst` of `src`'s disk; its writer's VM must be paused with its disk flushed. */
  copy(src: string, dst: string): Promise<unknown>;
  /** Removes a volume nobody holds (a fork that failed halfway). */
  rm(name: string): Promise<void>;
  /** Sets what runs for each writer of a volume before `clone` or `freeze` freezes its disk (a primed VM of it must go). */
  beforeFreeze?(hook: (holder: string) => Promise<void>): void;
}

export interface ControllerLogger {
  info(msg: string): void;
  warn(msg: string): void;
}
