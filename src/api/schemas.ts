// The /v1 wire formats: request bodies validated with zod (messages name the
// field and say what to write instead), and the snake_case view of an instance.
import { z } from 'zod';
import { DEFAULT_DOMAIN, type InstanceConfig } from '../controller/spec.js';
import { checkCertificate, summarizeCertificate } from '../proxy/certificates.js';
import { INSTANCE_STATES } from '../controller/states.js';
import { FlickError } from '../errors.js';
import type { HttpService, InstanceRecord } from '../controller/state/instance-record.js';
import type { ForkConfig } from '../controller/fork.js';
import type { InstanceControllerMetrics } from '../controller/metrics.js';

const port = (field: string) =>
  z.number({ error: `${field} must be a TCP port number (1-65535), e.g. 8080` }).int({ error: `${field} must be a whole number, e.g. 8080` }).min(1, { error: `${field} must be at least 1` }).max(65535, { error: `${field} must be at most 65535` });

export const PortSchema = z.strictObject({
  port: port('ports[].port'),
  guest_port: port('ports[].guest_port').optional(),
  // `http+tls`: served on the proxy's HTTPS listener; `http+redirect`: plain HTTP redirected there (Unikraft Cloud's handlers).
  protocol: z.enum(['http', 'http+tls', 'http+redirect', 'tcp'], { error: 'ports[].protocol must be "http", "http+tls", "http+redirect" or "tcp"' }).default('http'),
});

export const CreateInstanceSchema = z.strictObject({
  image: z.string({ error: 'image must be a string naming an image in the host registry, e.g. "hello:latest"' }).min(1, { error: 'image must not be empty: name an image pushed to this host, e.g. "hello:latest"' }),
  name: z.string({ error: 'name must be a string, e.g. "web"' }).optional(),
  args: z.array(z.string(), { error: 'args must be a list of strings, e.g. ["--port", "8080"]' }).optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'env keys must be variable names, e.g. "PORT"' }), z.string({ error: 'env values must be strings, e.g. {"PORT": "8080"}' }), {
    error: 'env must be an object of strings, e.g. {"PORT": "8080"}',
  }).optional(),
  memory_mb: z
    .number({ error: 'memory_mb must be a whole number of MiB, e.g. 256' })
    .int({ error: 'memory_mb must be a whole number of MiB, e.g. 256' })
    .min(32, { error: 'memory_mb must be at least 32 (MiB)' })
    .max(65536, { error: 'memory_mb must be at most 65536 (MiB)' })
    .optional(),
  vcpus: z.number({ error: 'vcpus must be a whole number, e.g. 1' }).int({ error: 'vcpus must be a whole number, e.g. 1' }).min(1, { error: 'vcpus must be at least 1' }).max(64, { error: 'vcpus must be at most 64' }).optional(),
  ports: z.array(PortSchema, { error: 'ports must be a list like [{"port": 8080, "protocol": "http"}]' }).optional(),
  hostname: z.string({ error: 'hostname must be a string, e.g. "web.localhost"' }).regex(/^[a-z0-9.-]+$/, { error: 'hostname may hold only lowercase letters, digits, "." and "-"' }).optional(),
  tls_cert: z.string({ error: 'tls_cert must be a string holding a PEM certificate (chain)' }).max(256 * 1024, { error: 'tls_cert must be at most 256 KiB of PEM' }).optional(),
  tls_key: z.string({ error: 'tls_key must be a string holding a PEM private key' }).max(64 * 1024, { error: 'tls_key must be at most 64 KiB of PEM' }).optional(),
  autostart: z.boolean({ error: 'autostart must be true or false' }).optional(),
  restart_policy: z.enum(['never', 'on-failure', 'always'], { error: 'restart_policy must be "never", "on-failure" or "always"' }).optional(),
  volumes: z
    .array(
      z.strictObject(
        {
          name: z.string({ error: 'volumes[].name must be a volume name, e.g. "pgdata"' }),
          path: z.string({ error: 'volumes[].path must be an absolute path in the guest, e.g. "/data"' }),
          read_only: z.boolean({ error: 'volumes[].read_only must be true or false' }).optional(),
        },
        { error: 'each of volumes must be an object like {"name": "pgdata", "path": "/data"}' },
      ),
      { error: 'volumes must be a list like [{"name": "pgdata", "path": "/data"}]' },
    )
    .max(8, { error: 'volumes: at most 8 per instance' })
    .optional(),
  scale_to_zero: z
    .strictObject({
      policy: z.enum(['on', 'idle', 'off'], { error: 'scale_to_zero.policy must be "on", "idle" or "off"' }).optional(),
      cooldown_time_ms: z
        .number({ error: 'scale_to_zero.cooldown_time_ms must be a whole number of milliseconds, e.g. 1000' })
        .int({ error: 'scale_to_zero.cooldown_time_ms must be a whole number of milliseconds, e.g. 1000' })
        .min(1, { error: 'scale_to_zero.cooldown_time_ms must be at least 1' })
        .optional(),
      stateful: z.boolean({ error: 'scale_to_zero.stateful must be true or false' }).optional(),
    }, { error: 'scale_to_zero must be an object like {"policy": "on", "cooldown_time_ms": 1000}' })
    .optional(),
});
export type CreateInstanceBody = z.infer<typeof CreateInstanceSchema>;

function bad(problem: string): ApiError {
  return new ApiError('BAD_REQUEST', `invalid request: ${problem}`, { kind: 'user' });
}

export type ApiErrorCode = 'BAD_REQUEST' | 'INVALID_JSON' | 'NOT_FOUND' | 'METHOD_NOT_ALLOWED' | 'UNAUTHORIZED';
export class ApiError extends FlickError<ApiErrorCode> {}

/** Parses with `schema`, or throws BAD_REQUEST whose message lists every problem by field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    const field = i.path.join('.');
    if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${field ? `${field}.` : ''}${k}"`).join(', ')}: check the spelling (fields are snake_case)`;
    // Our own messages already name their field; zod's generic ones get it prefixed.
    return field === '' || i.message.startsWith(String(i.path[0])) ? i.message : `${field}: ${i.message}`;
  });
  throw new ApiError('BAD_REQUEST', `invalid request: ${problems.join('; ')}`, { kind: 'user' });
}

/** The wire request → the controller's InstanceConfig. */
export function toInstanceConfig(body: CreateInstanceBody): InstanceConfig {
  const ports = body.ports ?? [];
  const one = (protocol: string) => {
    const found = ports.filter((p) => p.protocol === protocol);
    if (found.length > 1) throw bad(`ports may hold at most one "${protocol}" port (the proxy routes HTTP by host name): make the others "tcp"`);
    return found[0];
  };
  const plain = one('http');
  const secure = one('http+tls');
  const redirect = one('http+redirect');
  const tcp = ports.filter((p) => p.protocol === 'tcp').map((p) => ({ hostPort: p.port, guestPort: p.guest_port ?? p.port }));
  const guestPort = (p: { port: number; guest_port?: number | undefined }) => p.guest_port ?? p.port;
  if (plain && secure && guestPort(plain) !== guestPort(secure)) throw bad(`the "http" and "http+tls" ports go to one guest port: give both guest port ${guestPort(secure)}`);
  if (redirect && !secure) throw bad('an "http+redirect" port sends plain HTTP to HTTPS: add an "http+tls" port too, e.g. -p 443:8080/http+tls -p 80:443/http+redirect');
  if (redirect && plain) throw bad('ports hold both "http" (serve plain HTTP) and "http+redirect" (redirect it to HTTPS): keep one');
  if ((body.tls_cert === undefined) !== (body.tls_key === undefined)) throw bad('tls_cert and tls_key go together: give both (--tls-cert FILE --tls-key FILE) or neither');
  if (body.tls_cert !== undefined && !secure) throw bad('tls_cert is presented on HTTPS: add an "http+tls" port, e.g. -p 443:8080/http+tls');
  const h = secure ?? plain;
  const spec: InstanceConfig = { image: body.image };
  if (body.name !== undefined) spec.name = body.name;
  if (body.args !== undefined) spec.args = body.args;
  if (body.env !== undefined) spec.env = body.env;
  if (body.memory_mb !== undefined) spec.memoryMb = body.memory_mb;
  if (body.vcpus !== undefined) spec.vcpus = body.vcpus;
  if (body.autostart !== undefined) spec.autostart = body.autostart;
  if (body.restart_policy !== undefined) spec.restartPolicy = body.restart_policy;
  if (h || tcp.length > 0 || body.hostname) {
    spec.service = { tcp };
    if (h) {
      spec.service.http = { guestPort: guestPort(h), ...(body.hostname ? { hostname: body.hostname } : {}), ...(redirect ? { plain: 'redirect' as const } : {}) };
      if (body.tls_cert !== undefined && body.tls_key !== undefined) {
        const pair = { cert: body.tls_cert, key: body.tls_key };
        // Checked now (a 400 naming the problem) rather than at the first handshake; the host is known when named.
        const host = body.hostname ?? (body.name !== undefined ? `${body.name}.${DEFAULT_DOMAIN}` : undefined);
        checkCertificate(pair, 'tls_cert', host);
        spec.service.http.tls = pair;
      }
    }
  }
  if (body.volumes && body.volumes.length > 0) spec.volumes = body.volumes.map((v) => ({ name: v.name, path: v.path, readOnly: v.read_only ?? false }));
  if (body.scale_to_zero) {
    const s = body.scale_to_zero;
    spec.scaleToZero = {
      ...(s.policy !== undefined ? { policy: s.policy } : {}),
      ...(s.cooldown_time_ms !== undefined ? { cooldownTimeMs: s.cooldown_time_ms } : {}),
      ...(s.stateful !== undefined ? { stateful: s.stateful } : {}),
    };
  }
  return spec;
}

/** `POST /v1/instances/{ref}/fork`: the fork's name, and what it cannot share with its source. */
export const ForkInstanceSchema = z.strictObject(
  {
    name: z.string({ error: 'name must be a string: the fork\'s name, e.g. "pg-copy"' }),
    ports: z.array(PortSchema, { error: 'ports must be a list like [{"port": 5433, "guest_port": 5432, "protocol": "tcp"}]' }).optional(),
    hostname: z.string({ error: 'hostname must be a string, e.g. "copy.localhost"' }).regex(/^[a-z0-9.-]+$/, { error: 'hostname may hold only lowercase letters, digits, "." and "-"' }).optional(),
    volumes: z.record(z.string(), z.string({ error: 'volumes values must be the fork\'s volume names, e.g. {"pgdata": "pgdata-copy"}' }), { error: 'volumes must be an object naming the fork\'s copy of each volume, e.g. {"pgdata": "pgdata-copy"}' }).optional(),

    shared: z.boolean({ error: 'shared must be true or false' }).optional(),
  },
  { error: 'the body must be an object like {"name": "pg-copy", "ports": [{"port": 5433, "guest_port": 5432, "protocol": "tcp"}]}' },
);
export type ForkInstanceBody = z.infer<typeof ForkInstanceSchema>;

/** The wire fork request → the controller's ForkConfig. The fork keeps its source's guest ports; only TCP host ports are given. */
export function toForkConfig(body: ForkInstanceBody): ForkConfig {
  const notTcp = (body.ports ?? []).find((p) => p.protocol !== 'tcp');
  if (notTcp) throw bad(`ports: a fork keeps its source's HTTP service under its own host name; give only "tcp" ports (host ports for the source's TCP guest ports), not "${notTcp.protocol}"`);
  return {
    name: body.name,
    ...(body.ports ? { tcp: body.ports.map((p) => ({ hostPort: p.port, guestPort: p.guest_port ?? p.port })) } : {}),
    ...(body.hostname !== undefined ? { hostname: body.hostname } : {}),
    ...(body.volumes !== undefined ? { volumeNames: body.volumes } : {}),
    ...(body.shared !== undefined ? { shared: body.shared } : {}),
  };
}

export const WaitQuerySchema = z.object({
  state: z.enum(INSTANCE_STATES, { error: `state must be one of ${INSTANCE_STATES.join(', ')}` }),
  timeout_ms: z.coerce.number({ error: 'timeout_ms must be a whole number of milliseconds' }).int({ error: 'timeout_ms must be a whole number of milliseconds' }).min(0, { error: 'timeout_ms must not be negative' }).optional(),
});

/** The instance as the API shows it (snake_case; internals like the VmConfig stay inside). */
export function instanceView(rec: InstanceRecord, url?: string, serviceName?: string, lastWake?: InstanceControllerMetrics['lastWake']): Record<string, unknown> {
  return {
    id: rec.id,
    name: rec.name,
    // The service (src/services) the instance is a member of.
    service_name: serviceName ?? null,
    state: rec.status.state,
    image: rec.spec.image.ref,
    image_digest: rec.spec.image.digest,
    args: rec.spec.args,
    env: rec.spec.env,
    memory_mb: rec.spec.memoryMb,
    vcpus: rec.spec.vcpus,
    service: {
      http: rec.spec.service.http ? httpView(rec.spec.service.http) : null,
      tcp: rec.spec.service.tcp.map((t) => ({ port: t.hostPort, guest_port: t.guestPort })),
    },
    url: url ?? null,
    address: rec.status.vm?.network?.hostReachableIp ?? null,
    autostart: rec.spec.autostart,
    restart_policy: rec.spec.restartPolicy,
    scale_to_zero: { policy: rec.spec.scaleToZero.policy, cooldown_time_ms: rec.spec.scaleToZero.cooldownTimeMs, stateful: rec.spec.scaleToZero.stateful },
    volumes: (rec.spec.volumes ?? []).map((v) => ({ name: v.name, path: v.path, read_only: v.readOnly })),
    // The image's HEALTHCHECK as the guest runs it (a fresh boot is ready once it first passes).
    healthcheck: rec.status.vm?.guest.healthcheck
      ? { command: rec.status.vm.guest.healthcheck.argv, interval_ms: rec.status.vm.guest.healthcheck.intervalMs, timeout_ms: rec.status.vm.guest.healthcheck.timeoutMs, retries: rec.status.vm.guest.healthcheck.retries }
      : null,
    // Its current status (starting / healthy / unhealthy) and since when; null without a HEALTHCHECK.
    health: rec.status.health ? { status: rec.status.health.status, since: rec.status.health.since } : null,
    snapshots: { template: rec.status.snapshots.template !== undefined, own: rec.status.snapshots.own !== undefined },
    // The shared template's id (instances of one image and configuration share it).
    template: rec.status.snapshots.template ? rec.status.snapshots.template.dir.split('/').pop() : null,
    standby_tier: rec.status.state === 'standby' ? (rec.status.standbyTier ?? 'cold') : null,
    pid: rec.status.pid,
    boots: rec.status.counters.boots,
    wakes: rec.status.counters.wakes,
    wakes_hot: rec.status.counters.wakesHot ?? 0,
    wakes_cold: rec.status.counters.wakesCold ?? 0,
    restarts: rec.status.counters.restarts,
    // The last wake since flickd started and its breakdown (controller/wake-phases.ts): the
    // proxy's phases and the total appear once its first request's first byte reached the client.
    last_wake: lastWake ? { tier: lastWake.tier, duration_ms: lastWake.durationMs, at: lastWake.at, phases_ms: lastWake.phases } : null,
    last_exit_code: rec.status.lastExitCode,
    error: rec.status.error ?? null,
    created_at: rec.createdAt,
    started_at: rec.status.startedAt,
    stopped_at: rec.status.stoppedAt,
  };
}

/** The HTTP service as the API shows it: the certificate by its names and expiry, never the key. */
function httpView(http: HttpService): Record<string, unknown> {
  return {
    hostname: http.hostname,
    guest_port: http.guestPort,
    tls: http.tls ? summarizeCertificate(http.tls.cert) : null,
    plain: http.plain ?? 'serve',
  };
}
