// `flick services`: the services on the host, one line each; `flick service get NAME`
// and `flick service rm NAME`: one service, and its removal with its instances;
// `flick service scale NAME N`: set its number of instances.
import type { Command } from 'commander';
import { FlickApi, type ServiceView } from '../api-client.js';
import { CliError } from '../cli-error.js';
import { printJson, renderFields, renderTable, withOutputOption, type OutputFormat } from '../output.js';

const running = (s: ServiceView) => `${s.instances.filter((i) => i.state === 'running').length}/${s.instances.length}`;

function autoscaleText(s: ServiceView): string | undefined {
  const a = s.autoscale as { min: number; max: number; target_inflight: number; cooldown_time_ms: number } | null | undefined;
  return a ? `min ${a.min}, max ${a.max}, target ${a.target_inflight} in flight, cooldown ${a.cooldown_time_ms} ms` : undefined;
}

/** The totals, then the last few events with their reasons, one per line. */
function scaleText(s: ServiceView): string | undefined {
  const e = s.scale_events as { up: number; down: number; recent: Array<{ at: string; direction: string; instance: string; awake: number; reason: string }> } | null | undefined;
  if (!e) return undefined;
  const lines = e.recent.slice(-10).map((x) => `\n  ${x.at} ${x.direction.padEnd(4)} ${x.instance}: ${x.reason} (${x.awake} awake)`);
  return `${e.up} up, ${e.down} down${lines.join('')}`;
}

/** How the last deploy ended: deployed, or rolled back with why (and the old-image instances made again). */
function lastDeployText(s: ServiceView): string | undefined {
  const d = s.last_deploy as { image: string; outcome: string; reason: string | null; recreated: number; ended_at: string } | null | undefined;
  if (!d) return undefined;
  if (d.outcome === 'deployed') return `${d.image} deployed at ${d.ended_at}`;
  return `${d.image} rolled back at ${d.ended_at}: ${d.reason ?? 'no reason given'}${d.recreated > 0 ? `; ${d.recreated} instance(s) made again from ${s.image}` : ''}`;
}

export function register(program: Command): void {
  withOutputOption(program.command('services').description('list the services on the host (flick run --replicas N)')).action(async (opts: { output: OutputFormat }) => {
    const services = await FlickApi.fromEnvironment().services();
    if (opts.output === 'json') return printJson(services);
    process.stdout.write(
      renderTable<ServiceView>(services, [
        { header: 'NAME', value: (s) => s.name },
        { header: 'REPLICAS', value: (s) => String(s.replicas) },
        { header: 'RUNNING', value: running },
        { header: 'IMAGE', value: (s) => s.image },
        { header: 'URL', value: (s) => s.url ?? '-' },
      ]),
    );
  });
  const service = program.command('service').description('show or remove one service');
  withOutputOption(service.command('get').description('show one service and its instances').argument('<name>', 'the service')).action(async (name: string, opts: { output: OutputFormat }) => {
    const s = await FlickApi.fromEnvironment().service(name);
    if (opts.output === 'json') return printJson(s);
    process.stdout.write(
      renderFields([
        ['name', s.name],
        ['image', s.image],
        ['url', s.url ?? undefined],
        ['replicas', s.replicas],
        ['running', running(s)],
        ['autoscale', autoscaleText(s)],
        ['instances', s.instances.map((i) => `${i.name} (${i.state})`).join(', ')],
        ['scale events', scaleText(s)],
        ['last deploy', lastDeployText(s)],
        ['created', s.created_at],
      ]),
    );
  });
  withOutputOption(service.command('scale').description('set the number of instances of a service (not an autoscaled one)').argument('<name>', 'the service').argument('<replicas>', 'the number of instances, e.g. 3')).action(
    async (name: string, replicas: string, opts: { output: OutputFormat }) => {
      if (!/^\d+$/.test(replicas)) throw new CliError('USAGE', `replicas "${replicas}" is not a whole number: e.g. flick service scale ${name} 3`, { kind: 'user' });
      const s = await FlickApi.fromEnvironment().scaleService(name, Number(replicas));
      if (opts.output === 'json') return printJson(s);
      process.stdout.write(`${s.name} scaled to ${s.replicas} instance(s): ${s.instances.map((i) => i.name).join(', ') || 'none'}\n`);
    },
  );
  withOutputOption(service.command('rm').description('remove a service and its instances').argument('<name>', 'the service')).action(async (name: string, opts: { output: OutputFormat }) => {
    await FlickApi.fromEnvironment().rmService(name);
    if (opts.output === 'json') return printJson({ name, state: 'removed' });
    process.stdout.write(`${name} removed\n`);
  });
}
