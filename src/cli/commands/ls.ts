// `flick ls`: the instances on the host, one line each.
import type { Command } from 'commander';
import { FlickApi, instanceUrl, type InstanceView } from '../api-client.js';
import { printJson, renderTable, stateText, wakesText, withOutputOption, type OutputFormat } from '../output.js';

export function register(program: Command): void {
  withOutputOption(program.command('ls').alias('list').description('list the instances on the host')).action(async (opts: { output: OutputFormat }) => {
    const instances = await FlickApi.fromEnvironment().list();
    if (opts.output === 'json') return printJson(instances);
    process.stdout.write(
      renderTable<InstanceView>(instances, [
        { header: 'NAME', value: (i) => i.name },
        { header: 'STATE', value: (i) => stateText(i) },
        { header: 'IMAGE', value: (i) => i.image },
        { header: 'MEMORY', value: (i) => `${i.memory_mb}M` },
        { header: 'SCALE-TO-ZERO', value: (i) => (i.scale_to_zero.policy === 'off' ? 'off' : `${i.scale_to_zero.policy}${i.scale_to_zero.stateful ? ',stateful' : ''}`) },
        { header: 'WAKES', value: (i) => wakesText(i) },
        { header: 'URL', value: (i) => instanceUrl(i) ?? '-' },
      ]),
    );
  });
}
