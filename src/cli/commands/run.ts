// `flick run [--name N] [-p PORT[:GUEST][/http|/http+tls|/http+redirect|/tcp]] [-e K=V] [-m 256M] [--vcpus N]
//  [--domain HOST] [--tls-cert FILE --tls-key FILE]
//  [--scale-to-zero policy=on|idle|off,cooldown-time=MS,stateful=BOOL] IMAGE [ARGS…]`:
// creates an instance on the host, waits (spinner on a terminal) until its app
// accepts connections, and prints where to reach it.
import fs from 'node:fs';
import type { Command } from 'commander';
import { FlickApi, instanceUrl, type InstanceView } from '../api-client.js';
import { Spinner, printJson, withOutputOption, type OutputFormat } from '../output.js';
import { parseMountFlag, type VolumeMount } from '../../volumes/names.js';
import { CliError } from '../cli-error.js';

function usage(message: string): CliError {
  return new CliError('USAGE', message, { kind: 'user' });
}

/** "256", "256M", "256MiB", "1G", "1.5GiB" → MiB (a bare number is MiB). */
export function parseMemory(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(m|mb|mi|mib|g|gb|gi|gib)?$/i.exec(text.trim());
  if (!m) throw usage(`-m "${text}" is not a memory size: write MiB or GiB, e.g. -m 256M or -m 1G`);
  const n = Number(m[1]) * (/^g/i.test(m[2] ?? '') ? 1024 : 1);
  if (!Number.isInteger(n) || n < 1) throw usage(`-m "${text}" is not a whole number of MiB: e.g. -m 256M`);
  return n;
}

export interface PortFlag {
  port: number;
  guest_port: number;
  protocol: 'http' | 'http+tls' | 'http+redirect' | 'tcp';
}

/**
 * `PORT[:GUEST][/http|/http+tls|/http+redirect|/tcp]` (Unikraft Cloud's handlers); the protocol
 * defaults to http, GUEST to PORT. `443:8080/http+tls` serves guest port 8080 on the proxy's
 * HTTPS listener; `80:443/http+redirect` redirects plain HTTP there.
 */
export function parsePort(text: string): PortFlag {
  const m = /^(\d{1,5})(?::(\d{1,5}))?(?:\/(http\+tls|http\+redirect|http|tcp))?$/.exec(text.trim());
  const port = Number(m?.[1]);
  const guest = m?.[2] === undefined ? port : Number(m[2]);
  if (!m || port < 1 || port > 65535 || guest < 1 || guest > 65535) {
    throw usage(`-p "${text}" is not a port mapping: write PORT[:GUEST][/http|/http+tls|/http+redirect|/tcp] with ports 1-65535, e.g. -p 8080, -p 443:8080/http+tls or -p 5432:5432/tcp`);
  }
  return { port, guest_port: guest, protocol: (m[3] as PortFlag['protocol'] | undefined) ?? 'http' };
}

/** A PEM file named by --tls-cert / --tls-key, read here (the host may be another machine). */
export function readPemFile(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usage(`${flag} ${file}: ${(err as Error).message}: give a readable PEM file`);
  }
}

export interface ScaleToZeroFlag {
  policy?: 'on' | 'idle' | 'off';
  cooldown_time_ms?: number;
  stateful?: boolean;
}

/** `policy=on|idle|off,cooldown-time=MS,stateful=BOOL` (any subset; MS may end in ms or s). */
export function parseScaleToZero(text: string): ScaleToZeroFlag {
  const out: ScaleToZeroFlag = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    switch (key) {
      case 'policy':
        if (value !== 'on' && value !== 'idle' && value !== 'off') throw usage(`--scale-to-zero policy="${value}": use policy=on, policy=idle or policy=off`);
        out.policy = value;
        break;
      case 'cooldown-time':
      case 'cooldown_time_ms': {
        const m = /^(\d+)(ms|s)?$/.exec(value);
        if (!m) throw usage(`--scale-to-zero cooldown-time="${value}" is not a duration: write milliseconds, e.g. cooldown-time=1000 (or 2s)`);
        out.cooldown_time_ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
        break;
      }
      case 'stateful':
        if (value !== 'true' && value !== 'false') throw usage(`--scale-to-zero stateful="${value}": use stateful=true or stateful=false`);
        out.stateful = value === 'true';
        break;
      default:
        throw usage(`--scale-to-zero: unknown key "${key}": use policy=on|idle|off, cooldown-time=MS, stateful=true|false`);
    }
  }
  // `--scale-to-zero stateful=true` alone means "scale to zero, statefully".
  if (out.policy === undefined && (out.cooldown_time_ms !== undefined || out.stateful !== undefined)) out.policy = 'on';
  return out;
}

export interface AutoscaleFlag {
  min?: number;
  max?: number;
  target_inflight?: number;
  cooldown_time_ms?: number;
}

/** `min=0,max=8,target-inflight=10,cooldown-time=2s` (any subset; durations in ms or s). */
export function parseAutoscale(text: string): AutoscaleFlag {
  const out: AutoscaleFlag = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    const whole = () => {
      if (!/^\d+$/.test(value)) throw usage(`--autoscale ${key}="${value}" is not a whole number: e.g. ${key}=${key === 'min' ? 0 : key === 'max' ? 8 : 10}`);
      return Number(value);
    };
    switch (key) {
      case 'min':
        out.min = whole();
        break;
      case 'max':
        out.max = whole();
        break;
      case 'target-inflight':
        out.target_inflight = whole();
        break;
      case 'cooldown-time': {
        const m = /^(\d+)(ms|s)?$/.exec(value);
        if (!m) throw usage(`--autoscale cooldown-time="${value}" is not a duration: write milliseconds, e.g. cooldown-time=2000 (or 2s)`);
        out.cooldown_time_ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
        break;
      }
      default:
        throw usage(`--autoscale: unknown key "${key}": use min=N, max=N, target-inflight=N, cooldown-time=MS`);
    }
  }
  return out;
}

/** `K=V`, or `K` alone to pass K from this shell's environment. */
export function parseEnv(text: string, env: NodeJS.ProcessEnv = process.env): [string, string] {
  const eq = text.indexOf('=');
  const key = eq < 0 ? text : text.slice(0, eq);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw usage(`-e "${text}": write -e NAME=value with a variable name, e.g. -e PORT=8080`);
  if (eq >= 0) return [key, text.slice(eq + 1)];
  const v = env[key];
  if (v === undefined) throw usage(`-e ${key}: ${key} is not set in this shell: write -e ${key}=value`);
  return [key, v];
}

/** `-v NAME:/path[:ro]`. */
export function parseVolumeFlag(flag: string): VolumeMount {
  try {
    return parseMountFlag(flag);
  } catch (err) {
    throw usage(`-v ${(err as Error).message}`);
  }
}

const collect = <T>(parse: (s: string) => T) => (value: string, prev: T[] = []) => [...prev, parse(value)];

/** Waits for `running` with a spinner; returns the instance. Shared with `flick start`. */
export async function waitUntilRunning(api: FlickApi, inst: InstanceView, timeoutMs: number): Promise<InstanceView> {
  const spinner = new Spinner(`starting ${inst.name}`);
  try {
    const ready = await api.wait(inst.id, 'running', timeoutMs);
    spinner.stop();
    return ready;
  } catch (err) {
    spinner.stop();
    throw err;
  }
}

export function register(program: Command): void {
  // Options after IMAGE belong to the app (`flick run app --port 9`), which needs positional parsing.
  program.enablePositionalOptions();
  const cmd = program
    .command('run')
    .description('create an instance of IMAGE on the host, start it, and wait until it answers')
    .argument('<image>', 'an image pushed to this host, e.g. hello:latest')
    .argument('[args...]', "replaces the image's CMD")
    .option('--name <name>', 'instance name (default: IMAGE-xxxx); also its host name <name>.localhost')
    .option('-p, --port <PORT[:GUEST][/http|/http+tls|/http+redirect|/tcp]>', 'a port the instance serves (repeatable; default: the image\'s EXPOSE)', collect(parsePort))
    .option('--domain <host>', 'the host name it answers at (default <name>.localhost)')
    .option('--tls-cert <file>', 'PEM certificate the proxy presents for this host over HTTPS (with -p 443:PORT/http+tls)')
    .option('--tls-key <file>', 'the PEM key of --tls-cert')
    .option('-e, --env <K=V>', 'an environment variable (repeatable)', collect(parseEnv))
    .option('-m, --memory <size>', 'guest memory, e.g. 256M or 1G', parseMemory)
    .option('--vcpus <n>', 'virtual CPUs', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw usage(`--vcpus "${v}" is not a whole number ≥ 1: e.g. --vcpus 1`);
      return n;
    })
    .option('--scale-to-zero <spec>', 'policy=on|idle|off,cooldown-time=MS,stateful=true|false', parseScaleToZero)
    .option('-v, --volume <NAME:/path[:ro]>', 'mount a volume (flick volume create) at a path before the app starts (repeatable)', collect(parseVolumeFlag))
    .option('--restart <policy>', 'restart policy: never, on-failure or always')
    .option('--replicas <n>', 'make a service of N instances behind one host name, <name>.localhost (needs --name)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw usage(`--replicas "${v}" is not a whole number ≥ 1: e.g. --replicas 3`);
      return n;
    })
    .option('--host <name>', 'in a cluster: the host to run it on (default: the best host, see flick hosts)')
    .option('--autoscale <spec>', 'a service that grows and shrinks: min=N,max=N,target-inflight=N,cooldown-time=MS (needs --name)', parseAutoscale)
    .option('-d, --detach', 'do not wait until the instance answers')
    .option('--timeout <ms>', 'how long to wait for the instance to answer', (v) => Number(v), 120_000)
    .passThroughOptions();
  withOutputOption(cmd).action(async (image: string, args: string[], opts: RunOptions) => {
    const api = FlickApi.fromEnvironment();
    const body: Record<string, unknown> = { image };
    if (opts.name) body.name = opts.name;
    if (args.length > 0) body.args = args;
    if (opts.env) body.env = Object.fromEntries(opts.env);
    if (opts.port) body.ports = opts.port;
    if (opts.domain) body.hostname = opts.domain;
    if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw usage('--tls-cert and --tls-key go together: give the certificate file and its key file');
    if (opts.tlsCert !== undefined && opts.tlsKey !== undefined) {
      body.tls_cert = readPemFile(opts.tlsCert, '--tls-cert');
      body.tls_key = readPemFile(opts.tlsKey, '--tls-key');
    }
    if (opts.memory !== undefined) body.memory_mb = opts.memory;
    if (opts.vcpus !== undefined) body.vcpus = opts.vcpus;
    if (opts.scaleToZero) body.scale_to_zero = opts.scaleToZero;
    if (opts.restart) body.restart_policy = opts.restart;
    if (opts.volume) body.volumes = opts.volume.map((v) => ({ name: v.name, path: v.path, read_only: v.readOnly }));
    if (opts.replicas !== undefined || opts.autoscale !== undefined) return runService(api, body, opts);
    let inst = await api.create(body, opts.host);
    if (!opts.detach) inst = await waitUntilRunning(api, inst, opts.timeout);
    if (opts.output === 'json') return printJson(inst);
    const url = instanceUrl(inst);
    process.stdout.write(`${inst.name} ${inst.state}${url ? ` at ${url}` : ''}\n`);
  });
}

/** `--replicas N`: a service; waits until every member runs (unless -d), then prints the service. */
async function runService(api: FlickApi, body: Record<string, unknown>, opts: RunOptions): Promise<void> {
  if (opts.name === undefined) throw usage(`${opts.autoscale ? '--autoscale' : '--replicas'} makes a service, which needs a name: add --name NAME`);
  if (opts.autoscale !== undefined && opts.replicas !== undefined) throw usage('--replicas and --autoscale: give one (autoscale keeps max instances)');
  let service = await api.createService({ ...body, ...(opts.autoscale ? { autoscale: opts.autoscale } : { replicas: opts.replicas }) });
  // By name: in a cluster a member may be on another host, where this host forwards the call.
  const states = new Map(service.instances.map((i) => [i.name, i.state]));
  if (!opts.detach) {
    // Members in standby are ready too: the proxy wakes them.
    for (const member of service.instances) if (member.state !== 'standby' && member.state !== 'running') states.set(member.name, (await api.wait(member.name, 'running', opts.timeout)).state);
    service = await api.service(service.name);
  }
  if (opts.output === 'json') return printJson(service);
  const running = [...states.values()].filter((s) => s === 'running').length;
  const standby = [...states.values()].filter((s) => s === 'standby').length;
  process.stdout.write(`${service.name} ${running}/${service.replicas} running${standby > 0 ? `, ${standby} in standby` : ''}${service.url ? ` at ${service.url}` : ''}\n`);
}

interface RunOptions {
  name?: string;
  host?: string;
  port?: PortFlag[];
  domain?: string;
  tlsCert?: string;
  tlsKey?: string;
  env?: Array<[string, string]>;
  memory?: number;
  vcpus?: number;
  scaleToZero?: ScaleToZeroFlag;
  restart?: string;
  replicas?: number;
  autoscale?: AutoscaleFlag;
  volume?: VolumeMount[];
  detach?: boolean;
  timeout: number;
  output: OutputFormat;
}
