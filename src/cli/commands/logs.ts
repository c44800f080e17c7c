// `flick logs [-f] NAME`: the instance's console (the app's stdout and stderr,
// and the guest kernel's messages); with -f, keeps printing until Ctrl-C.
import type { Command } from 'commander';
import { FlickApi } from '../api-client.js';

export function register(program: Command): void {
  program
    .command('logs')
    .description("print an instance's console log")
    .argument('<instance>', 'name or id')
    .option('-f, --follow', 'keep printing new output')
    .action(async (ref: string, opts: { follow?: boolean }) => {
      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      try {
        const body = await FlickApi.fromEnvironment().log(ref, opts.follow === true, ac.signal);
        for await (const chunk of body) {
          if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
        }
      } catch (err) {
        if (!ac.signal.aborted) throw err; // Ctrl-C while following is the normal way out
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
