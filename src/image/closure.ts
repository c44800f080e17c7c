// Decides which files of a built root filesystem the app needs: the closure of
// its command (ELF interpreter and libraries, script interpreters, programs a
// shell-form command names), its working directory and the files the
// Dockerfile copied, a few /etc files, and whatever a traced run opened.
// All paths are inside the image: symlinks are followed within `root`, never
// out to the host.
import fs from 'node:fs';
import path from 'node:path';
import { isElf, readElf } from './elf.js';

const DEFAULT_LIB_DIRS = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib', '/usr/local/lib'];
/** Files glibc and common runtimes read by name, not through DT_NEEDED. */
const ETC_FILES = [
  '/etc/passwd', '/etc/group', '/etc/nsswitch.conf', '/etc/hosts', '/etc/resolv.conf', '/etc/host.conf', '/etc/gai.conf',
  '/etc/services', '/etc/protocols', '/etc/localtime', '/etc/ssl/certs/ca-certificates.crt', '/etc/ssl/openssl.cnf',
  '/etc/ld.so.cache', '/etc/os-release',
];
/** dlopen'ed by glibc's name service switch for users, hosts and DNS. */
const NSS_LIBS = ['libnss_files.so.2', 'libnss_dns.so.2', 'libresolv.so.2'];

export interface ClosureInput {
  /** The mounted root filesystem of the built image. */
  root: string;
  /** Entrypoint + Cmd, as the guest will execve it. */
  argv: string[];
  env: string[];
  workingDir: string;
  /** Absolute image paths the Dockerfile's final stage copied to. */
  copiedPaths: string[];
  /** Paths a traced run opened. */
  tracedPaths?: string[];
}

/** The set of image paths (files, symlinks, directories, each with its parents) to keep. */
export class KeepSet {
  readonly paths = new Set<string>();
  constructor(private readonly root: string) {}

  private host(p: string): string {
    return path.join(this.root, p);
  }

  /** Follows `p` inside the root, adding each symlink on the way; returns the final image path or undefined. */
  resolve(p: string, depth = 0): string | undefined {
    if (depth > 40) return undefined;
    const parts = path.posix.normalize(p).split('/').filter(Boolean);
    let cur = '/';
    for (let i = 0; i < parts.length; i++) {
      const next = path.posix.join(cur, parts[i]!);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(this.host(next));
      } catch {
        return undefined;
      }
      if (st.isSymbolicLink()) {
        this.addOne(next);
        const target = fs.readlinkSync(this.host(next));
        const joined = path.posix.join(target.startsWith('/') ? '/' : cur, target, ...parts.slice(i + 1));
        return this.resolve(joined, depth + 1);
      }
      cur = next;
    }
    return cur;
  }

  private addOne(p: string): void {
    for (let d = path.posix.dirname(p); d !== '/' && !this.paths.has(d); d = path.posix.dirname(d)) this.paths.add(d);
    this.paths.add(p);
  }

  /** Adds a path (and, for a directory, everything under it). Returns the resolved path if it exists. */
  add(p: string, opts: { recursive?: boolean } = {}): string | undefined {
    const real = this.resolve(p);
    if (real === undefined) return undefined;
    this.addOne(real);
    if (opts.recursive && fs.statSync(this.host(real)).isDirectory()) this.addTree(real);
    return real;
  }

  private addTree(dir: string): void {
    for (const e of fs.readdirSync(this.host(dir), { withFileTypes: true })) {
      const p = path.posix.join(dir, e.name);
      this.paths.add(p);
      if (e.isDirectory()) this.addTree(p);
    }
  }

  isFile(p: string): boolean {
    try {
      return fs.statSync(this.host(p)).isFile();
    } catch {
      return false;
    }
  }

  head(p: string, n: number): Buffer {
    const fd = fs.openSync(this.host(p), 'r');
    try {
      const b = Buffer.alloc(n);
      const got = fs.readSync(fd, b, 0, n, 0);
      return b.subarray(0, got);
    } finally {
      fs.closeSync(fd);
    }
  }
}

function envValue(env: string[], key: string): string | undefined {
  const e = env.find((x) => x.startsWith(`${key}=`));
  return e?.slice(key.length + 1);
}

/** ld.so.conf directories inside the image (one level of `include`). */
function ldConfDirs(root: string): string[] {
  const dirs: string[] = [];
  const read = (f: string) => {
    let text: string;
    try {
      text = fs.readFileSync(path.join(root, f), 'utf8');
    } catch {
      return;
    }
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) continue;
      const inc = /^include\s+(.+)$/.exec(line);
      if (inc) {
        const pattern = inc[1]!;
        const dir = path.posix.dirname(pattern);
        try {
          for (const f2 of fs.readdirSync(path.join(root, dir)).sort()) if (f2.endsWith('.conf')) read(path.posix.join(dir, f2));
        } catch {
          // no such directory in the image
        }
      } else if (line.startsWith('/')) dirs.push(line);
    }
  };
  read('/etc/ld.so.conf');
  return dirs;
}

/** Computes what to keep. */
export function computeKeepSet(input: ClosureInput): KeepSet {
  const keep = new KeepSet(input.root);
  const libDirs = [...ldConfDirs(input.root), ...DEFAULT_LIB_DIRS];
  const pathDirs = (envValue(input.env, 'PATH') ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':');
  const seen = new Set<string>();

  const findProgram = (name: string): string | undefined => {
    if (name.includes('/')) return keep.resolve(path.posix.resolve(input.workingDir || '/', name));
    for (const d of pathDirs) {
      const r = keep.resolve(path.posix.join(d, name));
      if (r && keep.isFile(r)) return path.posix.join(d, name);
    }
    return undefined;
  };

  const findLib = (name: string, searchPath: string[], origin: string): string | undefined => {
    if (name.includes('/')) return name;
    const dirs = [...searchPath.map((d) => d.replace(/\$\{?ORIGIN\}?/g, origin)), ...libDirs];
    return dirs.map((d) => path.posix.join(d, name)).find((p) => keep.resolve(p) !== undefined);
  };

  /** Adds a program or library and everything it needs to start. */
  const addExecutable = (p: string): void => {
    const real = keep.add(p);
    if (real === undefined || seen.has(real) || !keep.isFile(real)) return;
    seen.add(real);
    const head = keep.head(real, 256);
    if (isElf(head)) {
      const info = readElf(path.join(input.root, real));
      if (!info) return;
      if (info.interpreter) addExecutable(info.interpreter);
      for (const lib of info.needed) {
        const found = findLib(lib, info.searchPath, path.posix.dirname(real));
        if (found) addExecutable(found);
      }
    } else if (head.subarray(0, 2).toString() === '#!') {
      const words = head.toString().split('\n')[0]!.slice(2).trim().split(/\s+/);
      const interp = words[0];
      if (interp) addExecutable(interp);
      // `#!/usr/bin/env node`: the real interpreter is the next word, found in PATH.
      if (interp && path.posix.basename(interp) === 'env' && words[1]) {
        const prog = findProgram(words[1]);
        if (prog) addExecutable(prog);
      }
    }
  };

  const [prog, ...args] = input.argv;
  if (prog) {
    const p = findProgram(prog);
    if (p) addExecutable(p);
  }
  // Arguments that name files in the image (a script, a config) or programs (a shell-form command's words).
  for (const arg of args) {
    for (const word of arg.split(/[\s;&|()<>`'"]+/).filter(Boolean)) {
      if (word.startsWith('-') || word.includes('=')) continue;
      const asPath = word.startsWith('/') || word.includes('/') ? path.posix.resolve(input.workingDir || '/', word) : undefined;
      if (asPath && keep.resolve(asPath) !== undefined) {
        keep.add(asPath, { recursive: true });
        if (keep.isFile(asPath)) addExecutable(asPath);
        continue;
      }
      const inCwd = input.workingDir ? path.posix.join(input.workingDir, word) : undefined;
      if (inCwd && keep.resolve(inCwd) !== undefined) keep.add(inCwd, { recursive: true });
      const asProg = findProgram(word);
      if (asProg) addExecutable(asProg);
    }
  }
  // The app's own directory, unless it is the whole filesystem.
  if (input.workingDir && input.workingDir !== '/') keep.add(input.workingDir, { recursive: true });
  for (const c of input.copiedPaths) if (c !== '/') keep.add(c, { recursive: true });
  for (const f of ETC_FILES) keep.add(f);
  for (const lib of NSS_LIBS) {
    const found = findLib(lib, [], '/');
    if (found) addExecutable(found);
  }
  for (const t of input.tracedPaths ?? []) {
    if (t.startsWith('/proc/') || t.startsWith('/sys/') || t.startsWith('/dev/')) continue;
    if (keep.isFile(t)) addExecutable(t);
    else keep.add(t);
    // Python only trusts a cached .pyc beside its source (it stats the .py, which
    // a trace of opens cannot see): keep `dir/name.py` for `dir/__pycache__/name.*.pyc`.
    const pyc = /^(.*)\/__pycache__\/([^/.]+)\.[^/]*\.pyc$/.exec(t);
    if (pyc) keep.add(`${pyc[1]}/${pyc[2]}.py`);
  }
  return keep;
}
