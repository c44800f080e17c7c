// The Dockerfile's HEALTHCHECK and STOPSIGNAL, carried from the build to the guest.
// buildah drops HEALTHCHECK from OCI-format images, so the build reads it from the
// Dockerfile (the final stage's last one wins; `HEALTHCHECK NONE` turns it off) and
// stores it as a label of the microVM image; the controller passes it, and the
// STOPSIGNAL, to the guest init, which runs the check itself (guest/init/health.c).
// Docker's reference: https://docs.docker.com/reference/dockerfile/#healthcheck
import type { GuestHealthcheck } from '../vmm/driver.js';

export const LABEL_HEALTHCHECK = 'dev.flick.healthcheck';

const DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, startPeriodMs: 0, retries: 3 };

/** "30s", "1m30s", "500ms" → milliseconds (Go durations, as Docker takes them). */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(ms);
}

/** A HEALTHCHECK instruction's arguments → the check, `null` for NONE, or a message saying what is wrong. */
export function parseHealthcheck(text: string): GuestHealthcheck | null | string {
  let rest = text.trim();
  if (/^NONE$/i.test(rest)) return null;
  const hc = { ...DEFAULTS };
  for (;;) {
    const m = /^--([a-z-]+)=(\S+)\s+/.exec(rest);
    if (!m) break;
    rest = rest.slice(m[0].length);
    const [name, value] = [m[1]!, m[2]!];
    if (name === 'retries') {
      if (!/^\d+$/.test(value) || Number(value) < 1) return `--retries=${value}: expected a whole number of at least 1`;
      hc.retries = Number(value);
      continue;
    }
    const key = { interval: 'intervalMs', timeout: 'timeoutMs', 'start-period': 'startPeriodMs', 'start-interval': undefined }[name];
    if (key === undefined && name !== 'start-interval') return `unknown option --${name}: use --interval, --timeout, --start-period, --start-interval or --retries`;
    const ms = parseDuration(value);
    if (ms === undefined) return `--${name}=${value}: expected a duration like 30s, 1m or 500ms`;
    if (key) hc[key as 'intervalMs'] = ms;
  }
  const cmd = /^CMD\s+([\s\S]+)$/i.exec(rest);
  if (!cmd) return 'expected HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE';
  const body = cmd[1]!.trim();
  let argv: string[];
  if (body.startsWith('[')) {
    try {
      argv = JSON.parse(body) as string[];
    } catch {
      return 'CMD has a malformed JSON argument list';
    }
    if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== 'string')) return 'CMD needs a non-empty list of strings';
  } else {
    argv = ['/bin/sh', '-c', body];
  }
  return { argv, ...hc };
}

/** The label value a check is stored as. */
export function healthcheckLabel(hc: GuestHealthcheck): string {
  return JSON.stringify(hc);
}

/** The check an image config carries (undefined without one, or a label that does not parse). */
export function healthcheckOf(labels: Record<string, string> | null | undefined): GuestHealthcheck | undefined {
  const raw = labels?.[LABEL_HEALTHCHECK];
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as GuestHealthcheck;
    if (!Array.isArray(v.argv) || v.argv.length === 0 || ![v.intervalMs, v.timeoutMs, v.startPeriodMs, v.retries].every(Number.isFinite)) return undefined;
    return v;
  } catch {
    return undefined;
  }
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15, SIGWINCH: 28, SIGPWR: 30,
};

/** STOPSIGNAL ("SIGINT", "INT", "2") → its number on Linux x86-64, or undefined if unknown. */
export function signalNumber(name: string | null | undefined): number | undefined {
  if (!name) return undefined;
  if (/^\d+$/.test(name)) return Number(name) >= 1 && Number(name) <= 64 ? Number(name) : undefined;
  const up = name.toUpperCase();
  return SIGNALS[up.startsWith('SIG') ? up : `SIG${up}`];
}
