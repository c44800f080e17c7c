// What a caller asks for when it creates an instance (InstanceConfig), the
// defaults filled in from the image, and the guest config the VM boots with.
// Wire-level validation (types, ranges) happens in the API with zod; the checks
// here are the ones that need the image or the host.
import crypto from 'node:crypto';
import type { GuestConfig } from '../vmm/driver.js';
import path from 'node:path';
import {
  INSTANCE_RECORD_VERSION,
  type InstanceRecord,
  type InstanceSpec,
  type NewInstanceRecord,
  type RestartPolicy,
  type ScaleToZeroConfig,
  type HttpService,
  type ServiceConfig,
  type TcpService,
} from './state/instance-record.js';
import { LABEL_GID, LABEL_UID } from '../image/image-config.js';
import { healthcheckOf, signalNumber } from '../image/healthcheck.js';
import type { ImageRunConfig, PreparedImage, VolumeMountSpec } from './seams.js';
import { ControllerError } from './states.js';

export interface InstanceConfig {
  /** `name:tag` in the host registry. */
  image: string;
  name?: string;
  args?: string[];
  env?: Record<string, string>;
  memoryMb?: number;
  vcpus?: number;
  service?: { http?: { hostname?: string; guestPort: number; tls?: HttpService['tls']; plain?: HttpService['plain'] }; tcp?: TcpService[] };
  autostart?: boolean;
  restartPolicy?: RestartPolicy;
  scaleToZero?: Partial<ScaleToZeroConfig>;
  /** `-v NAME:/path[:ro]`: volumes mounted before the app starts. */
  volumes?: VolumeMountSpec[];
}

export const DEFAULT_MEMORY_MB = 128;
export const DEFAULT_VCPUS = 1;
export const DEFAULT_COOLDOWN_MS = 1000;
/** The domain HTTP host names default to: `<name>.localhost`. */
export const DEFAULT_DOMAIN = 'localhost';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function newInstanceId(): string {
  return crypto.randomBytes(6).toString('hex');
}

export function validateName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new ControllerError(
      'INVALID_SPEC',
      `instance name "${name}" is not valid: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
      { kind: 'user' },
    );
  }
}

/** A readable default name from the image: `hello:latest` → `hello-3f2a`. */
export function defaultName(imageRef: string): string {
  const base = imageRef.split('/').pop()!.split(/[:@]/)[0]!.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 50);
  return `${base || 'app'}-${crypto.randomBytes(2).toString('hex')}`;
}

/** The TCP ports an image declares (`EXPOSE 8080`), in order. */
export function exposedTcpPorts(config: ImageRunConfig): number[] {
  return Object.keys(config.ExposedPorts ?? {})
    .map((k) => k.split('/'))
    .filter(([, proto]) => proto === undefined || proto === 'tcp')
    .map(([port]) => Number(port))
    .filter((p) => Number.isInteger(p) && p > 0 && p < 65536);
}

/**
 * The service an instance offers: what the caller asked for, else an HTTP
 * service on the image's first exposed port (so `flick run app` just works).
 */
export function resolveService(spec: InstanceConfig, name: string, image: PreparedImage): ServiceConfig {
  const tcp = spec.service?.tcp ?? [];
  const asked = spec.service?.http;
  if (asked) {
    const http: HttpService = { hostname: asked.hostname ?? `${name}.${DEFAULT_DOMAIN}`, guestPort: asked.guestPort };
    if (asked.tls) http.tls = asked.tls;
    if (asked.plain) http.plain = asked.plain;
    return { http, tcp };
  }
  if (tcp.length > 0) return { tcp };
  const [port] = exposedTcpPorts(image.config);
  return port === undefined ? { tcp } : { http: { hostname: `${name}.${DEFAULT_DOMAIN}`, guestPort: port }, tcp };
}

/**
 * With volumes, scale to zero is always stateful: a shared template's memory
 * holds the page cache and ext4 mount of the disk as it was when the template
 * was taken, and waking it over a disk written since would corrupt the disk.
 * The instance's own state at suspend is the only memory that matches its disk.
 */
export function resolveScaleToZero(asked: Partial<ScaleToZeroConfig> | undefined, hasVolumes = false): ScaleToZeroConfig {
  return {
    policy: asked?.policy ?? 'off',
    cooldownTimeMs: asked?.cooldownTimeMs ?? DEFAULT_COOLDOWN_MS,
    stateful: hasVolumes || (asked?.stateful ?? false),
  };
}

/** Whether the instance mounts volumes (then it never shares a template: see resolveScaleToZero). */
export function hasVolumes(rec: { spec: Pick<InstanceSpec, 'volumes'> }): boolean {
  return (rec.spec.volumes ?? []).length > 0;
}

/** The port whose first accepted connection means "ready" (undefined: ready once booted). */
export function readinessPort(service: ServiceConfig): number | undefined {
  return service.http?.guestPort ?? service.tcp[0]?.guestPort;
}

/** Builds what the guest init runs from the image config and the instance's overrides. */
export function guestConfigFor(record: Pick<InstanceRecord, 'name'> & { spec: Pick<InstanceSpec, 'args' | 'env'> }, config: ImageRunConfig): GuestConfig {
  const entrypoint = config.Entrypoint ?? [];
  const argv = [...entrypoint, ...(record.spec.args.length > 0 ? record.spec.args : (config.Cmd ?? []))];
  if (argv.length === 0) {
    throw new ControllerError('INVALID_SPEC', `image has no Entrypoint or Cmd and no args were given: pass the command after the image, e.g. 'flick run IMAGE /app/server'`, {
      kind: 'user',
    });
  }
  // Instance env overrides the image's, keeping the image's order for the rest.
  const env = new Map<string, string>();
  for (const kv of config.Env ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  for (const [k, v] of Object.entries(record.spec.env)) env.set(k, v);
  const { uid, gid } = userIds(config);
  const healthcheck = healthcheckOf(config.Labels);
  const stopSignal = signalNumber(config.StopSignal);
  return {
    argv,
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: config.WorkingDir || '/',
    uid,
    gid,
    hostname: record.name,
    ...(healthcheck ? { healthcheck } : {}),
    ...(stopSignal !== undefined && stopSignal !== 15 ? { stopSignal } : {}),
  };
}

/**
 * What the VM's guest runs. A scale-to-zero instance's guest hostname is its
 * image's name, not the instance's: the hostname lives in guest memory, and
 * every instance of one image and configuration wakes from one shared template.
 */
export function vmGuestConfig(record: Pick<InstanceRecord, 'name'> & { spec: Pick<InstanceSpec, 'args' | 'env' | 'image' | 'scaleToZero'> }, config: ImageRunConfig): GuestConfig {
  const guest = guestConfigFor(record, config);
  if (record.spec.scaleToZero.policy === 'off') return guest;
  const base = record.spec.image.ref.replace(/[:@].*$/, '').split('/').pop()!.toLowerCase().replace(/[^a-z0-9-]+/g, '-').slice(0, 63);
  return { ...guest, hostname: base || 'app' };
}

/**
 * The uid/gid the app runs as. Images from `flick build` carry them resolved from
 * the image's own /etc/passwd (labels); other images must say them numerically.
 */
export function userIds(config: ImageRunConfig): { uid: number; gid: number } {
  const uid = config.Labels?.[LABEL_UID];
  const gid = config.Labels?.[LABEL_GID];
  if (uid !== undefined && /^\d+$/.test(uid) && gid !== undefined && /^\d+$/.test(gid)) return { uid: Number(uid), gid: Number(gid) };
  return parseUser(config.User ?? '');
}

/** `User` from the image config: "", "root", "1000" or "1000:1000". Names other than root need numeric ids. */
export function parseUser(user: string): { uid: number; gid: number } {
  if (user === '' || user === 'root' || user === '0') return { uid: 0, gid: 0 };
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (m) {
    const uid = Number(m[1]);
    return { uid, gid: m[2] === undefined ? uid : Number(m[2]) };
  }
  throw new ControllerError('INVALID_SPEC', `image USER "${user}" is a name: use numeric ids in the Dockerfile, e.g. 'USER 1000:1000'`, { kind: 'user' });
}

/** A new instance's record (state `stopped`), defaults filled in from the image; the store adds owner and revision. */
export function newInstanceRecord(spec: InstanceConfig, name: string, image: PreparedImage, dataDir: string): NewInstanceRecord {
  const id = newInstanceId();
  const now = new Date().toISOString();
  return {
    version: INSTANCE_RECORD_VERSION,
    id,
    name,
    createdAt: now,
    spec: {
      image: { ref: spec.image, digest: image.digest },
      args: spec.args ?? [],
      env: spec.env ?? {},
      memoryMb: spec.memoryMb ?? DEFAULT_MEMORY_MB,
      vcpus: spec.vcpus ?? DEFAULT_VCPUS,
      service: resolveService(spec, name, image),
      autostart: spec.autostart ?? true,
      restartPolicy: spec.restartPolicy ?? 'never',
      scaleToZero: resolveScaleToZero(spec.scaleToZero, (spec.volumes ?? []).length > 0),
      ...(spec.volumes && spec.volumes.length > 0 ? { volumes: spec.volumes } : {}),
    },
    status: {
      state: 'stopped',
      networkIndex: null,
      pid: null,
      vm: null,
      dir: path.join(dataDir, 'instances', id),
      snapshots: {},
      counters: { boots: 0, wakes: 0, restarts: 0 },
      lastExitCode: null,
      startedAt: null,
      stoppedAt: null,
    },
  };
}
