// Instance records for tests that need one without a controller. Not used by the product.
import { INSTANCE_RECORD_VERSION, type InstanceRecord, type InstanceSpec, type InstanceStatus } from './instance-record.js';

export interface TestRecordFields {
  id?: string;
  createdAt?: string;
  owner?: string;
  revision?: number;
  spec?: Partial<InstanceSpec>;
  status?: Partial<InstanceStatus>;
}

/** A stopped, never-started record named `name` at revision 1; `fields` override any default. */
export function testRecord(name: string, fields: TestRecordFields = {}): InstanceRecord {
  const now = new Date().toISOString();
  return {
    version: INSTANCE_RECORD_VERSION,
    id: fields.id ?? `id-${name}`,
    name,
    createdAt: fields.createdAt ?? now,
    updatedAt: fields.createdAt ?? now,
    owner: fields.owner ?? 'local',
    revision: fields.revision ?? 1,
    spec: {
      image: { ref: 'hello:latest', digest: 'sha256:00' },
      args: [],
      env: {},
      memoryMb: 128,
      vcpus: 1,
      service: { tcp: [] },
      autostart: true,
      restartPolicy: 'never',
      scaleToZero: { policy: 'off', cooldownTimeMs: 1000, stateful: false },
      ...fields.spec,
    },
    status: {
      state: 'stopped',
      networkIndex: null,
      pid: null,
      vm: null,
      dir: `/nonexistent/${name}`,
      snapshots: {},
      counters: { boots: 0, wakes: 0, restarts: 0 },
      lastExitCode: null,
      startedAt: null,
      stoppedAt: null,
      ...fields.status,
    },
  };
}
