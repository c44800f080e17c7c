// The microVM image's OCI image config (config.md:
// https://github.com/opencontainers/image-spec/blob/main/config.md): the
// container image's Entrypoint/Cmd/Env/WorkingDir/User/ExposedPorts carried over
// unchanged, plus the user resolved to numbers at build time (the guest has
// no NSS to look names up at boot) in Flick labels.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { ContainerConfig } from './buildah.js';
import { ImageError } from './image-error.js';

export const LABEL_UID = 'dev.flick.uid';
export const LABEL_GID = 'dev.flick.gid';

export const ImageConfigSchema = z
  .object({
    architecture: z.string(),
    os: z.string(),
    created: z.string().optional(),
    config: z
      .object({
        Entrypoint: z.array(z.string()).optional(),
        Cmd: z.array(z.string()).optional(),
        Env: z.array(z.string()).optional(),
        WorkingDir: z.string().optional(),
        User: z.string().optional(),
        ExposedPorts: z.record(z.string(), z.object({}).passthrough()).optional(),
        Labels: z.record(z.string(), z.string()).optional(),
        StopSignal: z.string().optional(),
        Volumes: z.record(z.string(), z.object({}).passthrough()).optional(),
      })
      .passthrough(),
    rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(z.string()) }),
  })
  .passthrough();
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

/** Reads name → id from an /etc/passwd- or /etc/group-style file in the image. */
function idTable(root: string, file: string): Map<string, { id: number; gid?: number }> {
  const m = new Map<string, { id: number; gid?: number }>();
  let text = '';
  try {
    text = fs.readFileSync(path.join(root, file), 'utf8');
  } catch {
    return m;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || !f[0]) continue;
    m.set(f[0], { id: Number(f[2]), ...(file === '/etc/passwd' ? { gid: Number(f[3]) } : {}) });
  }
  return m;
}

/** USER as Docker reads it (name or uid, optional :group or :gid) → numbers, from the image's own files. */
export function resolveUser(root: string, user: string | undefined): { uid: number; gid: number } {
  if (!user) return { uid: 0, gid: 0 };
  const [u, g] = user.split(':') as [string, string | undefined];
  const passwd = idTable(root, '/etc/passwd');
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    gid = [...passwd.values()].find((e) => e.id === uid)?.gid;
  } else {
    const e = passwd.get(u);
    if (!e) throw new ImageError('USER_UNKNOWN', `USER ${user}: the image has no user "${u}" in /etc/passwd: create it in a RUN step (useradd) or use a numeric uid`, { kind: 'user' });
    uid = e.id;
    gid = e.gid;
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const e = idTable(root, '/etc/group').get(g);
      if (!e) throw new ImageError('USER_UNKNOWN', `USER ${user}: the image has no group "${g}" in /etc/group: create it (groupadd) or use a numeric gid`, { kind: 'user' });
      gid = e.id;
    }
  }
  return { uid, gid: gid ?? uid };
}

/** The argv the guest runs: Entrypoint + Cmd, as Docker combines them. */
export function commandOf(c: ContainerConfig): string[] {
  return [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
}

/** The first EXPOSEd TCP port, which Flick treats as the app's service port. */
export function servicePort(c: { ExposedPorts?: Record<string, unknown> | null }): number | undefined {
  for (const k of Object.keys(c.ExposedPorts ?? {})) {
    const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(k);
    if (m && m[2] !== 'udp') return Number(m[1]);
  }
  return undefined;
}

export function buildImageConfig(c: ContainerConfig, ids: { uid: number; gid: number }, diffIds: string[], extraLabels: Record<string, string> = {}): ImageConfig {
  const ports: Record<string, Record<string, never>> = {};
  for (const k of Object.keys(c.ExposedPorts ?? {})) ports[k] = {};
  return {
    architecture: 'amd64',
    os: 'linux',
    created: new Date().toISOString(),
    config: {
      ...(c.Entrypoint ? { Entrypoint: c.Entrypoint } : {}),
      ...(c.Cmd ? { Cmd: c.Cmd } : {}),
      Env: c.Env ?? [],
      WorkingDir: c.WorkingDir || '/',
      ...(c.User ? { User: c.User } : {}),
      ExposedPorts: ports,
      ...(c.StopSignal ? { StopSignal: c.StopSignal } : {}),
      ...(c.Volumes && Object.keys(c.Volumes).length > 0 ? { Volumes: Object.fromEntries(Object.keys(c.Volumes).map((v) => [v, {}])) } : {}),
      Labels: { ...(c.Labels ?? {}), ...extraLabels, [LABEL_UID]: String(ids.uid), [LABEL_GID]: String(ids.gid) },
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
}
