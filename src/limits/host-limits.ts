// The host's limits applied where requests come in: `withLimits` puts the
// checks of limits.ts in front of the controller's create and start (the API
// sees a LimitError, a 4xx/507, before any VM, address or file is made), and
// `refuseWritesWhenDiskFull` in front of the registry's uploads (a push is
// refused before its first byte is written, not cut off by ENOSPC halfway).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_MEMORY_MB, type InstanceConfig } from '../controller/spec.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { checkAddresses, checkDisk, checkQuota, checkRam, diskSpace, isDiskFull, LimitError, diskFullError, memAvailable, MIN_FREE_DISK_BYTES, RAM_RESERVE_BYTES, type DiskSpace } from './limits.js';

export interface HostLimits {
  /** Data directory: instances, snapshots and templates are written under it. */
  dataDir: string;
  /** How many VM networks (addresses) the pool holds: one per VM process. */
  poolSize: number;
  /** At most this many instances (flickd --max-instances); undefined: no quota. */
  maxInstances?: number;
  ramReserveBytes?: number;
  minFreeDiskBytes?: number;
  /** Probes, replaceable in tests. */
  memAvailable?: () => number;
  diskSpace?: (dir: string) => DiskSpace;
}

/** The part of the controller the checks guard (consumer-owned: tests pass a small fake). */
export interface LimitedController {
  create(spec: InstanceConfig): Promise<InstanceRecord>;
  start(idOrName: string): Promise<InstanceRecord>;
  rm(idOrName: string, opts?: { force?: boolean }): Promise<void>;
  list(): InstanceRecord[];
  get(idOrName: string): InstanceRecord;
  /** A fork is a new instance too: it counts against the quota and needs disk. */
  fork?(source: string, config: { name: string }): Promise<unknown>;
}

/**
 * `controller` with create and start checked against `limits` first (and rm
 * counted); every other member passes through. The instance count is read once
 * and then kept here, so a create costs no scan of 10,000 records; a create in
 * progress holds its place, so concurrent creates cannot overshoot the quota.
 */
export function withLimits<C extends LimitedController>(controller: C, limits: HostLimits): C {
  const mem = limits.memAvailable ?? memAvailable;
  const disk = limits.diskSpace ?? diskSpace;
  const reserve = limits.ramReserveBytes ?? RAM_RESERVE_BYTES;
  const minFree = limits.minFreeDiskBytes ?? MIN_FREE_DISK_BYTES;
  let count: number | undefined;
  const instances = () => (count ??= controller.list().length);
  // A network (address) belongs to a VM process, not to an instance: count VMs, at most once a second
  // (a scan of 10,000 records per create would cost more than the create; the network pool has the last word).
  let vms: { n: number; at: number } | undefined;
  const vmsWithNetwork = () => {
    if (vms === undefined || Date.now() - vms.at > 1000) vms = { n: controller.list().filter((r) => r.status.pid !== null).length, at: Date.now() };
    return vms.n;
  };

  const create = async (spec: InstanceConfig): Promise<InstanceRecord> => {
    const name = spec.name ?? spec.image;
    checkQuota(name, instances(), limits.maxInstances);
    checkDisk(`instance "${name}"`, limits.dataDir, 0, disk(limits.dataDir), minFree);
    if (spec.autostart !== false) {
      checkAddresses(vmsWithNetwork(), limits.poolSize);
      checkRam(name, spec.memoryMb ?? DEFAULT_MEMORY_MB, mem(), reserve);
      vms!.n++; // holds its place until the next recount sees it
    }
    count = instances() + 1;
    try {
      return await controller.create(spec);
    } catch (err) {
      count = undefined; // recount: the create may or may not have stored the record
      throw isDiskFull(err) ? diskFullError(err, `creating instance "${name}"`, limits.dataDir) : err;
    }
  };
  const start = async (idOrName: string): Promise<InstanceRecord> => {
    const rec = controller.get(idOrName);
    checkAddresses(vmsWithNetwork(), limits.poolSize);
    checkDisk(`instance "${rec.name}"`, limits.dataDir, 0, disk(limits.dataDir), minFree);
    checkRam(rec.name, rec.spec.memoryMb, mem(), reserve);
    vms!.n++;
    return controller.start(idOrName);
  };
  const rm = async (idOrName: string, opts?: { force?: boolean }): Promise<void> => {
    try {
      await controller.rm(idOrName, opts);
    } finally {
      count = undefined;
    }
  };
  const fork = async (source: string, config: { name: string }): Promise<unknown> => {
    checkQuota(config.name, instances(), limits.maxInstances);
    checkDisk(`fork "${config.name}"`, limits.dataDir, 0, disk(limits.dataDir), minFree);
    try {
      return await controller.fork!(source, config);
    } catch (err) {
      throw isDiskFull(err) ? diskFullError(err, `forking into "${config.name}"`, limits.dataDir) : err;
    } finally {
      count = undefined;
    }
  };
  // Members are bound to the controller itself: its private fields need the real `this`.
  return new Proxy(controller, {
    get(target, prop) {
      if (prop === 'create') return create;
      if (prop === 'start') return start;
      if (prop === 'rm') return rm;
      if (prop === 'fork' && typeof controller.fork === 'function') return fork;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * Refuses writes (POST, PUT, PATCH) with 507 and an OCI error body while the
 * disk under `dir` has less than the minimum free space plus the request's
 * declared length; reads always pass.
 */
export function refuseWritesWhenDiskFull(handler: RequestHandler, dir: string, opts: { minFreeBytes?: number; diskSpace?: (dir: string) => DiskSpace } = {}): RequestHandler {
  const probe = opts.diskSpace ?? diskSpace;
  return async (req, res) => {
    if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
      try {
        checkDisk('this upload', dir, Number(req.headers['content-length'] ?? 0) || 0, probe(dir), opts.minFreeBytes ?? MIN_FREE_DISK_BYTES);
      } catch (err) {
        if (!(err instanceof LimitError)) throw err;
        req.resume();
        // The OCI distribution spec's error body (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes).
        // The spec defines no code for a full disk (DENIED would read as "not allowed"), so the code is our own.
        const body = JSON.stringify({ errors: [{ code: err.code, message: err.message, detail: err.details ?? {} }] });
        res.writeHead(507, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
    }
    return handler(req, res);
  };
}
