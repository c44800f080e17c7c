// Test helpers for TLS: a throw-away certificate authority made with openssl,
// and leaf certificates it signs (valid, or already expired). Not used by the product.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface TestCertificate {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestCa {
  dir: string;
  /** The CA certificate clients trust (`curl --cacert`, node's `ca`). */
  caFile: string;
  ca: string;
  /**
   * A leaf for `names` (subjectAltName DNS entries, and IP entries for `ips`); `expired`: its validity
   * ended a day ago; `usage`: what it may authenticate (default a server; etcd's own gateway also dials as a client).
   */
  issue(names: string[], opts?: { expired?: boolean; ips?: string[]; usage?: 'server' | 'client' | 'both' }): Promise<TestCertificate>;
  remove(): Promise<void>;
}

export async function makeTestCa(): Promise<TestCa> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'flick-test-ca-'));
  const caFile = path.join(dir, 'ca.pem');
  const caKey = path.join(dir, 'ca.key');
  await run('openssl', ['req', '-x509', ...EC, '-days', '2', '-subj', '/CN=Flick Test CA', '-keyout', caKey, '-out', caFile,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  let serial = 0;
  return {
    dir,
    caFile,
    ca: await fs.readFile(caFile, 'utf8'),
    async issue(names, opts = {}) {
      serial += 1;
      const base = path.join(dir, `leaf-${serial}`);
      await run('openssl', ['req', ...EC, '-subj', `/CN=${names[0]}`, '-keyout', `${base}.key`, '-out', `${base}.csr`]);
      const san = [...names.map((n) => `DNS:${n}`), ...(opts.ips ?? []).map((ip) => `IP:${ip}`)].join(',');
      const eku = { server: 'serverAuth', client: 'clientAuth', both: 'serverAuth,clientAuth' }[opts.usage ?? 'server'];
      await fs.writeFile(`${base}.ext`, `subjectAltName=${san}\nextendedKeyUsage=${eku}\n`);
      // `-days -1` (OpenSSL 3.0) ends the validity a day before it starts: an expired certificate.
      await run('openssl', ['x509', '-req', '-in', `${base}.csr`, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(1000 + serial),
        '-days', opts.expired ? '-1' : '1', '-extfile', `${base}.ext`, '-out', `${base}.pem`]);
      return { certFile: `${base}.pem`, keyFile: `${base}.key`, cert: await fs.readFile(`${base}.pem`, 'utf8'), key: await fs.readFile(`${base}.key`, 'utf8') };
    },
    remove: () => fs.rm(dir, { recursive: true, force: true }),
  };
}
