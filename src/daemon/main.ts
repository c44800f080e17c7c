// flickd, the host daemon: `flickd [--data-dir DIR] [--listen HOST:PORT] [--anonymous-pull] ...`
// serves the OCI registry under /v2/, the REST API under /v1/, Prometheus
// metrics at /metrics, and the ingress proxy (by default on 127.0.0.1:7451,
// `http://<name>.localhost:7451`; `--proxy-listen off` for none) until SIGTERM
// or SIGINT. `flickd gc --data-dir DIR` collects
// registry garbage and exits (run it while flickd is stopped, or let flickd run
// it at start).
import { parseArgs } from 'node:util';
import type { IncomingMessage } from 'node:http';
import { describeError } from '../errors.js';
import { collectGarbage } from '../registry/gc.js';
import { startHostInstances } from '../api/host-instances.js';
import { refuseWritesWhenDiskFull } from '../limits/host-limits.js';
import { hostMetrics, renderPrometheus } from '../api/metrics.js';
import { createRegistryHandler } from '../registry/http-handler.js';
import { RegistryImageStore } from '../registry/image-store.js';
import { Registry } from '../registry/registry.js';
import { DEFAULT_NETNS_POOL_SIZE } from '../network/namespace-pool.js';
import { DEFAULT_TEMPLATE_WARMUP_REQUESTS, WARMUP_USER_AGENT } from '../controller/template-warmup.js';
import type { KeepResident } from '../controller/hot-standby.js';
import { ensureToken, TokenAuth, type Identity } from './auth.js';
import { connectCluster, DEFAULT_LEASE_TTL_SECONDS, type ClusterConnection, type ClusterMember } from '../cluster/join.js';
import { standDownGuard, startFenceGuard, type FenceGuard } from '../cluster/fence-guard.js';
import { createHostsHandler, peerReachesEtcd } from '../cluster/hosts-api.js';
import { ClusterAgent } from '../cluster/agent.js';
import type { EtcdStateStore } from '../cluster/etcd-state-store.js';
import { openClusterState } from '../cluster/state-import.js';
import { isRemoteRoute } from '../cluster/remote-routes.js';
import { hostInventory } from '../cluster/inventory.js';
import { createForwarder } from '../cluster/api-forward.js';
import { PeerFetchingImageStore } from '../registry/peer-fetch.js';
import type { ImageStore } from '../registry/image-store.js';
import { createDaemonServer, findRoute, type DaemonRoute } from './server.js';
import { createWebConsole } from '../console/console.js';
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_PROXY_LISTEN, clusterFlags, parseKeepResident, parseListen, parseSize, readProxyTls, type ClusterJoinConfig, type ProxyTlsConfig, DEFAULT_PROXY_TLS_LISTEN } from './flags.js';

const USAGE = `usage: flickd [--data-dir DIR] [--listen HOST:PORT] [--proxy-listen HOST:PORT|off] [--anonymous-pull]
              [--proxy-tls-cert FILE --proxy-tls-key FILE] [--proxy-tls-listen HOST:PORT]
              [--hot-standby-budget SIZE] [--hot-page-out-after MS] [--hot-keep-resident SIZE|N%]
              [--primed-pool-mb N] [--primed-warm N] [--proxy-max-parked N]
              [--metrics-anonymous-loopback] [--max-instances N] [--netns-pool N]
              [--template-warmup N] [--ready-timeout MS]
              [--cluster-etcd URL[,URL…] --host-name NAME --advertise ADDR
               [--cluster-etcd-ca FILE --cluster-etcd-cert FILE --cluster-etcd-key FILE]
               [--cluster-hop-listen HOST:PORT]]
       flickd gc [--data-dir DIR]

  --proxy-listen              ingress proxy (default ${DEFAULT_PROXY_LISTEN}; off: none)
  --proxy-tls-cert FILE       PEM certificate (chain) the proxy's HTTPS listener presents to clients that
  --proxy-tls-key FILE          name no host with a certificate of its own (flick run --tls-cert), and its key
  --proxy-tls-listen HOST:PORT  the HTTPS listener (default ${DEFAULT_PROXY_TLS_LISTEN} when a certificate is given;
                              without one, only instances' own certificates are served, by SNI)
  --hot-standby-budget SIZE   host RAM all hot-standby (paused) instances may hold, e.g. 2G, 512M;
                              0: every standby is cold (default: a tenth of host RAM)
  --hot-page-out-after MS     how long a hot-standby instance keeps its guest RAM resident
                              before it goes back to its file (default 10000; 0: at suspend)
  --hot-keep-resident SIZE|N% of a paged-out instance's guest RAM, the most recently used part that
                              stays resident so its next wake starts from RAM: a size, or a share
                              of the instance's RAM (default 25%; 0: none)
  --primed-pool-mb N          host RAM (MiB) for VMs restored paused from the templates with the most
                              cold wakes, so a cold wake of a stateless instance resumes one instead
                              of starting a QEMU (default: a fiftieth of host RAM; 0: none)
  --primed-warm N             GET / requests a primed VM of an HTTP app serves (then paused again)
                              before it waits: its wake is then as fast as a hot one, but the app has
                              served them (default 0: no guest code runs in the pool)
  --proxy-max-parked N        requests parked per sleeping instance before 503 (default 1024)
  --metrics-anonymous-loopback  serve /metrics without the token to loopback clients
  --max-instances N           refuse to create more than N instances (default: no quota)
  --netns-pool N              VM networks (namespace, tap, veth, rules) kept ready so a cold wake
                              makes none; refilled in the background (default ${DEFAULT_NETNS_POOL_SIZE}; 0: none)
  --template-warmup N         GET / requests (User-Agent: ${WARMUP_USER_AGENT}) an HTTP app serves before
                              its template snapshot, so cold wakes skip its first-request work
                              (default ${DEFAULT_TEMPLATE_WARMUP_REQUESTS}; 0: the template is taken at first readiness)
  --ready-timeout MS          how long a booting app may take to accept a connection on its port
                              (default 60000; a database's first start runs initdb, minutes under TCG)
  --cluster-etcd URL[,URL…]   join the cluster whose state is in this etcd (its members' client URLs);
                              without it flickd is a host of its own
  --host-name NAME            this host's name in the cluster (a DNS label; default: the machine's name)
  --advertise ADDR            the address peers and clients reach this host at (required with
                              --cluster-etcd when --listen is not a specific address)
  --cluster-etcd-ca/-cert/-key FILE   etcd over TLS: the CA of etcd's certificates, this host's
                              client certificate and key (PEM)
  --cluster-hop-listen HOST:PORT  where other hosts' proxies send requests for this host's instances,
                              each with the cluster's token (default: the proxy's host, a free port,
                              advertised in etcd; bind it to the hosts' own network)`;

/** Registry access: the token holder always; with --anonymous-pull, also reads from loopback without credentials. */
export function registryAccess(anonymousPull: boolean) {
  return (req: IncomingMessage, id: Identity): boolean => {
    if (id.kind === 'token') return true;
    if (!anonymousPull || id.kind !== 'anonymous' || !id.loopback) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    // The base endpoint still challenges, so that clients holding credentials learn to send them.
    const pathname = (req.url ?? '').split('?', 1)[0];
    return pathname !== '/v2/' && pathname !== '/v2';
  };
}

export async function main(argv: string[]): Promise<void> {
  let args;
  try {
    args = parseArgs({
      args: argv.slice(2),
      allowPositionals: true,
      options: {
        'data-dir': { type: 'string', default: DEFAULT_DATA_DIR },
        listen: { type: 'string', default: DEFAULT_LISTEN },
        'anonymous-pull': { type: 'boolean', default: false },
        'proxy-listen': { type: 'string' },
        'proxy-tls-cert': { type: 'string' },
        'proxy-tls-key': { type: 'string' },
        'proxy-tls-listen': { type: 'string' },
        'hot-standby-budget': { type: 'string' },
        'hot-page-out-after': { type: 'string' },
        'hot-keep-resident': { type: 'string' },
        'primed-pool-mb': { type: 'string' },
        'primed-warm': { type: 'string' },
        'metrics-anonymous-loopback': { type: 'boolean', default: false },
        'max-instances': { type: 'string' },
        'proxy-max-parked': { type: 'string' },
        'netns-pool': { type: 'string' },
        'template-warmup': { type: 'string' },
        'ready-timeout': { type: 'string' },
        'cluster-etcd': { type: 'string' },
        'host-name': { type: 'string' },
        advertise: { type: 'string' },
        'cluster-etcd-ca': { type: 'string' },
        'cluster-etcd-cert': { type: 'string' },
        'cluster-etcd-key': { type: 'string' },
        'cluster-hop-listen': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`flickd: ${describeError(err)}\n${USAGE}\n`);
    process.exitCode = 64;
    return;
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const dataDir = args.values['data-dir'];
  const log = (line: string) => process.stderr.write(`flickd: ${line}\n`);
  try {
    const registry = new Registry({ dataDir });
    if (args.positionals[0] === 'gc') {
      ensureToken(dataDir);
      await registry.init();
      const r = await collectGarbage(registry, { imagesDir: new RegistryImageStore(registry, dataDir).imagesDir });
      process.stdout.write(`gc: ${r.blobsDeleted} blobs (${r.bytesFreed} bytes), ${r.uploadsDeleted} uploads, ${r.imagesDeleted} image folders removed\n`);
      return;
    }
    if (args.positionals.length > 0) throw new Error(`unknown command "${args.positionals[0]}"\n${USAGE}`);
    const budget = args.values['hot-standby-budget'];
    const pageOut = args.values['hot-page-out-after'];
    const keepResident = args.values['hot-keep-resident'];
    const maxParked = args.values['proxy-max-parked'];
    if (maxParked !== undefined && !/^[1-9]\d*$/.test(maxParked)) throw new Error(`--proxy-max-parked "${maxParked}" is not a positive whole number, e.g. 1024`);
    const maxInstances = args.values['max-instances'];
    if (maxInstances !== undefined && !/^\d+$/.test(maxInstances)) throw new Error(`--max-instances "${maxInstances}" is not a whole number, e.g. 100`);
    const warmup = args.values['template-warmup'];
    if (warmup !== undefined && !/^\d+$/.test(warmup)) throw new Error(`--template-warmup "${warmup}" is not a whole number of requests, e.g. ${DEFAULT_TEMPLATE_WARMUP_REQUESTS}`);
    const readyTimeout = args.values['ready-timeout'];
    if (readyTimeout !== undefined && !/^[1-9]\d*$/.test(readyTimeout)) throw new Error(`--ready-timeout "${readyTimeout}" is not a positive whole number of milliseconds, e.g. 300000`);
    const primedMb = args.values['primed-pool-mb'];
    if (primedMb !== undefined && !/^\d+$/.test(primedMb)) throw new Error(`--primed-pool-mb "${primedMb}" is not a whole number of MiB, e.g. 512 (0: no primed pool)`);
    const primedWarm = args.values['primed-warm'];
    if (primedWarm !== undefined && !/^\d+$/.test(primedWarm)) throw new Error(`--primed-warm "${primedWarm}" is not a whole number of requests, e.g. 1 (0: none)`);
    const netnsPool = args.values['netns-pool'];
    if (netnsPool !== undefined && !/^\d+$/.test(netnsPool)) throw new Error(`--netns-pool "${netnsPool}" is not a whole number, e.g. ${DEFAULT_NETNS_POOL_SIZE}`);
    if (pageOut !== undefined && !/^\d+$/.test(pageOut)) throw new Error(`--hot-page-out-after "${pageOut}" is not a whole number of milliseconds, e.g. 10000`);
    const proxyTls = readProxyTls(args.values['proxy-tls-cert'], args.values['proxy-tls-key'], args.values['proxy-tls-listen']);
    const cluster = clusterFlags(args.values);
    await serve({
      ...(cluster ? { cluster } : {}),
      dataDir,
      ...(proxyTls ? { proxyTls } : {}),
      listen: args.values.listen,
      proxyListen: args.values['proxy-listen'],
      anonymousPull: args.values['anonymous-pull'],
      metricsAnonymousLoopback: args.values['metrics-anonymous-loopback'],
      ...(maxParked !== undefined ? { proxyMaxParked: Number(maxParked) } : {}),
      ...(maxInstances !== undefined ? { maxInstances: Number(maxInstances) } : {}),
      ...(netnsPool !== undefined ? { netnsPool: Number(netnsPool) } : {}),
      ...(primedMb !== undefined ? { primedPoolBytes: Number(primedMb) * 1024 * 1024 } : {}),
      ...(primedWarm !== undefined ? { primedWarmRequests: Number(primedWarm) } : {}),
      ...(warmup !== undefined ? { templateWarmupRequests: Number(warmup) } : {}),
      ...(readyTimeout !== undefined ? { readyTimeoutMs: Number(readyTimeout) } : {}),
      hotStandby: {
        ...(budget !== undefined ? { budgetBytes: parseSize(budget) } : {}),
        ...(pageOut !== undefined ? { pageOutAfterMs: Number(pageOut) } : {}),
        ...(keepResident !== undefined ? { keepResident: parseKeepResident(keepResident) } : {}),
      },
      log,
    });
    // Shut down: exit now rather than when the last idle socket (an HTTP client's keep-alive) times out,
    // seconds later: a flickd started again here must find this one gone (the fence guard waits for it).
    process.exit(0);
  } catch (err) {
    log(describeError(err));
    process.exitCode = 70;
  }
}

export interface ServeConfig {
  dataDir: string;
  /** The proxy's HTTPS listener and its default certificate (PEM); none: no HTTPS. */
  proxyTls?: ProxyTlsConfig;
  /** Join this cluster (src/cluster); undefined: a host of its own. */
  cluster?: ClusterJoinConfig;
  listen: string;
  /** The ingress proxy's address (HOST:PORT); undefined: the default (and none if its port is taken); 'off': none. */
  proxyListen?: string | undefined;
  anonymousPull: boolean;
  /** /metrics without the token for loopback clients. */
  metricsAnonymousLoopback?: boolean;
  hotStandby?: { budgetBytes?: number; pageOutAfterMs?: number; keepResident?: KeepResident };
  proxyMaxParked?: number;
  /** The instance quota (src/limits); undefined: none. */
  maxInstances?: number;
  /** Ready-made VM networks (src/network/namespace-pool.ts); undefined: the default. */
  netnsPool?: number;
  /** The primed pool's budget (src/controller/primed/); undefined: the default. */
  primedPoolBytes?: number;
  primedWarmRequests?: number;
  templateWarmupRequests?: number;
  readyTimeoutMs?: number;
  log: (line: string) => void;
}

async function serve(config: ServeConfig): Promise<void> {
  const { host, port } = parseListen(config.listen);
  let token = ensureToken(config.dataDir);
  // A cluster host takes the cluster's token and its own VM network range before anything listens.
  let cluster: ClusterConnection | undefined;
  let member: ClusterMember | undefined;
  let guard: FenceGuard | undefined;
  if (config.cluster) {
    // The guard a previous flickd left would kill this host's VMs at its lease's end: this flickd takes them over.
    standDownGuard(config.dataDir, config.log);
    cluster = await connectCluster({ ...config.cluster, dataDir: config.dataDir, log: config.log }, token);
    token = cluster.token;
  }
  const registry = new Registry({ dataDir: config.dataDir });
  await registry.init();
  const images = new RegistryImageStore(registry, config.dataDir, config.log);
  const c = cluster;
  const runnable: ImageStore = c
    ? new PeerFetchingImageStore({
        local: images,
        registry,
        token,
        log: config.log,
        peers: () => (member?.directory.peers(c.hostName) ?? []).map((h) => ({ name: h.name, url: h.api })),
      })
    : images;
  // Collect at start, before anyone can push: uploads left by a crash and unreferenced blobs past their grace go.
  const gc = await collectGarbage(registry, { imagesDir: images.imagesDir });
  if (gc.blobsDeleted + gc.uploadsDeleted > 0) config.log(`gc: removed ${gc.blobsDeleted} blobs, ${gc.uploadsDeleted} stale uploads`);

  // Instances: re-adopts VMs a previous flickd left running before anyone can call the API.
  const proxyListen = config.proxyListen === 'off' ? undefined : parseListen(config.proxyListen ?? DEFAULT_PROXY_LISTEN);
  const agent = c ? new ClusterAgent({ etcd: c.etcd, prefix: c.prefix, host: c.hostName, credential: token, leaseTtlMs: DEFAULT_LEASE_TTL_SECONDS * 1000, log: config.log }) : undefined;
  // A cluster host's records live in etcd (src/cluster/etcd-state-store.ts); a state.db of its SQLite days goes there first.
  let state: EtcdStateStore | undefined;
  const openState = async (cc: ClusterConnection) =>
    (state = await openClusterState({ etcd: cc.etcd, prefix: cc.prefix, hostId: cc.hostName, dataDir: config.dataDir, lease: () => member?.lease.id, log: config.log }));
  const instances = await startHostInstances({
    dataDir: config.dataDir,
    ...(c ? { openStore: () => openState(c) } : {}),
    images: runnable,
    ...(agent ? { cluster: agent.hooks() } : {}),
    // Tests pin their own prefix and pool (env); a cluster host otherwise uses the range it claimed.
    ...(c ? { network: { prefix: process.env.FLICK_NETNS_PREFIX ?? c.network.prefix, pool: process.env.FLICK_NET_POOL ?? c.network.pool } } : {}),
    log: config.log,
    ...(proxyListen ? { proxyListen, proxyOptional: config.proxyListen === undefined } : {}),
    ...(proxyListen && config.proxyTls ? { proxyTls: config.proxyTls } : {}),
    // Other hosts' proxies reach this host's instances on a listener of their own, with the cluster's token (src/proxy/hop.ts).
    ...(proxyListen && c ? { proxyHop: { listen: config.cluster?.hopListen ?? { host: proxyListen.host, port: 0 }, credential: token, serves: (id: string) => !isRemoteRoute(id) } } : {}),
    ...(config.hotStandby ? { hotStandby: config.hotStandby } : {}),
    ...(config.proxyMaxParked ? { proxyMaxParked: config.proxyMaxParked } : {}),
    ...(config.maxInstances !== undefined ? { maxInstances: config.maxInstances } : {}),
    ...(config.netnsPool !== undefined ? { netnsPool: config.netnsPool } : {}),
    ...(config.primedPoolBytes !== undefined ? { primedPoolBytes: config.primedPoolBytes } : {}),
    ...(config.primedWarmRequests !== undefined ? { primedWarmRequests: config.primedWarmRequests } : {}),
    ...(config.templateWarmupRequests !== undefined ? { templateWarmupRequests: config.templateWarmupRequests } : {}),
    ...(config.readyTimeoutMs !== undefined ? { readyTimeoutMs: config.readyTimeoutMs } : {}),
  });

  const hostsHandler = createHostsHandler({
    instances: () => instances.controller.list().length,
    ...(c && agent ? { cluster: { self: c.hostName, list: () => member?.directory.list() ?? [], instances: () => agent.instances(), reachesEtcd: () => c.etcd.reachable(1000) } } : {}),
  });
  // The host's HTTP surface, one line per mount. Order does not matter (longest prefix wins).
  const auth = new TokenAuth(token);
  // The web console: same listener and token; its feed listens to the controller's events.
  const webConsole = createWebConsole({
    controller: instances.controller,
    view: instances.view,
    // The page calls the REST API (instances, volumes, hosts) through the console, with its session.
    api: (req, res) => {
      const route = findRoute(routes, (req.url ?? '/').split('?', 1)[0]!);
      return route && route.prefix.startsWith('/v1') ? route.handler(req, res) : instances.handler(req, res);
    },
    images: { list: () => images.list(), manifestPath: async (name, digest) => (await registry.getManifest(name, digest)).path },
    auth,
  });
  const routes: DaemonRoute[] = [
    webConsole.route,
    // A push is refused up front when the disk is (nearly) full, rather than cut off by ENOSPC (src/limits).
    { prefix: '/v2/', handler: refuseWritesWhenDiskFull(createRegistryHandler(registry, config.log), config.dataDir), access: registryAccess(config.anonymousPull) },
    { prefix: '/v1/', handler: instances.handler },
    { prefix: '/v1/volumes', handler: instances.volumesHandler },
    { prefix: '/v1/services', handler: instances.servicesHandler },
    ...['/v1/hosts', '/v1/cluster/'].map((prefix) => ({ prefix, handler: hostsHandler })),
    // In a cluster, creates are placed and calls for another host's instance go there (src/cluster/api-forward.ts).
    ...(c && agent
      ? [
          {
            prefix: '/v1/instances',
            handler: createForwarder({
              self: c.hostName,
              token,
              directory: () => member?.directory,
              place: (req, pending) => agent.place(req, pending),
              ownerOf: (ref) => agent.ownerOf(ref),
              holds: (ref) => instances.controller.list().some((r) => r.id === ref || r.name === ref),
              local: instances.handler,
            }),
          },
        ]
      : []),
    {
      prefix: '/metrics',
      handler: async (req, res) => {
        req.resume();
        const body = renderPrometheus(hostMetrics(instances.metrics)) + instances.services.prometheus();
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      },
      access: (_req, id) => id.kind === 'token' || (config.metricsAnonymousLoopback === true && id.kind === 'anonymous' && id.loopback),
    },
  ];
  const daemon = createDaemonServer({ routes, auth, log: config.log });
  const address = await daemon.listen(host, port);
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  if (c && agent) {
    const joinCluster = async () => {
      member = await c.join({ apiPort: address.port, proxyPort: instances.proxy?.address.port, hopPort: instances.proxy?.hopAddress?.port }, () => instances.controller.list().length, async () => hostInventory(await images.list(), instances.controller.list()));
      const m = member;
      // Before serving: what another host claimed while this one was away is released here.
      await agent.start(state!, instances.controller, instances.routes, m.lease, () => peerReachesEtcd(m.directory.peers(c.hostName), token));
      agent.follow(m.directory);
      // Should this flickd die, its stateless VMs die at its lease's end, before another host starts them (fence-guard.ts).
      guard = startFenceGuard({ dataDir: config.dataDir, ttlMs: DEFAULT_LEASE_TTL_SECONDS * 1000, lease: m.lease, targets: () => agent.movable(), log: config.log });
    };
    try {
      // etcd down at start (a host that joined before): serve what this host holds, join when etcd answers.
      if (c.offline) void joinCluster().catch((err: unknown) => config.log(`cluster: joining failed: ${describeError(err)}`));
      else await joinCluster();
    } catch (err) {
      agent.stop();
      await c.close();
      await daemon.close();
      await instances.close();
      throw err;
    }
  }
  process.stdout.write(`flickd: listening on http://${shown}:${address.port}\n`);

  // A promise somebody forgot to await must not take the host down with it: every
  // instance's state is in the store and its VM is its own process, so flickd logs
  // it (with its stack, to be fixed) and goes on serving.
  process.on('unhandledRejection', (reason) => {
    config.log(`internal error (unhandled rejection, flickd goes on): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  });

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      config.log(`${signal}: shutting down`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  webConsole.dispose(); // ends the console's event streams, which would hold the close for its grace period
  agent?.stop();
  await daemon.close();
  await instances.close();
  // The lease is renewed last, then left to lapse: a flickd started again here within its TTL keeps it and
  // the host's instances, taking the VMs over from the fence guard (which kills them at the TTL otherwise).
  if (member && guard) await member.lease.renewNow(500);
  guard?.close();
  await cluster?.close();
  await images.settle();
}
