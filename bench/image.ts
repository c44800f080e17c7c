// Size and build time of microVM images against their container images, through
// the full pipeline (buildah, traced run, minimization, boot check, compressed
// layers): the node hello app (examples/hello-node, the product page's
// Dockerfile) and, as its non-HTTP peer, Redis from Debian (test/fixtures/apps/redis).
// Every size is the whole image as pushed: every layer (kernel and initrd
// included, compressed as shipped), config and manifest. Writes
// bench/results/image.json:
//   {"results": {"image_total_bytes", "image_bytes", "source_image_bytes", "kernel_bytes", "initrd_bytes",
//                "rootfs_bytes", "build_s", "redis_total_bytes", "redis_source_image_bytes", "redis_build_s"},
//    "ratio", "redis_ratio", "minimization", "redis_minimization"}
// Goals (issue 17): node ≤ 25 MB (10^6 bytes) and ≤ 9 % of its container image; Redis ≤ 5 %.
//
//   node dist/bench/image.js
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';
import { buildBaseImages } from '../src/image/base.js';
import { buildImage } from '../src/image/build.js';
import { imageInfo } from '../src/image/image-info.js';
import { OciLayout } from '../src/image/oci-layout.js';
import { qemuTraceRunner } from '../src/image/trace-runner.js';
import { printTable, writeResults } from './lib.js';

const GOAL_BYTES = 25e6;
const GOAL_RATIO = 0.09;
const REDIS_GOAL_RATIO = 0.05;

async function main(): Promise<void> {
  await buildBaseImages({ node: true, progress: (l) => console.error(l) });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-image-'));
  try {
    const layout = new OciLayout(path.join(tmp, 'images'));
    const build = (context: string, tag: string) => buildImage({ context, tag, layout, tracer: qemuTraceRunner, progress: (l) => console.error(l) });
    const node = await build(path.join(PACKAGE_ROOT, 'examples', 'hello-node'), 'hello-node:bench');
    const info = await imageInfo(layout, await layout.resolve('hello-node:bench'));
    const redis = await build(path.join(PACKAGE_ROOT, 'test', 'fixtures', 'apps', 'redis'), 'redis:bench');
    const ratio = node.totalBytes / node.sourceImageBytes;
    const redisRatio = redis.totalBytes / redis.sourceImageBytes;
    const mb = (n: number) => (n / 1e6).toFixed(2);
    const pct = (n: number, of: number) => ((100 * n) / of).toFixed(1);
    printTable([
      ['image (MB = 10^6 bytes)', 'MB', '% of container'],
      ['node: container image (buildah)', mb(node.sourceImageBytes), '100.0'],
      ['node: microVM image, every layer as pushed', mb(node.totalBytes), pct(node.totalBytes, node.sourceImageBytes)],
      ['  kernel (stripped, xz)', mb(info.kernel_bytes), pct(info.kernel_bytes, node.sourceImageBytes)],
      ['  initrd (xz)', mb(info.initrd_bytes), pct(info.initrd_bytes, node.sourceImageBytes)],
      ['  root filesystem', mb(info.rootfs?.size_bytes ?? 0), pct(info.rootfs?.size_bytes ?? 0, node.sourceImageBytes)],
      ['redis: container image (buildah)', mb(redis.sourceImageBytes), '100.0'],
      ['redis: microVM image, every layer as pushed', mb(redis.totalBytes), pct(redis.totalBytes, redis.sourceImageBytes)],
    ]);
    const met = (ok: boolean) => (ok ? 'met' : 'not met');
    console.log(
      `node: build ${node.seconds.toFixed(1)} s, ${node.minimization}; goal ≤ 25 MB: ${met(node.totalBytes <= GOAL_BYTES)}, ≤ 9 %: ${met(ratio <= GOAL_RATIO)}\n` +
        `redis: build ${redis.seconds.toFixed(1)} s, ${redis.minimization}; goal ≤ 5 %: ${met(redisRatio <= REDIS_GOAL_RATIO)}`,
    );
    const file = await writeResults('image', {
      results: {
        image_total_bytes: node.totalBytes,
        image_bytes: node.sizeBytes,
        source_image_bytes: node.sourceImageBytes,
        kernel_bytes: info.kernel_bytes,
        initrd_bytes: info.initrd_bytes,
        rootfs_bytes: info.rootfs?.size_bytes ?? 0,
        build_s: Number(node.seconds.toFixed(1)),
        redis_total_bytes: redis.totalBytes,
        redis_source_image_bytes: redis.sourceImageBytes,
        redis_build_s: Number(redis.seconds.toFixed(1)),
      },
      ratio: Number(ratio.toFixed(4)),
      redis_ratio: Number(redisRatio.toFixed(4)),
      total_bytes: node.totalBytes,
      minimization: node.minimization,
      redis_minimization: redis.minimization,
    });
    console.log(`wrote ${file}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
