// Build time and size of the node hello app (examples/hello-node) as a microVM
// image against its container image, through the full pipeline (buildah,
// traced run, minimization, boot check, packing). Writes bench/results/image.json:
//   {"results": {"image_bytes", "source_image_bytes", "build_s"}, "ratio", "minimization", "total_bytes"}
// Goal (issue 3): image_bytes ≤ 9 % of source_image_bytes.
//
//   node dist/bench/image.js
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';
import { buildBaseImages } from '../src/image/base.js';
import { buildImage } from '../src/image/build.js';
import { OciLayout } from '../src/image/oci-layout.js';
import { qemuTraceRunner } from '../src/image/trace-runner.js';
import { printTable, writeResults } from './lib.js';

async function main(): Promise<void> {
  await buildBaseImages({ node: true, progress: (l) => console.error(l) });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-bench-image-'));
  try {
    const r = await buildImage({
      context: path.join(PACKAGE_ROOT, 'examples', 'hello-node'),
      tag: 'hello-node:bench',
      layout: new OciLayout(path.join(tmp, 'images')),
      tracer: qemuTraceRunner,
      progress: (l) => console.error(l),
    });
    const ratio = r.sizeBytes / r.sourceImageBytes;
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    printTable([
      ['image', 'MiB', '% of container'],
      ['container image (buildah)', mib(r.sourceImageBytes), '100.0'],
      ['microVM image (rootfs + config)', mib(r.sizeBytes), (100 * ratio).toFixed(1)],
      ['  with shared kernel + init', mib(r.totalBytes), ((100 * r.totalBytes) / r.sourceImageBytes).toFixed(1)],
    ]);
    console.log(`build ${r.seconds.toFixed(1)} s, ${r.minimization}; goal ≤ 9 %: ${ratio <= 0.09 ? 'met' : 'not met'}`);
    const file = await writeResults('image', {
      results: { image_bytes: r.sizeBytes, source_image_bytes: r.sourceImageBytes, build_s: Number(r.seconds.toFixed(1)) },
      ratio: Number(ratio.toFixed(4)),
      total_bytes: r.totalBytes,
      minimization: r.minimization,
    });
    console.log(`wrote ${file}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
