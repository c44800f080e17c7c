// A stopped instance record for tests that need one without a controller. Not used by the product.
import { INSTANCE_RECORD_VERSION, type InstanceRecord } from './instance-record.js';

/** A stopped, never-started record named `name`; `fields` override any default. */
export function testRecord(name: string, fields: Partial<InstanceRecord> = {}): InstanceRecord {
  const now = new Date().toISOString();
  return {
    version: INSTANCE_RECORD_VERSION,
    id: `id-${name}`,
    name,
    image: { ref: 'hello:latest', digest: 'sha256:00' },
    args: [],
    env: {},
    memoryMb: 128,
    vcpus: 1,
    service: { tcp: [] },
    autostart: true,
    restartPolicy: 'never',
    scaleToZero: { policy: 'off', cooldownTimeMs: 1000, stateful: false },
    state: 'stopped',
    networkIndex: null,
    pid: null,
    vm: null,
    dir: `/nonexistent/${name}`,
    snapshots: {},
    counters: { boots: 0, wakes: 0, restarts: 0 },
    lastExitCode: null,
    createdAt: now,
    updatedAt: now,
    startedAt: null,
    stoppedAt: null,
    ...fields,
  };
}
