// `flick fork INSTANCE NAME [-p HOST:GUEST/tcp]… [--domain HOST] [--volume VOL=NEW]… [--shared]`:
// a new instance with INSTANCE's memory and volumes taken at one instant (REST
// POST /v1/instances/{ref}/fork). It is made in standby; its first connection
// wakes it with the source's state, and from there the two diverge.
import type { Command } from 'commander';
import { z } from 'zod';
import { FlickApi, InstanceViewSchema, instanceUrl } from '../api-client.js';
import { printJson, withOutputOption, type OutputFormat } from '../output.js';
import { CliError } from '../cli-error.js';
import { parsePort, type PortFlag } from './run.js';

const ForkedSchema = z.object({ status: z.literal('success'), data: InstanceViewSchema.extend({ fork: z.object({ source: z.string(), mode: z.string(), duration_ms: z.number() }) }) });

/** `--volume pgdata=pgdata-copy`: the fork's name for one of the source's volumes. */
export function parseVolumeName(text: string, prev: Record<string, string> = {}): Record<string, string> {
  const m = /^([^=\s]+)=([^=\s]+)$/.exec(text.trim());
  if (!m) throw new CliError('USAGE', `--volume "${text}" is not VOLUME=NEW: name the fork's copy of a volume, e.g. --volume pgdata=pgdata-copy`, { kind: 'user' });
  return { ...prev, [m[1]!]: m[2]! };
}

function tcpPort(text: string, prev: PortFlag[] = []): PortFlag[] {
  const p = parsePort(text.includes('/') ? text : `${text}/tcp`);
  if (p.protocol !== 'tcp') throw new CliError('USAGE', `-p ${text}: a fork keeps its source's HTTP service under its own host name; give TCP host ports only, e.g. -p 5433:5432/tcp`, { kind: 'user' });
  return [...prev, p];
}

export function register(program: Command): void {
  const cmd = program
    .command('fork')
    .description("fork an instance: a new one with its memory and volumes as they are now (running or in standby), which then diverges")
    .argument('<instance>', 'the source: a stateful instance (one with a volume, or --scale-to-zero stateful=true)')
    .argument('<name>', "the fork's name")
    .option('-p, --port <HOST:GUEST/tcp>', "the fork's host port for each of the source's TCP ports (repeatable)", tcpPort)
    .option('--domain <host>', "the fork's HTTP host name (default <name>.localhost)")
    .option('--volume <VOLUME=NEW>', "the fork's name for a copy of the source's volume (repeatable; default <name>-<volume>)", parseVolumeName)
    .option('--shared', "from a standby source: share its saved state with its other shared forks instead of copying it (a fork is then a few hundred KiB)");
  withOutputOption(cmd).action(async (source: string, name: string, opts: { port?: PortFlag[]; domain?: string; volume?: Record<string, string>; shared?: boolean; output: OutputFormat }) => {
    const api = FlickApi.fromEnvironment();
    const body: Record<string, unknown> = { name };
    if (opts.port) body.ports = opts.port;
    if (opts.domain) body.hostname = opts.domain;
    if (opts.volume) body.volumes = opts.volume;
    if (opts.shared) body.shared = true;
    const forked = (await api.host.json('POST', `/v1/instances/${encodeURIComponent(source)}/fork`, ForkedSchema, body)).data;
    if (opts.output === 'json') return printJson(forked);
    const url = instanceUrl(forked);
    const how = forked.fork.mode === 'live' ? 'paused, saved and resumed' : forked.fork.mode === 'shared' ? 'from its standby, sharing its saved state' : 'from its standby';
    process.stdout.write(`${forked.name} forked from ${forked.fork.source} (${how}) in ${forked.fork.duration_ms} ms: ${forked.state}${url ? ` at ${url}` : ''}; its first connection wakes it\n`);
  });
}
