// The console's built front end (web/, built by Vite into web/dist at set-up):
// read once at flickd start, gzipped once, served with caching headers (hashed
// files under assets/ are immutable, index.html is revalidated every time) and
// with the console's Content-Security-Policy on every answer.
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { PACKAGE_ROOT } from '../paths.js';

export const DEFAULT_ASSETS_DIR = path.join(PACKAGE_ROOT, 'web', 'dist');

/** Only our own scripts, styles and API; no inline code, no frames, no foreign origin (CSP Level 3). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers every console answer carries (pages, assets, API). */
export function securityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

interface Asset {
  body: Buffer;
  gzip: Buffer | undefined;
  type: string;
  immutable: boolean;
}

export class ConsoleAssets {
  readonly #files = new Map<string, Asset>();
  readonly dir: string;

  constructor(dir = DEFAULT_ASSETS_DIR) {
    this.dir = dir;
    const walk = (sub: string) => {
      for (const e of fs.existsSync(path.join(dir, sub)) ? fs.readdirSync(path.join(dir, sub), { withFileTypes: true }) : []) {
        const rel = path.posix.join(sub, e.name);
        if (e.isDirectory()) walk(rel);
        else if (TYPES[path.extname(e.name)]) {
          const body = fs.readFileSync(path.join(dir, rel));
          const type = TYPES[path.extname(e.name)]!;
          this.#files.set(rel, { body, type, gzip: /text|svg/.test(type) ? zlib.gzipSync(body, { level: 9 }) : undefined, immutable: rel.startsWith('assets/') });
        }
      }
    };
    walk('');
  }

  /** False when the front end was not built (flickd then says how to build it). */
  get built(): boolean {
    return this.#files.has('index.html');
  }

  /** Serves `rel` ('' is index.html); false if there is no such file. */
  serve(rel: string, req: IncomingMessage, res: ServerResponse): boolean {
    const a = this.#files.get(rel === '' ? 'index.html' : rel);
    if (a === undefined) return false;
    const gz = a.gzip !== undefined && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gz ? a.gzip! : a.body;
    res.writeHead(200, {
      'Content-Type': a.type,
      'Content-Length': body.length,
      // Hashed names change with their content, so they can be kept for ever; index.html names them and is always revalidated.
      'Cache-Control': a.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      Vary: 'Accept-Encoding',
      ...(gz ? { 'Content-Encoding': 'gzip' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }
}
