// `flick rm [-f] NAME…`: removes instances (with -f also running ones, stopping them first).
import type { Command } from 'commander';
import { FlickApi } from '../api-client.js';

export function register(program: Command): void {
  program
    .command('rm')
    .description('remove instances')
    .argument('<instances...>', 'names or ids')
    .option('-f, --force', 'also remove running instances (they are stopped first)')
    .action(async (refs: string[], opts: { force?: boolean }) => {
      const api = FlickApi.fromEnvironment();
      for (const ref of refs) {
        await api.rm(ref, opts.force === true);
        process.stdout.write(`${ref} removed\n`);
      }
    });
}
