// `flick build` as a library: Dockerfile → buildah → specialized root
// filesystem → OCI microVM image in the local layout. Everything is built in a
// scratch folder and under a throwaway buildah name; the image appears only
// when the layout's index.json names it, so a failed build leaves nothing.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { requireKernel } from '../guest/kernel.js';
import { buildInitrd } from '../guest/init.js';
import type { GuestConfig } from '../vmm/driver.js';
import { type ContainerConfig, imageSize, inspectImage, mountImage, removeImage } from './buildah.js';
import { buildahBud, copiedPaths } from './buildah-build.js';
import { computeKeepSet } from './closure.js';
import { planDockerfile } from './dockerfile.js';
import { LABEL_HEALTHCHECK, healthcheckLabel, signalNumber } from './healthcheck.js';
import { provideBaseImages } from './from-images.js';
import { ImageError } from './image-error.js';
import { buildImageConfig, commandOf, resolveUser, servicePort } from './image-config.js';
import {
  ANNOTATION_CREATED, ANNOTATION_KERNEL_KEY, ANNOTATION_MINIMIZED, ANNOTATION_SOURCE_IMAGE, ANNOTATION_SOURCE_IMAGE_BYTES,
  FLICK_ARTIFACT, FLICK_INITRD_XZ, FLICK_KERNEL_XZ, OCI_CONFIG, OCI_MANIFEST,
} from './media-types.js';
import { type Descriptor, OciLayout, normalizeRef } from './oci-layout.js';
import { DEFAULT_FORMAT, type RootfsFormat, packRootfs, rootfsLayer } from './pack.js';
import { DEFAULT_ICU_LOCALES, localesFromEnv, trimIcuInTree } from './icu-trim.js';
import { initrdLayerFile, kernelLayerFile } from './layer-codec.js';
import { stageFull, stageKept, stripLargeElfs } from './rootfs.js';

/** What readiness waits for in a build's boots. */
export interface ReadyProbe {
  /** The EXPOSEd port that must listen; undefined: any port (or, if none ever listens, running a while). */
  port: number | undefined;
}

/** Why a boot never became ready: the app exited, the VM failed, or time ran out. `output` is the console's tail (the app's own output). */
export interface Unready {
  kind: 'exited' | 'vm' | 'timeout';
  text: string;
  output: string;
}

export interface BootRun {
  /** Paths the app opened until it was ready (trace mode). */
  opened: string[];
  unready?: Unready;
  /** The port that listened (undefined: the app never listened). */
  readyPort?: number;
  /** Whether `GET /` on that port got an HTTP answer. */
  answeredHttp: boolean;
}

/** Boots candidate root filesystems; implemented over QEMU in trace-runner.ts (a seam so tests can fake it). */
export interface TraceRunner {
  /** Boots `rootfs` in trace mode until the app is ready (or why it never was). */
  trace(rootfs: string, guest: GuestConfig, probe: ReadyProbe): Promise<BootRun>;
  /** Boots `rootfs` normally; resolves undefined when the app became ready as in the `traced` run, else why not. */
  check(rootfs: string, guest: GuestConfig, probe: ReadyProbe, traced: BootRun): Promise<Unready | undefined>;
}

export interface BuildOptions {
  context: string;
  dockerfile?: string;
  /** NAME[:TAG]; defaults to the context folder's name. */
  tag?: string;
  buildArgs?: Map<string, string>;
  /** false keeps the whole root filesystem (--no-minimize). */
  minimize?: boolean;
  format?: RootfsFormat;
  /** Without one, minimization uses the closure alone (no traced run, no boot check). */
  tracer?: TraceRunner;
  layout?: OciLayout;
  /** user:password for registries FROM pulls from (flickd accepts flick:<token>). */
  creds?: string;
  progress?: (line: string) => void;
  /** Locales whose ICU data an executable's built-in copy keeps (icu-trim.ts); default en plus the image's LANG; ['all'] keeps it whole. */
  icuLocales?: string[];
  /** Build even if the traced run's app exits (packing the full root filesystem); else that is an APP_EXITED error. */
  allowUnready?: boolean;
  /** Aborting stops the build at its next step and removes what it made so far. */
  signal?: AbortSignal;
}

/** How the root filesystem was chosen. */
export type Minimization = 'traced' | 'closure' | 'full' | 'full-fallback';

export interface BuildResult {
  ref: string;
  digest: string;
  /** The microVM image's own bytes: root filesystem, config and manifest (kernel and initrd are shared by every image). */
  sizeBytes: number;
  /** Every layer including the kernel and initrd. */
  totalBytes: number;
  sourceImageBytes: number;
  seconds: number;
  minimization: Minimization;
  fallbackReason?: string;
}

export async function buildImage(o: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  const report = o.progress ?? (() => {});
  // Every step reports progress first, so this is where an aborted build stops (and `finally` cleans up).
  const progress = (line: string) => {
    o.signal?.throwIfAborted();
    report(line);
  };
  const context = path.resolve(o.context);
  const dockerfile = path.resolve(o.dockerfile ?? path.join(context, 'Dockerfile'));
  const buildArgs = o.buildArgs ?? new Map<string, string>();
  const ref = normalizeRef(o.tag ?? path.basename(context).toLowerCase().replace(/[^a-z0-9._-]+/g, '-'));
  const layout = o.layout ?? new OciLayout();

  const plan = planDockerfile(dockerfile, context, buildArgs);
  // Fail before the slow part if the guest kernel the image will carry is not built.
  const kernel = requireKernel();
  await provideBaseImages(plan, o.creds, progress);

  const scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'flick-build-'));
  const tmpTag = `localhost/flick-build/${crypto.randomBytes(6).toString('hex')}:latest`;
  let dispose: (() => Promise<void>) | undefined;
  try {
    const id = await buildahBud({ dockerfile, context, plan, buildArgs, tag: tmpTag, progress: report, scratchDir: scratch });
    const inspected = await inspectImage(id);
    if (!inspected) throw new ImageError('TOOL_FAILED', `buildah built ${id} but cannot inspect it`);
    const c: ContainerConfig = inspected.config;
    const argv = commandOf(c);
    const finalFrom = plan.stages[plan.stages.length - 1]!.steps[0]!;
    if (argv.length === 0) {
      throw new ImageError('NO_COMMAND', `${plan.file}:${finalFrom.line}: the final stage (FROM ${plan.stages.at(-1)!.from}) has no CMD or ENTRYPOINT and its base sets none: add one`, {
        kind: 'user',
      });
    }
    const sourceImageBytes = await imageSize(id);
    const mounted = await mountImage(id);
    dispose = mounted.dispose;
    const root = mounted.mountPoint;
    const ids = resolveUser(root, c.User ?? undefined);
    const healthcheck = plan.healthcheck ?? undefined;
    const stopSignal = signalNumber(c.StopSignal);
    if (c.StopSignal && stopSignal === undefined) {
      throw new ImageError('DOCKERFILE_INVALID', `${plan.file}: STOPSIGNAL ${c.StopSignal} is not a signal Flick knows: use a name like SIGINT or a number`, { kind: 'user' });
    }
    const guest: GuestConfig = {
      argv, env: c.Env ?? [], cwd: c.WorkingDir || '/', uid: ids.uid, gid: ids.gid, hostname: ref.split(':')[0]!.replace(/[^a-z0-9-]/g, '-').slice(0, 63),
      ...(healthcheck ? { healthcheck } : {}),
      ...(stopSignal !== undefined ? { stopSignal } : {}),
    };
    for (const v of Object.keys(c.Volumes ?? {})) {
      progress(`VOLUME ${v}: what the app writes there is lost when its instance stops; keep it with 'flick run -v NAME:${v} ${ref}'`);
    }
    const port = servicePort(c);
    const format = o.format ?? DEFAULT_FORMAT;
    const rootfs = path.join(scratch, 'rootfs.img');

    const packFull = async (): Promise<void> => {
      const stage = path.join(scratch, 'full');
      await fsp.rm(stage, { recursive: true, force: true });
      await fsp.mkdir(stage);
      await stageFull(root, stage);
      progress(`packing the full root filesystem (${format})`);
      await packRootfs(stage, rootfs, format);
      await fsp.rm(stage, { recursive: true, force: true });
    };

    let minimization: Minimization = 'full';
    let fallbackReason: string | undefined;
    if (o.minimize === false) {
      await packFull();
    } else {
      let traced: BootRun | undefined;
      if (o.tracer) {
        const stage = path.join(scratch, 'trace');
        await fsp.mkdir(stage);
        await stageFull(root, stage);
        const traceImg = path.join(scratch, 'trace.img');
        await packRootfs(stage, traceImg, 'erofs-plain');
        await fsp.rm(stage, { recursive: true, force: true });
        const probe: ReadyProbe = { port };
        progress(`tracing a real run of ${JSON.stringify(argv)} in a microVM until ${port ? `port ${port} listens` : 'it listens on a port'}`);
        const t = await o.tracer.trace(traceImg, guest, probe);
        await fsp.rm(traceImg, { force: true });
        if (t.unready?.kind === 'exited' && !o.allowUnready) {
          throw new ImageError(
            'APP_EXITED',
            `the app ${JSON.stringify(argv)} exited during the traced run of the built image (${t.unready.text}); its output:\n` +
              `${t.unready.output.split('\n').map((l) => `  ${l}`).join('\n')}\n` +
              "fix the app or its CMD (or build anyway with --allow-unready, which keeps the full root filesystem)",
            { kind: 'user' },
          );
        }
        if (t.unready) {
          // The app may need what only `flick run` gives it (env, args): the image must still build.
          fallbackReason = `the traced run of the full image did not become ready: ${t.unready.text}${t.unready.output ? `; console: ${t.unready.output.slice(-600)}` : ''}`;
        } else {
          traced = t;
          progress(`ready${t.readyPort !== undefined ? ` (port ${t.readyPort} listens${t.answeredHttp ? ', answers HTTP' : ''})` : ''}; the app opened ${t.opened.length} files`);
          if (process.env.FLICK_DEBUG) for (const p of t.opened) progress(`  opened ${p}`);
        }
      }
      if (fallbackReason === undefined) {
        const keep = computeKeepSet({ root, argv, env: guest.env, workingDir: guest.cwd, copiedPaths: copiedPaths(plan, '/'), ...(traced ? { tracedPaths: traced.opened } : {}) });
        const stage = path.join(scratch, 'min');
        await fsp.mkdir(stage);
        await stageKept(root, stage, keep);
        const saved = await stripLargeElfs(stage);
        const locales = o.icuLocales ?? [...new Set([...DEFAULT_ICU_LOCALES, ...localesFromEnv(guest.env)])];
        for (const t of await trimIcuInTree(stage, locales)) {
          progress(`${t.file}: built-in ICU data trimmed to locales ${locales.join(',')} (${(t.beforeBytes / 1e6).toFixed(1)} → ${(t.afterBytes / 1e6).toFixed(1)} MB; --icu-locales all keeps it whole)`);
        }
        progress(`keeping ${keep.paths.size} paths${saved > 0 ? `, ${(saved / 2 ** 20).toFixed(1)} MiB of symbols stripped` : ''}; packing (${format})`);
        await packRootfs(stage, rootfs, format);
        await fsp.rm(stage, { recursive: true, force: true });
        minimization = traced ? 'traced' : 'closure';
        if (o.tracer) {
          progress('checking that the minimized image becomes ready');
          const failure = await o.tracer.check(rootfs, guest, { port: port ?? traced?.readyPort }, traced ?? { opened: [], answeredHttp: false });
          if (failure !== undefined) fallbackReason = `the minimized image did not become ready: ${failure.text}${failure.output ? `; console: ${failure.output.slice(-600)}` : ''}`;
        }
      }
      if (fallbackReason !== undefined) {
        progress(`${fallbackReason}\nfalling back to the full root filesystem`);
        minimization = 'full-fallback';
        await packFull();
      }
    }
    await dispose();
    dispose = undefined;

    const initrd = await buildInitrd();
    progress('compressing the layers');
    const rootfsFile = await rootfsLayer(rootfs, format);
    const layers: Descriptor[] = [
      await layout.addFile(await kernelLayerFile(kernel.vmlinux), FLICK_KERNEL_XZ),
      await layout.addFile(await initrdLayerFile(initrd.initrd), FLICK_INITRD_XZ),
      await layout.addFile(rootfsFile.file, rootfsFile.mediaType),
    ];
    const config = await layout.addJson(buildImageConfig(c, ids, layers.map((l) => l.digest), healthcheck ? { [LABEL_HEALTHCHECK]: healthcheckLabel(healthcheck) } : {}), OCI_CONFIG);
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: FLICK_ARTIFACT,
      config,
      layers,
      annotations: {
        [ANNOTATION_CREATED]: new Date().toISOString(),
        [ANNOTATION_SOURCE_IMAGE]: `sha256:${id}`,
        [ANNOTATION_SOURCE_IMAGE_BYTES]: String(sourceImageBytes),
        [ANNOTATION_MINIMIZED]: minimization,
        [ANNOTATION_KERNEL_KEY]: kernel.key,
      },
    };
    const md = await layout.addJson(manifest, OCI_MANIFEST);
    await layout.tag(ref, md);
    const rootfsBytes = layers[2]!.size;
    return {
      ref,
      digest: md.digest,
      sizeBytes: rootfsBytes + config.size + md.size,
      totalBytes: layers.reduce((n, l) => n + l.size, 0) + config.size + md.size,
      sourceImageBytes,
      seconds: (Date.now() - started) / 1000,
      minimization,
      ...(fallbackReason !== undefined ? { fallbackReason } : {}),
    };
  } finally {
    await dispose?.().catch(() => {});
    await removeImage(tmpTag).catch(() => {});
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}
