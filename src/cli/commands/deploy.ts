// `flick deploy SERVICE IMAGE[:TAG] [--max-surge N] [--max-unavailable N]`: a rolling deploy
// (src/services/deploy.ts); exits 0 only once every instance runs the new image, else says
// why it rolled back and exits non-zero.
import type { Command } from 'commander';
import { FlickError } from '../../errors.js';
import { FlickApi } from '../api-client.js';
import { printJson, withOutputOption, type OutputFormat } from '../output.js';

const count = (flag: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw new FlickError('USAGE', `${flag} "${v}" is not a whole number ≥ 0: e.g. ${flag} 1`, { kind: 'user' });
  return Number(v);
};

export function register(program: Command): void {
  withOutputOption(
    program
      .command('deploy')
      .description("roll a service onto a new image: new instances ready before old ones drain; rolled back if they never are")
      .argument('<service>', 'the service (flick services)')
      .argument('<image>', 'an image pushed to this host, e.g. app:2')
      .option('--max-surge <n>', 'new instances made at once beyond the service\'s size (default 1)', count('--max-surge'))
      .option('--max-unavailable <n>', 'old instances taken down before their replacements are ready (default 0)', count('--max-unavailable')),
  ).action(async (service: string, image: string, opts: { maxSurge?: number; maxUnavailable?: number; output: OutputFormat }) => {
    const api = FlickApi.fromEnvironment();
    const body = { image, ...(opts.maxSurge !== undefined ? { max_surge: opts.maxSurge } : {}), ...(opts.maxUnavailable !== undefined ? { max_unavailable: opts.maxUnavailable } : {}) };
    const done = await api.deploy(service, body);
    if (opts.output === 'json') return printJson(done);
    process.stdout.write(`${done.name}: every instance runs ${image} (${done.instances.map((i) => i.name).join(', ')})\n`);
  });
}
