// How the CLI finds its flickd: FLICK_HOST and FLICK_TOKEN, else the config file
// that `flick host up` writes (~/.config/flick/host.json, mode 0600).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { FlickError } from '../errors.js';
import { CliError } from './cli-error.js';

export const DEFAULT_HOST_URL = 'http://127.0.0.1:7450';

export interface HostConfig {
  /** flickd's API and registry base URL, e.g. http://127.0.0.1:7450 */
  url: string;
  token: string | undefined;
}

const HostFileSchema = z.object({
  version: z.literal(1),
  url: z.string().url(),
  token: z.string().min(1).optional(),
  tokenFile: z.string().optional(),
});
export type HostFile = z.infer<typeof HostFileSchema>;

export function hostConfigPath(): string {
  const base = process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config');
  return path.join(base, 'flick', 'host.json');
}

export function writeHostConfig(file: HostFile): void {
  const p = hostConfigPath();
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
  const tmp = `${p}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, p);
}

/** Resolves the host to talk to; `override` is a --host flag's value. */
export function resolveHostConfig(override?: string): HostConfig {
  const envUrl = override ?? process.env.FLICK_HOST;
  let file: HostFile | undefined;
  try {
    const raw = fs.readFileSync(hostConfigPath(), 'utf8');
    const parsed = HostFileSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) {
      throw new CliError('USAGE', `${hostConfigPath()} is not a valid Flick host file: run 'flick host up' again or remove it`, {
        kind: 'user',
      });
    }
    file = parsed.data;
  } catch (err) {
    if (err instanceof FlickError) throw err;
    // No file: fall through to the environment and the default.
  }
  const url = (envUrl ?? file?.url ?? DEFAULT_HOST_URL).replace(/\/+$/, '');
  let token = process.env.FLICK_TOKEN ?? file?.token;
  if (token === undefined && file?.tokenFile) {
    try {
      token = fs.readFileSync(file.tokenFile, 'utf8').trim();
    } catch {
      // An unreadable token file leaves the token unset; the host answers 401 with what to do.
    }
  }
  return { url, token };
}
