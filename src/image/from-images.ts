// The images a Dockerfile's FROM lines name, made present in local storage before
// buildah runs: a name already there is used (as `docker build` does); a missing
// one is pulled; a local base that `flick base build` made stands in for the
// official image when its registry is unreachable (air-gapped hosts, these
// machines), and the build says which base stood in for which name. Where the
// registry answers, the official image is pulled over the stand-in, as usual.
import net from 'node:net';
import { STAND_IN_LABEL } from './base.js';
import { inspectImage, pullImage } from './buildah.js';
import type { DockerfilePlan } from './dockerfile.js';
import { ImageError } from './image-error.js';

const REACH_TIMEOUT_MS = 1500;

/** The registry host a reference pulls from (short names are Docker Hub's, as in Docker). */
export function registryHostOf(ref: string): string {
  const first = ref.split('/')[0]!;
  const qualified = ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!qualified || first === 'docker.io') return 'registry-1.docker.io';
  return first;
}

/** Whether a TCP connection to the registry's HTTPS port opens within 1.5 s. */
function reachable(host: string): Promise<boolean> {
  const [name, port] = host.includes(':') ? [host.slice(0, host.lastIndexOf(':')), Number(host.slice(host.lastIndexOf(':') + 1))] : [host, 443];
  return new Promise((resolve) => {
    const s = net.connect({ host: name, port, timeout: REACH_TIMEOUT_MS });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('timeout', () => done(false));
    s.once('error', () => done(false));
  });
}

/** Makes every FROM image present locally, reporting stand-ins; a BASE_IMAGE_MISSING user error names the line of one that is not. */
export async function provideBaseImages(plan: DockerfilePlan, creds: string | undefined, progress: (line: string) => void): Promise<void> {
  for (const base of plan.baseImages) {
    const local = await inspectImage(base.ref);
    const standIn = local?.config.Labels?.[STAND_IN_LABEL];
    if (local && standIn === undefined) continue;
    const host = registryHostOf(base.ref);
    if (local && standIn !== undefined) {
      if (host !== 'localhost' && (await reachable(host)) && (await pullImage(base.ref, creds).then(() => true, () => false))) {
        progress(`FROM ${base.ref} (line ${base.line}): pulled from ${host}`);
        continue;
      }
      progress(`FROM ${base.ref} (line ${base.line}): ${host} is not reachable, so the local base from 'flick base build' stands in: ${standIn}`);
      continue;
    }
    progress(`pulling ${base.ref} (line ${base.line})`);
    await pullImage(base.ref, creds).catch((cause: unknown) => {
      throw new ImageError(
        'BASE_IMAGE_MISSING',
        `${plan.file}:${base.line}: FROM ${base.ref}: the image is neither in local storage nor pullable from ${host}: ` +
          `'flick base build' makes local debian, node and python bases under their usual names, or fix the name`,
        { kind: 'user', cause },
      );
    });
  }
}
