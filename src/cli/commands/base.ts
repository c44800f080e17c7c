// `flick base build [--node] [--python] [--push HOST]`: makes Debian-based base
// images locally under the names Dockerfiles use (node:20-slim, debian:bookworm,
// python:3-slim…), so unchanged Dockerfiles build without Docker Hub.
import type { Command } from 'commander';
import { buildBaseImages } from '../../image/base.js';

export function register(program: Command): void {
  const base = program.command('base').description('base images built on this host (Debian minbase, node, python)');
  base
    .command('build')
    .description('build debian:bookworm[-slim] (debootstrap, cached), node:<major>[-slim] and python:3[-slim] locally, as docker.io/library/…')
    .option('--node', "only Debian and node:<major>[-slim] (this host's node and npm)")
    .option('--python', "only Debian and python:3[-slim] (Debian's python3)")
    .option('--push <host>', 'push the built images to this registry (host[:port]), e.g. 127.0.0.1:7450')
    .option('--creds <user:password>', "registry credentials (flickd accepts flick:<token>)")
    .action(async (opts: { node?: boolean; python?: boolean; push?: string; creds?: string }) => {
      const names = await buildBaseImages({ ...opts, progress: (l) => process.stderr.write(`${l}\n`) });
      for (const n of names) process.stdout.write(`${n}\n`);
    });
}
