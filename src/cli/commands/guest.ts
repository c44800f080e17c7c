// `flick guest build`: builds (or finds in the cache) the guest kernel and init.
// Setup runs it; users rarely need to.
import type { Command } from 'commander';
import { buildInitrd } from '../../guest/init.js';
import { buildKernel } from '../../guest/kernel.js';

export function register(program: Command): void {
  const guest = program.command('guest').description('the guest kernel and init every microVM boots');
  guest
    .command('build')
    .description('build the guest kernel and init unless cached (a second run is instant)')
    .action(async () => {
      const k = await buildKernel({ progress: (line) => process.stderr.write(`${line}\n`) });
      process.stdout.write(`kernel ${k.vmlinux}\n`);
      const i = await buildInitrd();
      process.stdout.write(`initrd ${i.initrd}\n`);
    });
}
