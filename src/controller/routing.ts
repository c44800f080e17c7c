// Keeps the ingress proxy's route table in step with the instances: every
// instance with a service has its routes whatever its state (a standby one must
// stay reachable, so the proxy can park its requests and wake it); routes go
// when the instance is removed. The table is the proxy's RouteTable, declared
// here by what the controller needs of it.
import type { InstanceRecord } from './state/instance-record.js';
import type { Controller } from './controller.js';
import { DEFAULT_DOMAIN } from './spec.js';

/** What an HTTP route carries besides its target: its certificate and whether plain HTTP is redirected. */
export interface HttpRoute {
  instanceId: string;
  targetPort: number;
  certificate?: { cert: string; key: string };
  plain?: 'redirect';
}

/** What routing reads of the controller (its public surface): the instances, then their creations and removals. */
export type RouteSource = Pick<Controller, 'list' | 'get' | 'on'>;

export interface RouteSink {
  setHttp(name: string, route: HttpRoute): void;
  setHttpHost(host: string, route: HttpRoute): void;
  setTcp(port: number, route: { instanceId: string; targetPort: number }): void;
  removeInstance(instanceId: string): void;
}

/** The label the proxy routes by: `web` for `web.localhost` (the proxy adds its domain). */
export function routeName(hostname: string): string {
  return hostname.split('.')[0]!;
}

/** Whether a host name is `<label>.localhost` (routed by its label under the proxy's domain) rather than a whole name of its own. */
function isDefaultDomainHost(hostname: string): boolean {
  return hostname.endsWith(`.${DEFAULT_DOMAIN}`) && !hostname.slice(0, -DEFAULT_DOMAIN.length - 1).includes('.');
}

export function applyRoutes(sink: RouteSink, rec: InstanceRecord): void {
  const http = rec.spec.service.http;
  if (http) {
    const route: HttpRoute = { instanceId: rec.id, targetPort: http.guestPort, ...(http.tls ? { certificate: http.tls } : {}), ...(http.plain ? { plain: http.plain } : {}) };
    if (isDefaultDomainHost(http.hostname)) sink.setHttp(routeName(http.hostname), route);
    else sink.setHttpHost(http.hostname, route);
  }
  for (const t of rec.spec.service.tcp) sink.setTcp(t.hostPort, { instanceId: rec.id, targetPort: t.guestPort });
}

/** Routes every stored instance now and follows creations and removals; returns the unsubscribe function. */
export function syncRoutes(controller: RouteSource, sink: RouteSink, onError: (err: unknown) => void = () => {}): () => void {
  const apply = (rec: InstanceRecord) => {
    try {
      applyRoutes(sink, rec);
    } catch (err) {
      onError(err); // e.g. a TCP port another instance already holds: that instance keeps serving
    }
  };
  for (const rec of controller.list()) apply(rec);
  const offState = controller.on('state', (e) => {
    if (e.from !== null) return; // routes depend only on the (immutable) service; set them once, at creation
    let rec: InstanceRecord;
    try {
      rec = controller.get(e.id);
    } catch {
      return; // removed in the meantime
    }
    apply(rec);
  });
  const offRemoved = controller.on('removed', (e) => sink.removeInstance(e.id));
  return () => {
    offState();
    offRemoved();
  };
}
