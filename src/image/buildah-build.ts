// Runs `buildah bud` for a checked Dockerfile: chroot isolation (the only one
// that works as root here, FINDINGS.md), the host's CA bundle and npm config
// mounted into RUN steps so package installs trust the same registries the host
// does, and buildah's "STEP n/m" lines turned into per-step progress and, on
// failure, an error naming the Dockerfile line of the step that failed.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { STORAGE } from './buildah.js';
import type { DockerfilePlan, Step } from './dockerfile.js';
import { runTool, toolFailure } from './exec.js';
import { ImageError } from './image-error.js';

/** Host file → where RUN steps see it (read-only). Only those that exist on the host are mounted. */
const HOST_MOUNTS: [string, string][] = [
  ['/etc/ssl/certs/ca-certificates.crt', '/etc/ssl/certs/ca-certificates.crt'],
  ['/etc/npmrc', '/etc/npmrc'],
  // The node base keeps npm under /usr/local, whose global config is here.
  ['/etc/npmrc', '/usr/local/etc/npmrc'],
  ['/root/.npmrc', '/root/.npmrc'],
];

export interface BudOptions {
  dockerfile: string;
  context: string;
  plan: DockerfilePlan;
  buildArgs: Map<string, string>;
  /** A throwaway name for the built image; the caller removes it. */
  tag: string;
  progress: (line: string) => void;
  scratchDir: string;
}

/** Builds the image and returns its id. */
export async function buildahBud(o: BudOptions): Promise<string> {
  const iidfile = path.join(o.scratchDir, 'iid');
  const mounts = HOST_MOUNTS.filter(([h]) => fs.existsSync(h)).flatMap(([h, c]) => ['-v', `${h}:${c}:ro`]);
  const args = [
    // FROM images are already local (from-images.ts): use them, as `docker build` does, without asking a registry again.
    ...STORAGE, 'bud', '--isolation', 'chroot', '--pull=false', '--layers=false', '--rm', '--force-rm', '--format', 'oci',
    '-f', o.dockerfile, '-t', o.tag, '--iidfile', iidfile, ...mounts,
    ...[...o.buildArgs].flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
    o.context,
  ];
  let current: Step | undefined;
  const r = await runTool('buildah', args, {
    ownProcessGroup: true,
    onLine: (line) => {
      const m = /^(?:\[(\d+)\/\d+\] )?STEP (\d+)\/(\d+): (.*)$/.exec(line);
      if (!m) return;
      const stage = o.plan.stages[m[1] ? Number(m[1]) - 1 : o.plan.stages.length - 1];
      current = stage?.steps[Number(m[2]) - 1] ?? current;
      o.progress(`${m[1] ? `[stage ${m[1]}/${o.plan.stages.length}] ` : ''}step ${m[2]}/${m[3]}${current ? ` (line ${current.line})` : ''}: ${m[4]}`);
    },
  });
  if (r.code !== 0) {
    const output = r.tail.filter((l) => !/^(STEP|\[\d)/.test(l)).slice(-12).join('\n  ');
    const where = current ? `${o.plan.file}:${current.line}: ${current.keyword} ${current.text}` : o.plan.file;
    const err = new ImageError('BUILD_STEP_FAILED', `${where}: the step failed (buildah exit ${r.code}):\n  ${output}\nfix the step and build again`, {
      kind: 'user',
      details: { line: current?.line },
    });
    throw toolFailure(err, r.tail, where);
  }
  return (await fsp.readFile(iidfile, 'utf8')).trim().replace(/^sha256:/, '');
}

/** Absolute image paths the final stage's COPY/ADD instructions wrote (for the keep set). */
export function copiedPaths(plan: DockerfilePlan, initialWorkdir: string): string[] {
  const stage = plan.stages[plan.stages.length - 1]!;
  let workdir = initialWorkdir || '/';
  const out: string[] = [];
  for (const s of stage.steps) {
    if (s.keyword === 'WORKDIR' && !s.text.includes('$')) workdir = path.posix.resolve(workdir, s.text);
    if (s.keyword !== 'COPY' && s.keyword !== 'ADD') continue;
    const body = s.text.replace(/^(--\S+\s+)*/, '').trim();
    let words: string[];
    try {
      words = body.startsWith('[') ? (JSON.parse(body) as string[]) : body.split(/\s+/);
    } catch {
      continue;
    }
    const dest = words[words.length - 1];
    if (!dest || dest.includes('$') || body.includes('<<')) continue;
    const abs = path.posix.resolve(workdir, dest);
    if (dest.endsWith('/') || words.length > 2) {
      for (const src of words.slice(0, -1)) if (!/[*?[]/.test(src)) out.push(path.posix.join(abs, path.posix.basename(src)));
      if (abs !== '/') out.push(abs);
    } else out.push(abs);
  }
  return out;
}
