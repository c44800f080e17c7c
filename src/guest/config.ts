// The config disk: how the host tells the guest init what to run. A small raw
// disk attached beside the rootfs; the init (guest/init/init.c) finds it among
// /dev/vd* by its magic. The format is defined here and mirrored in init.c:
//
//   bytes 0..7    "FLICKCFG"
//   bytes 8..11   format version, u32 little-endian (CONFIG_DISK_VERSION)
//   bytes 12..15  payload length in bytes, u32 little-endian
//   payload       records "key=value\0" (UTF-8). `argv`, `env` and `nameserver`
//                 repeat, in order; `cwd`, `uid`, `gid`, `hostname`, `trace`, `listen` once;
//                 `volume=<serial>:<ro|rw>:<path>` repeats, one per volume to mount.
//                 `health` repeats (the HEALTHCHECK's argv), with `health_interval_ms`,
//                 `health_timeout_ms`, `health_start_ms`, `health_retries` once;
//                 `stopsignal` once.
//   padding       zero bytes up to a multiple of 512 (one sector).
//
// The init skips keys it does not know, so optional keys can be added without
// a version bump; a change to the framing needs one.
import fsp from 'node:fs/promises';
import { FlickError } from '../errors.js';
import type { GuestConfig } from '../vmm/driver.js';

export const CONFIG_DISK_MAGIC = 'FLICKCFG';
export const CONFIG_DISK_VERSION = 1;
const HEADER_BYTES = 16;
const SECTOR = 512;
/** The init refuses larger payloads (CFG_MAX_PAYLOAD in init.c). */
export const MAX_PAYLOAD_BYTES = 1 << 20;
/** Entries per list (CFG_MAX_LIST in init.c). */
export const MAX_LIST_ENTRIES = 4096;
const MAX_NAMESERVERS = 8;
/** Volumes per VM (CFG_MAX_VOLUMES in init.h). */
export const MAX_VOLUMES = 8;

export type GuestConfigErrorCode = 'INVALID_GUEST_CONFIG';
export class GuestConfigError extends FlickError<GuestConfigErrorCode> {}

/** What the config disk carries: the app's GuestConfig plus init options. */
export interface ConfigDiskContents extends GuestConfig {
  /** Trace mode: the init reports every file the app opens or execs (`open <path>`). */
  trace?: boolean;
  /** Listen reports: the init sends `listen <port>` once per TCP port the app starts listening on. */
  listen?: boolean;
  /** Written to /etc/resolv.conf when the image has none (else the kernel's ip= DNS, if any). */
  nameservers?: string[];
}

function invalid(message: string): never {
  throw new GuestConfigError('INVALID_GUEST_CONFIG', `guest config: ${message}`, { kind: 'user' });
}

function checkValue(what: string, value: string): void {
  if (typeof value !== 'string') invalid(`${what} must be a string`);
  if (value.includes('\0')) invalid(`${what} contains a NUL byte, which no program can receive: remove it`);
}

function checkId(what: string, id: number): void {
  // 0xffffffff is (uid_t)-1, which setuid() treats as "no change".
  if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) invalid(`${what} ${id} is not a valid id (0..4294967294)`);
}

/** Validates the contents and returns the payload records, in the order the init reads them. */
export function encodeConfigPayload(config: ConfigDiskContents): Buffer {
  if (!Array.isArray(config.argv) || config.argv.length === 0) invalid('argv is empty: the guest needs a program to run');
  if (config.argv[0] === '') invalid('argv[0] is empty: name the program to run');
  if (config.argv.length > MAX_LIST_ENTRIES) invalid(`argv has ${config.argv.length} entries, at most ${MAX_LIST_ENTRIES} are allowed`);
  if (config.env.length > MAX_LIST_ENTRIES) invalid(`env has ${config.env.length} entries, at most ${MAX_LIST_ENTRIES} are allowed`);
  const nameservers = config.nameservers ?? [];
  if (nameservers.length > MAX_NAMESERVERS) invalid(`${nameservers.length} nameservers given, at most ${MAX_NAMESERVERS} are used`);
  const records: string[] = [];
  config.argv.forEach((a, i) => {
    checkValue(`argv[${i}]`, a);
    records.push(`argv=${a}`);
  });
  config.env.forEach((e, i) => {
    checkValue(`env[${i}]`, e);
    if (!/^[^=]+=/.test(e)) invalid(`env[${i}] "${e.slice(0, 40)}" is not KEY=VALUE`);
    records.push(`env=${e}`);
  });
  for (const ns of nameservers) {
    checkValue('nameserver', ns);
    if (!/^[0-9a-fA-F.:]+$/.test(ns)) invalid(`nameserver "${ns}" is not an IP address`);
    records.push(`nameserver=${ns}`);
  }
  checkValue('cwd', config.cwd);
  if (!config.cwd.startsWith('/')) invalid(`cwd "${config.cwd}" is not an absolute path`);
  records.push(`cwd=${config.cwd}`);
  checkId('uid', config.uid);
  checkId('gid', config.gid);
  records.push(`uid=${config.uid}`, `gid=${config.gid}`);
  // Linux limits the hostname to 64 bytes (HOST_NAME_MAX); RFC 1123 labels.
  if (!/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,63})$/.test(config.hostname)) {
    invalid(`hostname "${config.hostname.slice(0, 70)}" is not a valid host name (letters, digits, '-', '.', at most 64)`);
  }
  records.push(`hostname=${config.hostname}`);
  const mounts = config.mounts ?? [];
  if (mounts.length > MAX_VOLUMES) invalid(`${mounts.length} volumes given, at most ${MAX_VOLUMES} can be mounted`);
  for (const m of mounts) {
    if (!/^[a-z0-9-]{1,20}$/.test(m.serial)) invalid(`volume serial "${m.serial}" is not 1-20 of a-z, 0-9, -`);
    checkValue('volume path', m.path);
    if (!m.path.startsWith('/') || m.path.length > 200 || m.path.includes('\n')) invalid(`volume path "${m.path.slice(0, 40)}" is not an absolute path`);
    records.push(`volume=${m.serial}:${m.readOnly ? 'ro' : 'rw'}:${m.path}`);
  }
  if (config.healthcheck) {
    const hc = config.healthcheck;
    if (hc.argv.length === 0 || hc.argv.length > 64) invalid('healthcheck argv must have 1 to 64 entries');
    hc.argv.forEach((a, i) => {
      checkValue(`healthcheck argv[${i}]`, a);
      records.push(`health=${a}`);
    });
    for (const [k, v] of [['interval', hc.intervalMs], ['timeout', hc.timeoutMs], ['start', hc.startPeriodMs]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 86_400_000) invalid(`healthcheck ${k} ${v} ms is not 0..86400000`);
      records.push(`health_${k}_ms=${v}`);
    }
    if (!Number.isInteger(hc.retries) || hc.retries < 1 || hc.retries > 1000) invalid(`healthcheck retries ${hc.retries} is not 1..1000`);
    records.push(`health_retries=${hc.retries}`);
  }
  if (config.stopSignal !== undefined) {
    if (!Number.isInteger(config.stopSignal) || config.stopSignal < 1 || config.stopSignal > 64) invalid(`stop signal ${config.stopSignal} is not 1..64`);
    records.push(`stopsignal=${config.stopSignal}`);
  }
  if (config.trace) records.push('trace=1');
  if (config.listen) records.push('listen=1');
  const payload = Buffer.from(records.map((r) => `${r}\0`).join(''), 'utf8');
  if (payload.length > MAX_PAYLOAD_BYTES) {
    invalid(`argv and env take ${payload.length} bytes, more than the ${MAX_PAYLOAD_BYTES} the guest accepts: shorten them`);
  }
  return payload;
}

/** The whole disk image: header, payload, zero padding to a sector boundary. */
export function encodeConfigDisk(config: ConfigDiskContents): Buffer {
  const payload = encodeConfigPayload(config);
  const size = Math.ceil((HEADER_BYTES + payload.length) / SECTOR) * SECTOR;
  const disk = Buffer.alloc(size);
  disk.write(CONFIG_DISK_MAGIC, 0, 'latin1');
  disk.writeUInt32LE(CONFIG_DISK_VERSION, 8);
  disk.writeUInt32LE(payload.length, 12);
  payload.copy(disk, HEADER_BYTES);
  return disk;
}

/** Parses a disk image written by encodeConfigDisk (tests, debugging). */
export function decodeConfigDisk(disk: Buffer): ConfigDiskContents {
  if (disk.length < HEADER_BYTES || disk.toString('latin1', 0, 8) !== CONFIG_DISK_MAGIC) invalid('not a config disk (no FLICKCFG magic)');
  const version = disk.readUInt32LE(8);
  if (version !== CONFIG_DISK_VERSION) invalid(`config disk version ${version}, expected ${CONFIG_DISK_VERSION}`);
  const length = disk.readUInt32LE(12);
  if (length > MAX_PAYLOAD_BYTES || HEADER_BYTES + length > disk.length) invalid('config disk payload is truncated');
  const out: ConfigDiskContents = { argv: [], env: [], cwd: '/', uid: 0, gid: 0, hostname: 'flick' };
  const records = disk.toString('utf8', HEADER_BYTES, HEADER_BYTES + length).split('\0');
  if (records.pop() !== '') invalid('config disk: last record is not terminated');
  for (const r of records) {
    const eq = r.indexOf('=');
    const key = r.slice(0, eq);
    const value = r.slice(eq + 1);
    if (key === 'argv') out.argv.push(value);
    else if (key === 'env') out.env.push(value);
    else if (key === 'nameserver') (out.nameservers ??= []).push(value);
    else if (key === 'cwd') out.cwd = value;
    else if (key === 'hostname') out.hostname = value;
    else if (key === 'uid') out.uid = Number(value);
    else if (key === 'gid') out.gid = Number(value);
    else if (key === 'trace') out.trace = value === '1';
    else if (key === 'health') (out.healthcheck ??= { argv: [], intervalMs: 0, timeoutMs: 0, startPeriodMs: 0, retries: 1 }).argv.push(value);
    else if (key === 'health_interval_ms' && out.healthcheck) out.healthcheck.intervalMs = Number(value);
    else if (key === 'health_timeout_ms' && out.healthcheck) out.healthcheck.timeoutMs = Number(value);
    else if (key === 'health_start_ms' && out.healthcheck) out.healthcheck.startPeriodMs = Number(value);
    else if (key === 'health_retries' && out.healthcheck) out.healthcheck.retries = Number(value);
    else if (key === 'stopsignal') out.stopSignal = Number(value);
    else if (key === 'volume') {
      const [serial = '', mode, ...p] = value.split(':');
      (out.mounts ??= []).push({ serial, readOnly: mode === 'ro', path: p.join(':') });
    }
    else if (key === 'listen') out.listen = value === '1';
  }
  return out;
}

/** Writes the config disk to `path` (replacing it). Throws GuestConfigError (kind 'user') on bad input. */
export async function writeConfigDisk(path: string, config: ConfigDiskContents): Promise<void> {
  await fsp.writeFile(path, encodeConfigDisk(config));
}
