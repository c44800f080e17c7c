// Where services are persisted: one JSON document (`<dataDir>/services.json`,
// versioned), rewritten atomically on every change (temp file, fsync, rename),
// so a flickd killed mid-change finds either the old or the new set.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../registry/fs-atomic.js';
import type { InstanceConfig } from '../controller/spec.js';
import type { AutoscaleConfig } from './autoscale.js';

export const SERVICE_RECORD_VERSION = 1;

/** A rolling deploy in progress (deploy.ts), stored with its service. */
export interface DeployState {
  image: string;
  startedAt: string;
  /** The members before the deploy. */
  old: string[];
  /** New members created so far. */
  created: string[];
  /** The name of the new member being created (stored first: a flickd killed meanwhile finds it by name). */
  creating?: string;
  /** The deploy's step sizes, for a flickd that resumes it. */
  maxSurge?: number;
  maxUnavailable?: number;
  /** Set once the deploy is rolling back (why): a flickd killed meanwhile rolls back again, and a member it was recreating from the old image (`creating`) is an old one. */
  rollingBack?: string;
}

/** How the last deploy ended, for `flick service get`. */
export interface DeployOutcome {
  image: string;
  outcome: 'deployed' | 'rolled-back';
  /** Why it rolled back. */
  reason?: string;
  /** Old-image instances made again by the roll-back, where fewer old ones were left than the service keeps. */
  recreated?: number;
  endedAt: string;
}

export interface ServiceRecord {
  version: typeof SERVICE_RECORD_VERSION;
  name: string;
  /** What every member is made from (its name and host name are the member's own). */
  template: Omit<InstanceConfig, 'name'>;
  /** How many members the service keeps (with autoscale: its max). */
  replicas: number;
  /** Autoscale's policy (autoscale.ts); absent: every member always runs. */
  autoscale?: AutoscaleConfig;
  /** Member instance ids, oldest first. */
  members: string[];
  /** A rolling deploy in progress (deploy.ts); absent otherwise. */
  deploy?: DeployState;
  /** How the last deploy ended. */
  lastDeploy?: DeployOutcome;
  createdAt: string;
  updatedAt: string;
}

export class ServiceStore {
  readonly #file: string;
  #records = new Map<string, ServiceRecord>();
  /** Writes in order: each waits for the one before it. */
  #writing: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.#file = path.join(dataDir, 'services.json');
    if (fs.existsSync(this.#file)) {
      const doc = JSON.parse(fs.readFileSync(this.#file, 'utf8')) as { version: number; services: ServiceRecord[] };
      for (const r of doc.services) this.#records.set(r.name, r);
    }
  }

  list(): ServiceRecord[] {
    return [...this.#records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): ServiceRecord | undefined {
    return this.#records.get(name);
  }

  /** Inserts or replaces; resolves once the change is on disk. */
  put(record: ServiceRecord): Promise<void> {
    this.#records.set(record.name, record);
    return this.#flush();
  }

  delete(name: string): Promise<void> {
    this.#records.delete(name);
    return this.#flush();
  }

  #flush(): Promise<void> {
    const doc = JSON.stringify({ version: SERVICE_RECORD_VERSION, services: this.list() });
    const write = this.#writing.catch(() => undefined).then(() => writeFileAtomic(this.#file, doc, 0o600));
    this.#writing = write;
    return write;
  }
}
