// A flickd joining a cluster (flickd --cluster-etcd …): connects to etcd, takes
// the cluster's one token (the first host to join sets it; every host's
// <data-dir>/token then holds it), claims the host's own VM network range,
// grants the host's lease and registers the host with its addresses, capacity
// and load. Several hosts may share one machine, so each gets a namespace
// prefix and an address pool no other host of the cluster has (taps live inside
// the namespaces; cgroups, jail folders and uid claims are keyed by the run
// folder, which is under the host's own data dir).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { storeToken } from '../daemon/auth.js';
import { EtcdClient, EtcdError, type EtcdTls } from './etcd-client.js';
import { HostLease } from './host-lease.js';
import { checkHostName, DEFAULT_CLUSTER_PREFIX, HostDirectory, Registration, type HostInventory } from './membership.js';

/** A lapsed host is noticed within this many seconds (its lease's TTL). */
export const DEFAULT_LEASE_TTL_SECONDS = 3;
/** Host network ranges: 10.(64+k).0.0/16 for claim k; at most this many hosts share a machine's address space. */
export const NETWORK_CLAIMS = 64;
/** `<data-dir>/cluster-state.json`: what this host got when it last joined (its network range), for a start while etcd is down. */
export const STATE_FILE = 'cluster-state.json';
/** `<data-dir>/cluster-lease`: the host's lease id, for the next flickd to adopt. */
export const LEASE_FILE = 'cluster-lease';

export interface ClusterConfig {
  endpoints: string[];
  hostName: string;
  /** The address peers and clients reach this host at (IP or DNS name, no port). */
  advertise: string;
  tls?: EtcdTls;
  prefix?: string;
  leaseTtlSeconds?: number;
  dataDir: string;
  log: (line: string) => void;
}

/** The ports this host serves on, as bound (its URLs in etcd carry them). */
export interface JoinAddresses {
  apiPort: number;
  proxyPort: number | undefined;
  /** The proxy's hop listener (src/proxy/hop.ts), where other hosts' proxies send requests. */
  hopPort: number | undefined;
}

export interface ClusterConnection {
  etcd: EtcdClient;
  hostName: string;
  /** The cluster's key prefix in etcd. */
  prefix: string;
  /** The cluster's token: flickd authenticates with it (it is also in <data-dir>/token). */
  token: string;
  /** This host's VM network namespace prefix and address pool. */
  network: { prefix: string; pool: string };
  /** etcd was unreachable at start: the host serves what it holds and join() waits for etcd. */
  offline: boolean;
  /** Registers the host (after flickd listens: its URLs carry the bound ports); retries while etcd is unreachable. */
  join(addresses: JoinAddresses, instances: () => number, inventory?: () => Promise<HostInventory>): Promise<ClusterMember>;
  close(): Promise<void>;
}

export interface ClusterMember {
  hostName: string;
  lease: HostLease;
  directory: HostDirectory;
  /** Stops renewing and following etcd; the host shows down once its lease lapses. Safe twice. */
  leave(): Promise<void>;
}

export async function connectCluster(config: ClusterConfig, localToken: string): Promise<ClusterConnection> {
  const hostName = checkHostName(config.hostName);
  const prefix = config.prefix ?? DEFAULT_CLUSTER_PREFIX;
  const etcd = new EtcdClient({ endpoints: config.endpoints, ...(config.tls ? { tls: config.tls } : {}) });
  try {
    const stateFile = path.join(config.dataDir, STATE_FILE);
    let token = localToken;
    let network: { prefix: string; pool: string };
    let offline = false;
    try {
      token = await clusterToken(etcd, prefix, localToken);
      if (token !== localToken) {
        storeToken(config.dataDir, token);
        config.log(`cluster: this host now uses the cluster's token (in ${config.dataDir}/token)`);
      }
      network = await claimNetwork(etcd, prefix, hostName, config.dataDir);
      fs.writeFileSync(stateFile, `${JSON.stringify({ version: 1, network })}\n`, { mode: 0o600 });
    } catch (err) {
      // A host that joined before serves what it holds through an etcd outage, even across its own restart.
      const known = readJoined(stateFile);
      if (!(err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE') || !known) throw err;
      network = known.network;
      offline = true;
      config.log(`cluster: ${err.message}; serving this host's instances as it knew them, joining once etcd answers`);
    }
    let member: ClusterMember | undefined;
    let closed = false;
    return {
      etcd,
      hostName,
      prefix,
      token,
      network,
      offline,
      async join(addresses, instances, inventory) {
        for (let logged = false; ; logged = true) {
          try {
            return await joinOnce(addresses, instances, inventory);
          } catch (err) {
            if (closed || !(err instanceof EtcdError && err.code === 'ETCD_UNAVAILABLE')) throw err;
            if (!logged) config.log(`cluster: joining: ${err.message}; retrying every second`);
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      },
      async close() {
        closed = true;
        await member?.leave();
        await etcd.close();
      },
    };

    async function joinOnce(addresses: JoinAddresses, instances: () => number, inventory?: () => Promise<HostInventory>): Promise<ClusterMember> {
      {
        const ttl = config.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
        let registration: Registration | undefined;
        const leaseFile = path.join(config.dataDir, LEASE_FILE);
        const keep = (id: string) => fs.writeFileSync(leaseFile, `${id}\n`, { mode: 0o600 });
        const previous = fs.existsSync(leaseFile) ? fs.readFileSync(leaseFile, 'utf8').trim() : undefined;
        const lease = await HostLease.grant(
          etcd,
          {
            ttlSeconds: ttl,
            onLost: async (lapsed, next) => {
              keep(next);
              config.log(`cluster: lease ${lapsed} lapsed (etcd unreachable or this host stalled for over ${ttl} s); re-registered under lease ${next}`);
              await registration?.refresh();
            },
            onTrouble: (err) => config.log(`cluster: renewing the lease: ${(err as Error).message}`),
          },
          previous,
        );
        keep(lease.id);
        const url = (port: number) => `http://${config.advertise.includes(':') ? `[${config.advertise}]` : config.advertise}:${port}`;
        try {
          registration = await Registration.register({
            etcd,
            prefix,
            lease,
            record: {
              name: hostName,
              api: url(addresses.apiPort),
              proxy: addresses.proxyPort !== undefined ? url(addresses.proxyPort) : null,
              hop: addresses.hopPort !== undefined ? url(addresses.hopPort) : null,
              capacity: { memoryBytes: os.totalmem(), vcpus: os.cpus().length },
            },
            instances,
            ...(inventory ? { inventory } : {}),
            waitForNameMs: (ttl + 2) * 1000,
            log: config.log,
          });
        } catch (err) {
          await lease.release({ revoke: true });
          throw err;
        }
        const directory = new HostDirectory(etcd, prefix, (err) => config.log(`cluster: host list re-listed after: ${(err as Error).message}`));
        await directory.ready;
        const reg = registration;
        let leaving: Promise<void> | undefined;
        member = {
          hostName,
          lease,
          directory,
          leave: () =>
            (leaving ??= (async () => {
              // The lease is not revoked: it lapses at its TTL unless the next flickd here adopts it
              // (a restart keeps the host's instances its own; a host stopped for good is failed over).
              directory.stop();
              reg.stop();
              await lease.release();
            })()),
        };
        config.log(`cluster: joined as "${hostName}" (lease ${lease.id}${lease.adopted ? ', kept from the flickd before' : ''}, ${config.endpoints.length} etcd endpoint(s), VM networks ${network.pool})`);
        return member;
      }
    }
  } catch (err) {
    await etcd.close();
    throw err;
  }
}

/** The cluster's token: set by the first host to join (create-if-absent), read by every later one. */
async function clusterToken(etcd: EtcdClient, prefix: string, localToken: string): Promise<string> {
  const key = `${prefix}cluster/token`;
  const r = await etcd.txn([{ key, target: 'CREATE', result: 'EQUAL', value: 0 }], [{ put: { key, value: localToken } }], [{ range: { key } }]);
  return r.succeeded ? localToken : r.ranges[0]![0]!.value;
}

/**
 * The host's VM network range, claimed once and kept (its VMs' addresses come
 * from it across restarts): the first free 10.(64+k).0.0/16, and a namespace
 * prefix from the host's name and data dir (never a prefix of another's: fixed length).
 */
async function claimNetwork(etcd: EtcdClient, prefix: string, hostName: string, dataDir: string): Promise<{ prefix: string; pool: string }> {
  const hash = crypto.createHash('sha256').update(`${hostName}\0${dataDir}`).digest();
  const nsPrefix = `flick-h${hash.toString('hex').slice(0, 8)}-`;
  const start = hash.readUInt32BE(0) % NETWORK_CLAIMS;
  const owner = `${hostName}\0${dataDir}`;
  for (let i = 0; i < NETWORK_CLAIMS; i++) {
    const k = (start + i) % NETWORK_CLAIMS;
    const key = `${prefix}netpools/${k}`;
    const r = await etcd.txn([{ key, target: 'CREATE', result: 'EQUAL', value: 0 }], [{ put: { key, value: owner } }], [{ range: { key } }]);
    if (r.succeeded || r.ranges[0]?.[0]?.value === owner) return { prefix: nsPrefix, pool: `10.${64 + k}.0.0/16` };
  }
  throw new Error(`all ${NETWORK_CLAIMS} host network ranges of the cluster are claimed: set FLICK_NET_POOL for this host`);
}

function readJoined(file: string): { network: { prefix: string; pool: string } } | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: number; network?: { prefix?: unknown; pool?: unknown } };
    if (s.version !== 1 || typeof s.network?.prefix !== 'string' || typeof s.network.pool !== 'string') return undefined;
    return { network: { prefix: s.network.prefix, pool: s.network.pool } };
  } catch {
    return undefined;
  }
}
