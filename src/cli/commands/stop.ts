// `flick stop NAME…`: graceful stop (the app gets SIGTERM, then SIGKILL after a grace period).
import type { Command } from 'commander';
import { FlickApi } from '../api-client.js';
import { printJson, withOutputOption, type OutputFormat } from '../output.js';

export function register(program: Command): void {
  withOutputOption(program.command('stop').description('stop instances').argument('<instances...>', 'names or ids')).action(
    async (refs: string[], opts: { output: OutputFormat }) => {
      const api = FlickApi.fromEnvironment();
      const done = [];
      for (const ref of refs) {
        const i = await api.stop(ref);
        done.push(i);
        if (opts.output === 'table') process.stdout.write(`${i.name} ${i.state}\n`);
      }
      if (opts.output === 'json') printJson(done);
    },
  );
}
