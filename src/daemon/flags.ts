// flickd's flag values: defaults, and the parsers that turn a flag's text into
// what serve() runs with (each throws a message that says what to write instead).
import fs from 'node:fs';
import os from 'node:os';
import { describeError } from '../errors.js';
import type { KeepResident } from '../controller/hot-standby.js';
import { checkCertificate } from '../proxy/certificates.js';

export const DEFAULT_DATA_DIR = '/var/lib/flick';
/** The host flickd listens on when none is given: loopback only (see the threat model in the README). */
export const DEFAULT_LISTEN_HOST = '127.0.0.1';
export const DEFAULT_LISTEN = `${DEFAULT_LISTEN_HOST}:7450`;
/** The ingress proxy's default address: next to the API's port; instances are `http://<name>.localhost:7451`. */
export const DEFAULT_PROXY_LISTEN = '127.0.0.1:7451';

/** The HTTPS listener's default address when a certificate is given: `https://<name>.localhost:7452`. */
export const DEFAULT_PROXY_TLS_LISTEN = '127.0.0.1:7452';

/** The proxy's HTTPS listener and its default certificate (PEM). */
export interface ProxyTlsConfig {
  listen: { host: string; port: number };
  cert?: string;
  key?: string;
}

/** The cluster a host joins (src/cluster). */
export interface ClusterJoinConfig {
  endpoints: string[];
  hostName: string;
  advertise: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** Where other hosts' proxies send hops (--cluster-hop-listen); undefined: the proxy's host, a free port (advertised in etcd). */
  hopListen?: { host: string; port: number };
}

/** "2G", "512M", "1.5G", "4096K", "0" or plain bytes → bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text.trim());
  if (!m) throw new Error(`size "${text}" is not a size: write e.g. 2G, 512M or 0`);
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * unit);
}

/** `--hot-keep-resident`: "25%" (of each instance's guest RAM) or a size. */
export function parseKeepResident(text: string): KeepResident {
  const m = /^(\d+(?:\.\d+)?)\s*%$/.exec(text.trim());
  if (m) {
    const share = Number(m[1]) / 100;
    if (share > 1) throw new Error(`--hot-keep-resident "${text}" is more than all of the guest's RAM: write at most 100%`);
    return { share };
  }
  return { bytes: parseSize(text) };
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = listen.match(/^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`--listen "${listen}" is not HOST:PORT (e.g. ${DEFAULT_LISTEN})`);
  return { host: m[1] ?? (m[2] || DEFAULT_LISTEN_HOST), port };
}

/** `--proxy-tls-*`: the HTTPS listener and its default certificate (read and checked now), or undefined for none. */
export function readProxyTls(certFile: string | undefined, keyFile: string | undefined, listen: string | undefined): ProxyTlsConfig | undefined {
  if ((certFile === undefined) !== (keyFile === undefined)) throw new Error('--proxy-tls-cert and --proxy-tls-key go together: give the certificate file and its key file');
  if (certFile === undefined && listen === undefined) return undefined;
  const read = (file: string, flag: string) => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`${flag} ${file}: ${describeError(err)}: give a readable PEM file`);
    }
  };
  const at = parseListen(listen ?? DEFAULT_PROXY_TLS_LISTEN);
  if (certFile === undefined || keyFile === undefined) return { listen: at };
  const pair = { cert: read(certFile, '--proxy-tls-cert'), key: read(keyFile, '--proxy-tls-key') };
  checkCertificate(pair, `--proxy-tls-cert ${certFile}`);
  return { listen: at, ...pair };
}

/** --cluster-etcd and its companions → the cluster to join; undefined without --cluster-etcd. */
export function clusterFlags(v: Record<string, string | boolean | undefined>): ClusterJoinConfig | undefined {
  const etcd = v['cluster-etcd'];
  const rest = ['host-name', 'advertise', 'cluster-etcd-ca', 'cluster-etcd-cert', 'cluster-etcd-key', 'cluster-hop-listen'].filter((f) => v[f] !== undefined);
  if (typeof etcd !== 'string') {
    if (rest.length > 0) throw new Error(`--${rest[0]} needs --cluster-etcd URL[,URL…] (the cluster's etcd)`);
    return undefined;
  }
  const endpoints = etcd.split(',').map((e) => e.trim()).filter(Boolean);
  const listenHost = parseListen(String(v.listen ?? DEFAULT_LISTEN)).host;
  const advertise = typeof v.advertise === 'string' ? v.advertise : listenHost === '0.0.0.0' || listenHost === '::' ? undefined : listenHost;
  if (advertise === undefined) throw new Error(`--advertise ADDR is needed with --listen ${String(v.listen)}: the address peers reach this host at`);
  if ((v['cluster-etcd-cert'] === undefined) !== (v['cluster-etcd-key'] === undefined)) throw new Error('--cluster-etcd-cert and --cluster-etcd-key go together: pass both');
  const hostName = typeof v['host-name'] === 'string' ? v['host-name'] : os.hostname().toLowerCase().split('.')[0]!;
  const tls = {
    ...(typeof v['cluster-etcd-ca'] === 'string' ? { caFile: v['cluster-etcd-ca'] } : {}),
    ...(typeof v['cluster-etcd-cert'] === 'string' ? { certFile: v['cluster-etcd-cert'] } : {}),
    ...(typeof v['cluster-etcd-key'] === 'string' ? { keyFile: v['cluster-etcd-key'] } : {}),
  };
  const hop = v['cluster-hop-listen'];
  let hopListen: { host: string; port: number } | undefined;
  if (typeof hop === 'string') {
    try {
      hopListen = parseListen(hop);
    } catch {
      throw new Error(`--cluster-hop-listen "${hop}" is not HOST:PORT (e.g. 10.0.0.5:7453): where other hosts' proxies reach this one`);
    }
  }
  return { endpoints, hostName, advertise, ...(Object.keys(tls).length > 0 ? { tls } : {}), ...(hopListen ? { hopListen } : {}) };
}
