// What a volume is on disk and on the wire: the record persisted as
// <dataDir>/volumes/<name>/volume.json (VolumeState, versioned), the view the API
// shows (VolumeInfo) and what a VM is handed (AttachedVolume). volume-manager.ts
// reads and writes them.
import type { VolumeMount } from './names.js';

export const VOLUME_STATE_VERSION = 1;

export interface VolumeAttachment {
  /** Who holds it: an instance id. */
  holder: string;
  readOnly: boolean;
  since: string;
}

/** What is persisted per volume. */
export interface VolumeState {
  version: typeof VOLUME_STATE_VERSION;
  /** 12 hex digits; the guest finds the disk by it (virtio-blk serial). */
  id: string;
  name: string;
  sizeBytes: number;
  createdAt: string;
  /** The volume it was cloned from (its name then), if any. */
  clonedFrom?: string;
  attachments: VolumeAttachment[];
}

/** A volume as the API shows it. */
export interface VolumeInfo extends VolumeState {
  state: 'available' | 'attached';
  /** Bytes its own head takes on the host disk (shared layers not counted). */
  allocatedBytes: number;
  /** The head QEMU opens. */
  file: string;
}

/** A volume handed to a VM: what the driver attaches and the init mounts. */
export interface AttachedVolume extends VolumeMount {
  id: string;
  file: string;
  format: 'qcow2';
}
