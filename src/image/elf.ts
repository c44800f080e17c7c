// Reads what the dynamic loader would need from an ELF file: its interpreter
// (PT_INTERP) and shared libraries (DT_NEEDED, found via DT_RUNPATH/DT_RPATH,
// ld.so.conf and the default directories). Parsing the headers ourselves,
// rather than running `ldd` in a chroot, never executes the image's code on the
// host and works for static binaries and images without a libc.
// Format: https://refspecs.linuxfoundation.org/elf/gabi4+/ch5.dynamic.html
import fs from 'node:fs';

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

export interface ElfInfo {
  interpreter: string | undefined;
  needed: string[];
  /** DT_RUNPATH, else DT_RPATH, split on ':' ($ORIGIN not yet expanded). */
  searchPath: string[];
}

/** True if the buffer starts with the ELF magic. */
export function isElf(head: Buffer): boolean {
  return head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}

function cstr(buf: Buffer, off: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString('utf8', off, end < 0 ? buf.length : end);
}

/** Parses a 64-bit little-endian ELF file; undefined for anything else (then it is just data). */
export function readElf(file: string): ElfInfo | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  // Only ELFCLASS64 + ELFDATA2LSB: the guest is x86_64.
  if (!isElf(buf) || buf[4] !== 2 || buf[5] !== 1 || buf.length < 64) return undefined;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let interpreter: string | undefined;
  let dynamic: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (p + 56 > buf.length) return undefined;
    const type = buf.readUInt32LE(p);
    const offset = Number(buf.readBigUInt64LE(p + 8));
    const vaddr = Number(buf.readBigUInt64LE(p + 16));
    const filesz = Number(buf.readBigUInt64LE(p + 32));
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_INTERP) interpreter = cstr(buf, offset);
    else if (type === PT_DYNAMIC) dynamic = { offset, size: filesz };
  }
  const info: ElfInfo = { interpreter, needed: [], searchPath: [] };
  if (!dynamic) return info;
  const entries: [number, number][] = [];
  for (let p = dynamic.offset; p + 16 <= Math.min(buf.length, dynamic.offset + dynamic.size); p += 16) {
    const tag = Number(buf.readBigInt64LE(p));
    if (tag === 0) break;
    entries.push([tag, Number(buf.readBigUInt64LE(p + 8))]);
  }
  const strtabVaddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const seg = strtabVaddr === undefined ? undefined : loads.find((l) => strtabVaddr >= l.vaddr && strtabVaddr < l.vaddr + l.filesz);
  if (strtabVaddr === undefined || !seg) return info;
  const strtab = seg.offset + (strtabVaddr - seg.vaddr);
  let runpath: string | undefined;
  let rpath: string | undefined;
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(cstr(buf, strtab + val));
    else if (tag === DT_RUNPATH) runpath = cstr(buf, strtab + val);
    else if (tag === DT_RPATH) rpath = cstr(buf, strtab + val);
  }
  info.searchPath = (runpath ?? rpath ?? '').split(':').filter(Boolean);
  return info;
}
