// The PostgreSQL image of examples/postgres for the tests and the benchmark:
// built once per source (Dockerfile, entrypoint and guest init) into a
// cached OCI layout under <cache>/postgres-image/, so a test file or a bench run
// after the first pays a push (seconds), not a build (minutes), and pushed to a
// flickd under test with `flick push`.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildInitrd } from '../guest/init.js';
import { buildBaseImages } from '../image/base.js';
import { buildImage } from '../image/build.js';
import { OciLayout } from '../image/oci-layout.js';
import { PACKAGE_ROOT, cacheDir } from '../paths.js';
import { api, type FlickdUnderTest } from '../daemon/testing.js';

export const POSTGRES_EXAMPLE = path.join(PACKAGE_ROOT, 'examples', 'postgres');
const exec = promisify(execFile);

/** Where the example's image for the current sources is cached, and its `name:tag` there. */
export async function postgresImageTarget(): Promise<{ layoutDir: string; ref: string }> {
  const initrd = await buildInitrd();
  // Not the kernel: an image carries its own, and a newer one changes nothing volumes need.
  const h = crypto.createHash('sha256').update(`init ${initrd.key}\n`);
  for (const f of fs.readdirSync(POSTGRES_EXAMPLE).sort()) h.update(`${f}\n`).update(fs.readFileSync(path.join(POSTGRES_EXAMPLE, f)));
  return { layoutDir: path.join(cacheDir(), 'postgres-image'), ref: `flick-postgres:${h.digest('hex').slice(0, 16)}` };
}

/** Builds (or finds) the example's image; returns the layout folder and its `name:tag`. */
export async function postgresImage(progress: (l: string) => void = () => {}): Promise<{ layoutDir: string; ref: string }> {
  const { layoutDir, ref } = await postgresImageTarget();
  const layout = new OciLayout(layoutDir);
  if ((await layout.list().catch(() => [])).some((i) => i.ref === ref)) return { layoutDir, ref };
  await buildBaseImages({ progress });
  // The full root filesystem: minimizing would need a traced run that speaks PostgreSQL's protocol.
  await buildImage({ context: POSTGRES_EXAMPLE, tag: ref, layout, minimize: false, progress });
  return { layoutDir, ref };
}

/** Pushes the example's image to flickd at `host` (URL) as `as` (name:tag). */
export async function pushPostgresImage(host: string, token: string, as: string, progress?: (l: string) => void): Promise<void> {
  const { layoutDir, ref } = await postgresImage(progress);
  const env = { ...process.env, FLICK_IMAGES_DIR: layoutDir, FLICK_HOST: host, FLICK_TOKEN: token };
  const flick = path.join(PACKAGE_ROOT, 'bin', 'flick');
  if (as !== ref) {
    const layout = new OciLayout(layoutDir);
    const image = await layout.resolve(ref);
    await layout.tag(as, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.digest, size: fs.statSync(layout.blobPath(image.digest)).size });
  }
  await exec(process.execPath, [flick, 'push', as], { env, maxBuffer: 16 * 2 ** 20 });
}

/**
 * The host's psql against `host:port` (TCP), one statement string, rows as
 * `-At` prints them. A server still starting (its port open, initdb or crash
 * recovery not done: "the database system is starting up" / "not yet accepting
 * connections") is retried for up to `startupMs`; any other error rejects at once.
 */
export async function psql(host: string, port: number, sql: string, startupMs = 120_000): Promise<string> {
  const deadline = Date.now() + startupMs;
  for (;;) {
    try {
      const r = await exec('psql', ['-h', host, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-Atc', sql], {
        env: { ...process.env, PGCONNECT_TIMEOUT: '120' },
        timeout: 180_000,
      });
      return r.stdout.trim();
    } catch (err) {
      if (!/the database system is (starting up|not yet accepting connections)/.test(String((err as { stderr?: string }).stderr)) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The CLI as a user runs it against the flickd under test: exit code and output. */
export async function flickCli(f: FlickdUnderTest, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, FLICK_HOST: f.base, FLICK_TOKEN: f.token };
  try {
    const r = await exec(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 'flick'), ...args], { env });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/**
 * Waits (polling the API in slices: one call may last at most 200 s) until the instance is in
 * `state`; returns its view. Fails with the flickd log's tail if it ends elsewhere or time runs out.
 */
export async function waitState(f: FlickdUnderTest, ref: string, state: string, timeoutMs = 600_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api(f, 'GET', `/v1/instances/${ref}/wait?state=${state}&timeout_ms=${Math.min(150_000, Math.max(1, deadline - Date.now()))}`);
    if (r.status === 408 && Date.now() < deadline) continue;
    if (r.status !== 200) throw new Error(`${ref} → ${state}: ${r.status} ${r.text}\n${f.log().slice(-3000)}`);
    return r.json.data;
  }
}
