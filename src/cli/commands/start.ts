// `flick start NAME`: starts a stopped (or failed) instance and waits until it answers.
import type { Command } from 'commander';
import { FlickApi, instanceUrl } from '../api-client.js';
import { printJson, withOutputOption, type OutputFormat } from '../output.js';
import { waitUntilRunning } from './run.js';

export function register(program: Command): void {
  withOutputOption(
    program
      .command('start')
      .description('start a stopped instance and wait until it answers')
      .argument('<instance>', 'name or id')
      .option('-d, --detach', 'do not wait until the instance answers')
      .option('--timeout <ms>', 'how long to wait for the instance to answer', (v) => Number(v), 120_000),
  ).action(async (ref: string, opts: { detach?: boolean; timeout: number; output: OutputFormat }) => {
    const api = FlickApi.fromEnvironment();
    let i = await api.start(ref);
    if (!opts.detach) i = await waitUntilRunning(api, i, opts.timeout);
    if (opts.output === 'json') return printJson(i);
    const url = instanceUrl(i);
    process.stdout.write(`${i.name} ${i.state}${url ? ` at ${url}` : ''}\n`);
  });
}
