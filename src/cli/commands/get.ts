// `flick get NAME`: everything the host knows about one instance.
import type { Command } from 'commander';
import { FlickApi, instanceUrl } from '../api-client.js';
import { lastWakeText, printJson, renderFields, stateText, wakesText, withOutputOption, type OutputFormat } from '../output.js';

export function register(program: Command): void {
  withOutputOption(program.command('get').description('show one instance').argument('<instance>', 'name or id')).action(
    async (ref: string, opts: { output: OutputFormat }) => {
      const i = await FlickApi.fromEnvironment().get(ref);
      if (opts.output === 'json') return printJson(i);
      const s2z = i.scale_to_zero;
      process.stdout.write(
        renderFields([
          ['name', i.name],
          ['id', i.id],
          ['state', stateText(i)],
          ['image', `${i.image}${i.image_digest ? ` (${String(i.image_digest)})` : ''}`],
          ['url', instanceUrl(i)],
          ['address', i.address],
          ['memory', `${i.memory_mb} MiB`],
          ['vcpus', i.vcpus],
          ['http', i.service.http ? `${i.service.http.hostname} → guest port ${i.service.http.guest_port}` : undefined],
          ['tcp', i.service.tcp.map((t) => `${t.port} → ${t.guest_port}`).join(', ')],
          ['healthcheck', i.healthcheck ? `${JSON.stringify(i.healthcheck.command)} every ${i.healthcheck.interval_ms / 1000} s (ready once it passed)` : undefined],
          ['health', i.health ? `${i.health.status} since ${i.health.since}` : undefined],
          ['restart policy', i.restart_policy],
          ['scale to zero', s2z.policy === 'off' ? 'off' : `${s2z.policy}, cooldown ${s2z.cooldown_time_ms} ms, ${s2z.stateful ? 'stateful' : 'stateless'}`],
          ['boots / wakes / restarts', `${i.boots ?? 0} / ${wakesText(i)} / ${i.restarts ?? 0}`],
          ['last wake', lastWakeText(i.last_wake)],
          ['template', i.template],
          ['last exit code', i.last_exit_code],
          ['error', i.error],
          ['created', i.created_at],
          ['started', i.started_at],
          ['stopped', i.stopped_at],
        ]),
      );
    },
  );
}
