// Everything flickd needs to run instances, composed in one place: the state
// store, the QEMU driver, per-VM networks, the controller (reconciled with what
// a previous flickd left running), the /v1 handler, and optionally the ingress
// proxy with the controller as its Waker. flickd's main calls this once.
import path from 'node:path';
import { Controller } from '../controller/controller.js';
import type { HotStandbyConfig } from '../controller/hot-standby.js';
import { defaultPrimedBudgetBytes } from '../controller/primed/primed-pool.js';
import { routeName, syncRoutes } from '../controller/routing.js';
import { DEFAULT_DOMAIN } from '../controller/spec.js';
import type { ImageResolver, ImageRunConfig } from '../controller/seams.js';
import { describeError } from '../errors.js';
import { NamespacePool } from '../network/namespace-pool.js';
import { createProxy, type Proxy } from '../proxy/proxy.js';
import { RouteTable } from '../proxy/routes.js';
import type { ImageStore } from '../registry/image-store.js';
import { SqliteStateStore } from '../store/sqlite-state-store.js';
import { QemuDriver } from '../vmm/qemu/qemu-driver.js';
import { createApiHandler, type ApiController, type ApiHandler } from './handler.js';
import type { Waker } from '../proxy/waker.js';
import type { HopConfig } from '../proxy/hop.js';
import { withLimits } from '../limits/host-limits.js';
import { parsePool } from '../network/addresses.js';
import { VolumeManager } from '../volumes/volume-manager.js';
import { createVolumesHandler } from './volumes.js';
import { createServicesHandler } from './services.js';
import { Services } from '../services/services.js';
import type { MemberPlacement } from '../services/member-placement.js';
import type { MetricsSources } from './metrics.js';
import { instanceView } from './schemas.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import type { StateStore } from '../controller/state/state-store.js';

export interface HostInstancesConfig {
  dataDir: string;
  /** Opens the state store the controller runs on (a cluster's etcd one); default `<dataDir>/state.db` on SQLite. Closed by close(). */
  openStore?: () => Promise<StateStore>;
  images: ImageStore;
  log: (line: string) => void;
  /** Where the ingress proxy listens (HTTP by Host name); none: no proxy. */
  proxyListen?: { host: string; port: number };
  /** Host names are `<name>.<domain>`. */
  domain?: string;
  /** The proxy's HTTPS listener and its default PEM certificate and key (flickd --proxy-tls-*). */
  proxyTls?: { listen: { host: string; port: number }; cert?: string; key?: string };
  /**
   * Namespace prefix and address pool of the instance networks. Default: env
   * FLICK_NETNS_PREFIX / FLICK_NET_POOL, else src/network's defaults. Two
   * flickds on one machine (tests) need different ones: each sweeps its prefix.
   */
  network?: { prefix?: string; pool?: string };
  /** Ready-made VM networks kept in reserve for cold wakes (flickd --netns-pool); default src/network's. */
  netnsPool?: number;
  /** The hot standby tier (see src/controller/hot-standby.ts). */
  hotStandby?: Partial<HotStandbyConfig>;
  /** The primed pool's RAM budget (flickd --primed-pool-mb; 0: none); default src/controller/primed's. */
  primedPoolBytes?: number;
  /** GET / requests a primed VM serves before it waits in the pool (flickd --primed-warm); default 0: no guest code run. */
  primedWarmRequests?: number;
  /** The proxy's listener for other hosts' proxies (a cluster's hops, src/proxy/hop.ts). */
  proxyHop?: HopConfig;
  /** Parked requests per sleeping instance before the proxy answers 503. */
  proxyMaxParked?: number;
  /** If the proxy address is a default, not asked for: a busy port means no proxy (with a warning) rather than no flickd. */
  proxyOptional?: boolean;
  /** At most this many instances (flickd --max-instances); none: no quota. */
  maxInstances?: number;
  /**
   * A cluster's hooks (src/cluster/agent.ts): a Waker in front of the controller's
   * (instances on other hosts are reached through their host's proxy), and a
   * wrapper around the API's controller (a create first takes its name in the cluster).
   */
  cluster?: { waker: (local: Waker) => Waker; api?: (c: ApiController) => ApiController; members?: MemberPlacement };
  /** GET / requests an HTTP app gets before its template snapshot (flickd --template-warmup); default the controller's. */
  templateWarmupRequests?: number;
  /** How long a booting app may take to accept a connection (flickd --ready-timeout); default the controller's. */
  readyTimeoutMs?: number;
}

export interface HostInstances {
  controller: Controller;
  /** Mount under /v1/. */
  handler: ApiHandler;
  /** Mount under /v1/volumes. */
  volumesHandler: ApiHandler;
  /** Mount under /v1/services. */
  servicesHandler: ApiHandler;
  services: Services;
  proxy: Proxy | undefined;
  /** The proxy's route table (a cluster adds the routes of other hosts' instances). */
  routes: RouteTable | undefined;
  /** The metrics sources (/metrics, /v1/metrics). */
  metrics: MetricsSources;
  /** An instance as /v1 shows it, with its URL (the web console's feed). */
  view(rec: InstanceRecord): Record<string, unknown>;
  /** Stops the proxy and the controller's timers; VMs keep running for the next flickd to adopt. Safe to call twice. */
  close(): Promise<void>;
}

/** The registry's images as the controller reads them (its config's nullable fields made optional). */
export function imageResolver(images: ImageStore): ImageResolver {
  return {
    async resolve(ref) {
      const img = await images.resolve(ref);
      const c = img.config.config ?? {};
      const config: ImageRunConfig = {
        Entrypoint: c.Entrypoint ?? null,
        Cmd: c.Cmd ?? null,
        Env: c.Env ?? null,
        ExposedPorts: c.ExposedPorts ?? null,
        ...(c.WorkingDir ? { WorkingDir: c.WorkingDir } : {}),
        ...(c.User ? { User: c.User } : {}),
        ...(c.Labels ? { Labels: c.Labels } : {}),
      };
      return { digest: img.digest, config, paths: img.paths };
    },
  };
}

export async function startHostInstances(config: HostInstancesConfig): Promise<HostInstances> {
  const { log } = config;
  const store = config.openStore ? await config.openStore() : SqliteStateStore.open(path.join(config.dataDir, 'state.db'));
  const volumes = new VolumeManager({ dataDir: config.dataDir });
  const controller = new Controller({
    volumes,
    store,
    driver: new QemuDriver({ log }),
    images: imageResolver(config.images),
    // Its sweep touches only names it makes (`<prefix>n<slot>`, and the `<prefix><instance id>` of older flickds).
    network: new NamespacePool({
      ...(config.network?.prefix ?? process.env.FLICK_NETNS_PREFIX ? { prefix: config.network?.prefix ?? process.env.FLICK_NETNS_PREFIX } : {}),
      ...(config.network?.pool ?? process.env.FLICK_NET_POOL ? { pool: config.network?.pool ?? process.env.FLICK_NET_POOL } : {}),
      ...(config.netnsPool !== undefined ? { size: config.netnsPool } : {}),
      log: (line) => log(line),
    }),
    dataDir: config.dataDir,
    logger: { info: log, warn: log },
    ...(config.hotStandby ? { hotStandby: config.hotStandby } : {}),
    primedPool: { budgetBytes: config.primedPoolBytes ?? defaultPrimedBudgetBytes(), ...(config.primedWarmRequests ? { warmRequests: config.primedWarmRequests } : {}) },
    ...(config.templateWarmupRequests !== undefined ? { templateWarmupRequests: config.templateWarmupRequests } : {}),
    ...(config.readyTimeoutMs !== undefined ? { readyTimeoutMs: config.readyTimeoutMs } : {}),
  });
  let proxy: Proxy | undefined;
  let routes: RouteTable | undefined;
  let unsync = () => {};
  try {
    const { adopted, died } = await controller.reconcile();
    if (adopted.length + died.length > 0) log(`instances: re-adopted ${adopted.length} running VM(s); ${died.length} had died while flickd was down`);
    if (config.proxyListen) {
      routes = new RouteTable();
      unsync = syncRoutes(controller, routes, (err) => log(`proxy route: ${describeError(err)}`));
      try {
        const tls = config.proxyTls;
        proxy = await createProxy({
          routes,
          waker: config.cluster ? config.cluster.waker(controller.waker()) : controller.waker(),
          listen: config.proxyListen,
          ...(config.domain ? { domain: config.domain } : {}),
          ...(config.proxyMaxParked ? { maxParkedPerInstance: config.proxyMaxParked } : {}),
          ...(config.proxyHop ? { hopListen: config.proxyHop } : {}),
          ...(tls ? { tlsListen: tls.listen, ...(tls.cert !== undefined && tls.key !== undefined ? { tls: { cert: tls.cert, key: tls.key } } : {}) } : {}),
        });
        log(`proxy: listening on http://${proxy.address.host}:${proxy.address.port} (host names <name>.${config.domain ?? 'localhost'})`);
        if (proxy.hopAddress) log(`proxy: cluster hops on http://${proxy.hopAddress.host}:${proxy.hopAddress.port} (the cluster's token required)`);
        if (proxy.tlsAddress) log(`proxy: listening on https://${proxy.tlsAddress.host}:${proxy.tlsAddress.port} (${tls?.cert !== undefined ? 'a default certificate, and ' : ''}instances' own certificates by SNI)`);
      } catch (err) {
        if (!config.proxyOptional) throw err;
        unsync();
        unsync = () => {};
        routes = undefined;
        log(`proxy: not started: ${describeError(err)} (instances are reachable at their addresses; scale to zero needs the proxy)`);
      }
    }
  } catch (err) {
    await controller.dispose();
    await store.close();
    throw err;
  }
  // Services are members of instances; their routes go to the proxy (src/services).
  const px = proxy;
  const members = config.cluster?.members;
  const services = new Services({ controller, dataDir: config.dataDir, ...(routes ? { routes } : {}), log, inFlight: (id) => px?.inFlight(id) ?? 0, ...(members ? { placement: members } : {}) });
  await services.start();
  const proxyPort = proxy?.address.port;
  const httpsPort = proxy?.tlsAddress?.port;
  const domain = config.domain ?? 'localhost';
  const p = proxy;
  const metrics: MetricsSources = { controller, ...(p ? { proxyStats: () => p.stats() } : {}) };
  // The proxy's URL when there is one: that is where scale to zero works.
  const urlFor = (rec: InstanceRecord): string | undefined => {
    const http = rec.spec.service.http;
    if (proxyPort === undefined || http === undefined) return undefined;
    const host = http.hostname.endsWith(`.${DEFAULT_DOMAIN}`) ? `${routeName(http.hostname)}.${domain}` : http.hostname;
    // An instance with a certificate of its own, or that redirects plain HTTP, is shown at its HTTPS address.
    if (httpsPort !== undefined && (http.tls !== undefined || http.plain === 'redirect')) return `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}`;
    return `http://${host}:${proxyPort}`;
  };
  const handler = createApiHandler({
    // Quota, addresses, disk and RAM are checked before the controller makes anything (src/limits).
    controller: (config.cluster?.api ?? ((c: ApiController) => c))(
      withLimits(controller, {
        dataDir: config.dataDir,
        poolSize: parsePool(config.network?.pool ?? process.env.FLICK_NET_POOL).size,
        ...(config.maxInstances !== undefined ? { maxInstances: config.maxInstances } : {}),
      }),
    ),
    images: config.images,
    ...(p ? { proxyStats: () => p.stats(), inFlight: (id: string) => p.inFlight(id) } : {}),
    urlFor,
    serviceOf: (id) => services.serviceOf(id),
  });
  let closing: Promise<void> | undefined;
  return {
    controller,
    handler,
    volumesHandler: createVolumesHandler({ volumes, hasProcess: (id) => controller.list().some((r) => r.id === id && r.status.pid !== null) }),
    servicesHandler: createServicesHandler({ services, urlFor: (name) => (proxyPort !== undefined ? `http://${name}.${domain}:${proxyPort}` : undefined) }),
    services,
    proxy,
    routes,
    metrics,
    view: (rec) => instanceView(rec, urlFor(rec), services.serviceOf(rec.id), controller.lastWake(rec.id)),
    close() {
      closing ??= (async () => {
        services.dispose();
        unsync();
        await proxy?.close();
        await controller.dispose();
        await store.close();
      })();
      return closing;
    },
  };
}
