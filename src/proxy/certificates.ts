// TLS certificates of the ingress proxy: a PEM certificate (chain) and key,
// checked when they are given (flickd's default certificate at start, an
// instance's at `flick run`), so a mistake is a clear error then rather than a
// handshake failure later; and the SNI choice between them (RFC 6066 §3: the
// client names the host in its ClientHello, before any HTTP byte).
import crypto from 'node:crypto';
import tls from 'node:tls';
import { ProxyError } from './errors.js';

export interface CertificatePair {
  /** PEM: the leaf certificate first, then its intermediates. */
  cert: string;
  /** PEM private key matching the leaf. */
  key: string;
}

/**
 * Parses and checks a certificate and its key: PEM, the key matches the leaf,
 * valid now, and (if given) covering `host`. `what` names the pair in errors,
 * e.g. `--proxy-tls-cert` or `tls_cert`.
 */
export function checkCertificate(pair: CertificatePair, what: string, host?: string, now = new Date()): void {
  let leaf: crypto.X509Certificate;
  try {
    leaf = new crypto.X509Certificate(pair.cert);
  } catch (err) {
    throw invalid(`${what} is not a PEM certificate (${(err as Error).message}): give the file holding "-----BEGIN CERTIFICATE-----"`, err);
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(pair.key);
  } catch (err) {
    throw invalid(`the key of ${what} is not a PEM private key (${(err as Error).message}): give the unencrypted key file holding "-----BEGIN PRIVATE KEY-----"`, err);
  }
  if (!leaf.checkPrivateKey(key)) throw invalid(`the key of ${what} does not belong to its certificate (${leaf.subject.replace(/\n/g, ', ')}): give the key the certificate was issued for`);
  if (new Date(leaf.validTo).getTime() < now.getTime()) throw invalid(`${what} expired on ${new Date(leaf.validTo).toISOString()}: renew it and give the new one`);
  if (new Date(leaf.validFrom).getTime() > now.getTime()) throw invalid(`${what} is not valid before ${new Date(leaf.validFrom).toISOString()}: check the host's clock or the certificate`);
  if (host !== undefined && leaf.checkHost(host) === undefined) {
    throw invalid(`${what} does not cover host "${host}" (it names ${dnsNames(leaf).join(', ') || leaf.subject.replace(/\n/g, ', ')}): issue it for ${host}, or pick the host name with --domain`);
  }
  try {
    tls.createSecureContext({ cert: pair.cert, key: pair.key });
  } catch (err) {
    throw invalid(`${what} cannot be used for TLS (${(err as Error).message})`, err);
  }
}

/** What a stored certificate says about itself (for views; `names`: its subjectAltName DNS entries); nulls if it does not parse. */
export function summarizeCertificate(cert: string): { subject: string; names: string[]; not_after: string } | { subject: null; names: []; not_after: null } {
  try {
    const leaf = new crypto.X509Certificate(cert);
    return { subject: leaf.subject.replace(/\n/g, ', '), names: dnsNames(leaf), not_after: new Date(leaf.validTo).toISOString() };
  } catch {
    return { subject: null, names: [], not_after: null };
  }
}

function dnsNames(cert: crypto.X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
}

function invalid(message: string, cause?: unknown): ProxyError {
  return new ProxyError('invalid_certificate', message, { kind: 'user', ...(cause !== undefined ? { cause } : {}) });
}

/** Secure contexts made once per certificate pair (routes are replaced, not mutated, so the pair object is the key). */
export class SecureContexts {
  readonly #cache = new WeakMap<CertificatePair, tls.SecureContext>();

  get(pair: CertificatePair): tls.SecureContext {
    let ctx = this.#cache.get(pair);
    if (ctx === undefined) {
      ctx = tls.createSecureContext({ cert: pair.cert, key: pair.key });
      this.#cache.set(pair, ctx);
    }
    return ctx;
  }
}
