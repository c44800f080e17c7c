// `flick base build [--node] [--python] [--push HOST]`: makes Debian-based base
// images locally (no Docker Hub needed) so Dockerfiles can `FROM` them.
import type { Command } from 'commander';
import { buildBaseImages } from '../../image/base.js';

export function register(program: Command): void {
  const base = program.command('base').description('base images built on this host (Debian minbase, node, python)');
  base
    .command('build')
    .description('build localhost/flick/debian:bookworm (debootstrap, cached), and optionally node and python bases')
    .option('--node', "also build localhost/flick/node:<major> with this host's node and npm")
    .option('--python', 'also build localhost/flick/python:3 (Debian minbase + python3-minimal)')
    .option('--push <host>', 'push the built images to this registry (host[:port]), e.g. 127.0.0.1:7450')
    .option('--creds <user:password>', "registry credentials (flickd accepts flick:<token>)")
    .action(async (opts: { node?: boolean; python?: boolean; push?: string; creds?: string }) => {
      const names = await buildBaseImages({ ...opts, progress: (l) => process.stderr.write(`${l}\n`) });
      for (const n of names) process.stdout.write(`${n}\n`);
    });
}
