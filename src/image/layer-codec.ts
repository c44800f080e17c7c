// Compressed layers: a Flick image's kernel, initrd and root filesystem travel
// xz-compressed (media types ending in `+xz`, as OCI's `tar+gzip` layers do), so
// what is pushed and pulled is small; where they run they are unpacked once
// (the registry's image store, a test, a benchmark) into the plain files QEMU
// boots. Plain (uncompressed) layers of older images are still read as they are.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  FLICK_INITRD, FLICK_INITRD_XZ, FLICK_KERNEL, FLICK_KERNEL_XZ, FLICK_ROOTFS_EROFS, FLICK_ROOTFS_EROFS_XZ, FLICK_ROOTFS_SQUASHFS,
} from './media-types.js';
import { ImageError } from './image-error.js';

/** Each compressed media type and the plain one it unpacks to. */
const PLAIN_OF: Record<string, string> = {
  [FLICK_KERNEL_XZ]: FLICK_KERNEL,
  [FLICK_INITRD_XZ]: FLICK_INITRD,
  [FLICK_ROOTFS_EROFS_XZ]: FLICK_ROOTFS_EROFS,
};

/** The media type a layer has once unpacked (itself when it is not compressed). */
export function plainMediaType(mediaType: string): string {
  return PLAIN_OF[mediaType] ?? mediaType;
}

export function isCompressed(mediaType: string): boolean {
  return mediaType in PLAIN_OF;
}

/** Which part of a microVM a layer is, whatever its compression. */
export function partOf(mediaType: string): 'vmlinux' | 'initrd' | 'rootfs' | undefined {
  const plain = plainMediaType(mediaType);
  if (plain === FLICK_KERNEL) return 'vmlinux';
  if (plain === FLICK_INITRD) return 'initrd';
  if (plain === FLICK_ROOTFS_EROFS || plain === FLICK_ROOTFS_SQUASHFS) return 'rootfs';
  return undefined;
}

/** Runs xz with `args` on `src`, writing its stdout to `dst` (replaced atomically). */
async function xz(args: string[], src: string, dst: string): Promise<void> {
  const tmp = `${dst}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.partial`;
  try {
    const out = fs.createWriteStream(tmp);
    const written = new Promise<void>((resolve, reject) => {
      out.on('close', resolve);
      out.on('error', reject);
    });
    const exited = new Promise<void>((resolve, reject) => {
      const child = spawn('xz', [...args, '-c', src], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.pipe(out);
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new ImageError('TOOL_FAILED', `xz ${args.join(' ')} ${src} exited with ${code}: ${stderr.trim()}`))));
    });
    await Promise.all([exited, written]);
    await fsp.rename(tmp, dst);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/**
 * Compresses `src` to `dst`. `x86` adds xz's x86 branch filter (smaller machine
 * code); `level` is an xz preset. Two threads at most and fixed, so the bytes
 * (and the layer's digest) do not depend on the machine's core count.
 */
export function compressFile(src: string, dst: string, o: { level: '6' | '9e'; x86?: boolean }): Promise<void> {
  const filters = o.x86 ? ['--x86', `--lzma2=preset=${o.level}`] : [`-${o.level}`];
  return xz(['-T2', ...filters], src, dst);
}

/** Writes the plain file a layer blob holds to `dst`: unpacked if compressed, else a copy (a hard link where it can). */
export async function unpackLayer(blob: string, mediaType: string, dst: string): Promise<void> {
  if (isCompressed(mediaType)) {
    await xz(['-d'], blob, dst);
    await fsp.chmod(dst, 0o444);
    return;
  }
  try {
    await fsp.link(blob, dst);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw err;
    await fsp.copyFile(blob, dst);
    await fsp.chmod(dst, 0o444);
  }
}

/** A compressed copy of a cached build artifact (kernel, initrd), made once beside it: `<file><suffix>`. */
export async function cachedCompressed(file: string, suffix: string, make: (dst: string) => Promise<void>): Promise<string> {
  const out = `${file}${suffix}`;
  if (fs.existsSync(out)) return out;
  await fsp.mkdir(path.dirname(out), { recursive: true });
  await make(out);
  return out;
}

/** The kernel as shipped: symbols stripped (QEMU boots it by its program headers and PVH note), xz -9e; made once per kernel. */
export function kernelLayerFile(vmlinux: string): Promise<string> {
  return cachedCompressed(vmlinux, '.stripped.xz', async (dst) => {
    const stripped = `${dst}.${process.pid}.elf`;
    try {
      await new Promise<void>((resolve, reject) => {
        const child = spawn('strip', ['-o', stripped, vmlinux], { stdio: 'ignore' });
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve() : reject(new ImageError('TOOL_FAILED', `strip ${vmlinux} exited with ${code}`))));
      });
      await compressFile(stripped, dst, { level: '9e', x86: true });
    } finally {
      await fsp.rm(stripped, { force: true });
    }
  });
}

/** The initrd as shipped: xz -9e; made once per initrd. */
export function initrdLayerFile(initrd: string): Promise<string> {
  return cachedCompressed(initrd, '.xz', (dst) => compressFile(initrd, dst, { level: '9e' }));
}
