// The instance row and its JSON document: decoding the current record format
// (version 2: {spec, status} beside id, name, owner and revision), and the
// format before it (version 1: one flat document) for the migration that
// carries old databases over (migrations.ts).
import { INSTANCE_RECORD_VERSION, type InstanceRecord, type InstanceSpec, type InstanceStatus } from '../controller/state/instance-record.js';
import { StateError } from '../controller/state/state-store.js';

export interface InstanceRow {
  id: string;
  name: string;
  state: string;
  network_index: number | null;
  version: number;
  data: string;
  created_at: string;
  revision: number;
  owner: string;
}

export function decodeRecord(row: InstanceRow): InstanceRecord {
  if (row.version !== INSTANCE_RECORD_VERSION) {
    throw new StateError('CORRUPT_RECORD', `instance ${row.id} has record version ${row.version}, this flickd reads ${INSTANCE_RECORD_VERSION}: run a matching flickd`);
  }
  let record: InstanceRecord;
  try {
    record = JSON.parse(row.data) as InstanceRecord;
  } catch (cause) {
    throw new StateError('CORRUPT_RECORD', `instance ${row.id}'s record is not valid JSON: remove it or restore the data dir from a backup`, { cause });
  }
  // The columns are what the fenced writes compare: they win over the document.
  return { ...record, revision: row.revision, owner: row.owner };
}

/** A version-1 record: spec and status in one flat document (flickd before the state seam). */
export interface InstanceRecordV1 extends InstanceSpec, InstanceStatus {
  version: 1;
  id: string;
  name: string;
  createdAt: string;
  updatedAt: string;
}

const SPEC_FIELDS = ['image', 'args', 'env', 'memoryMb', 'vcpus', 'service', 'autostart', 'restartPolicy', 'scaleToZero', 'volumes'] as const satisfies readonly (keyof InstanceSpec)[];
const STATUS_FIELDS = [
  'state',
  'error',
  'networkIndex',
  'pid',
  'vm',
  'dir',
  'snapshots',
  'standbyTier',
  'counters',
  'lastExitCode',
  'startedAt',
  'stoppedAt',
] as const satisfies readonly (keyof InstanceStatus)[];

/** A version-1 document as a version-2 record (every field kept; optional ones only where they were). */
export function upgradeRecordV1(old: InstanceRecordV1, revision: number, owner: string): InstanceRecord {
  const spec: Record<string, unknown> = {};
  for (const k of SPEC_FIELDS) if (old[k] !== undefined) spec[k] = old[k];
  const status: Record<string, unknown> = {};
  for (const k of STATUS_FIELDS) if (old[k] !== undefined) status[k] = old[k];
  return {
    version: INSTANCE_RECORD_VERSION,
    id: old.id,
    name: old.name,
    createdAt: old.createdAt,
    updatedAt: old.updatedAt,
    owner,
    revision,
    spec: spec as unknown as InstanceSpec,
    status: status as unknown as InstanceStatus,
  };
}
