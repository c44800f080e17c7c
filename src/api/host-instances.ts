// Everything flickd needs to run instances, composed in one place: the state
// store, the QEMU driver, per-VM networks, the controller (reconciled with what
// a previous flickd left running), the /v1 handler, and optionally the ingress
// proxy with the controller as its Waker. flickd's main calls this once.
import path from 'node:path';
import { Controller } from '../controller/controller.js';
import { syncRoutes } from '../controller/routing.js';
import type { ImageResolver, ImageRunConfig } from '../controller/seams.js';
import { describeError } from '../errors.js';
import { NamespaceNetwork } from '../network/namespace-network.js';
import { createProxy, type Proxy } from '../proxy/proxy.js';
import { RouteTable } from '../proxy/routes.js';
import type { ImageStore } from '../registry/image-store.js';
import { InstanceStore } from '../store/instance-store.js';
import { QemuDriver } from '../vmm/qemu/qemu-driver.js';
import { createApiHandler, type ApiHandler } from './handler.js';

export interface HostInstancesConfig {
  dataDir: string;
  images: ImageStore;
  log: (line: string) => void;
  /** Where the ingress proxy listens (HTTP by Host name); none: no proxy. */
  proxyListen?: { host: string; port: number };
  /** Host names are `<name>.<domain>`. */
  domain?: string;
  /**
   * Namespace prefix and address pool of the instance networks. Default: env
   * FLICK_NETNS_PREFIX / FLICK_NET_POOL, else src/network's defaults. Two
   * flickds on one machine (tests) need different ones: each sweeps its prefix.
   */
  network?: { prefix?: string; pool?: string };
}

export interface HostInstances {
  controller: Controller;
  /** Mount under /v1/. */
  handler: ApiHandler;
  proxy: Proxy | undefined;
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
      };
      return { digest: img.digest, config, paths: img.paths };
    },
  };
}

export async function startHostInstances(config: HostInstancesConfig): Promise<HostInstances> {
  const { log } = config;
  const store = InstanceStore.open(path.join(config.dataDir, 'state.db'));
  const controller = new Controller({
    store,
    driver: new QemuDriver({ log }),
    images: imageResolver(config.images),
    network: new NamespaceNetwork({
      ...(config.network?.prefix ?? process.env.FLICK_NETNS_PREFIX ? { prefix: config.network?.prefix ?? process.env.FLICK_NETNS_PREFIX } : {}),
      ...(config.network?.pool ?? process.env.FLICK_NET_POOL ? { pool: config.network?.pool ?? process.env.FLICK_NET_POOL } : {}),
    }),
    dataDir: config.dataDir,
    logger: { info: log, warn: log },
  });
  let proxy: Proxy | undefined;
  let unsync = () => {};
  try {
    const { adopted, died } = await controller.reconcile();
    if (adopted.length + died.length > 0) log(`instances: re-adopted ${adopted.length} running VM(s); ${died.length} had died while flickd was down`);
    if (config.proxyListen) {
      const routes = new RouteTable();
      unsync = syncRoutes(controller, routes, (err) => log(`proxy route: ${describeError(err)}`));
      proxy = await createProxy({ routes, waker: controller.scaleToZero, listen: config.proxyListen, ...(config.domain ? { domain: config.domain } : {}) });
      log(`proxy: listening on http://${proxy.address.host}:${proxy.address.port} (host names <name>.${config.domain ?? 'localhost'})`);
    }
  } catch (err) {
    await controller.dispose();
    store.close();
    throw err;
  }
  const proxyPort = proxy?.address.port;
  const domain = config.domain ?? 'localhost';
  const handler = createApiHandler({
    controller,
    images: config.images,
    // The proxy's URL when there is one: that is where scale to zero works.
    urlFor: (rec) => (proxyPort !== undefined && rec.service.http ? `http://${rec.name}.${domain}:${proxyPort}` : undefined),
  });
  let closing: Promise<void> | undefined;
  return {
    controller,
    handler,
    proxy,
    close() {
      closing ??= (async () => {
        unsync();
        await proxy?.close();
        await controller.dispose();
        store.close();
      })();
      return closing;
    },
  };
}
