// The seam between the ingress proxy and whatever runs instances (flickd's
// controller). Declared here, by its consumer, in the style of Knative's
// activator: the proxy only needs "make it reachable" and "I am using it", so a
// fake is a few lines.

/** Where a running instance can be reached, valid until `asleep` aborts. */
export interface AwakeInstance {
  /** Host-side address of the instance (its veth address); the port comes from the route. */
  host: string;
  /** HTTP goes to this port at `host` instead of the route's: another host's hop listener (a service's member there). */
  port?: number;
  /**
   * Aborts when this address stops being usable: the instance is going to
   * standby (or stopping). The proxy then drops its pooled upstream sockets and
   * wakes the instance again on the next request. The controller must abort it
   * synchronously when it decides to suspend (in the same turn in which it saw
   * no request in flight), so no request can be forwarded to a suspending VM.
   */
  asleep: AbortSignal;
  /**
   * Which VM process answers at `host` (the controller uses its pid). When
   * `asleep` aborts with reason PAUSED the VM was only paused (hot standby): it
   * keeps its TCP connections, so the proxy may keep its idle pooled ones and
   * use them again when the same session is awake again.
   */
  session?: string;
  /**
   * Header fields (raw pairs) the proxy adds to every request and upgrade it
   * forwards to this address: a cluster hop's credential for the next host's
   * proxy (hop.ts). The client's own Proxy-Authorization never passes.
   */
  headers?: readonly string[];
  /**
   * Raw TCP to this instance goes through an HTTP CONNECT tunnel on `port` of
   * `host` (another host's hop listener, hop-connect.ts), naming the route's
   * target port as the host port there, with `headers` (the cluster's credential).
   */
  tunnel?: { port: number; headers: readonly string[] };
  /**
   * Present when this call woke the instance: the proxy reports how the first
   * request it forwarded after the wake went (once, when that request's first
   * byte reached its client), and the waker adds it to the wake's breakdown.
   */
  reportWake?(times: ProxyWakeTimes): void;
}

/** The proxy's side of one wake, as durations (ms) on its own clock, each after the one before. */
export interface ProxyWakeTimes {
  /** From the first request parked until ensureAwake resolved. */
  waitMs: number;
  /** From then until the first parked request was written upstream. */
  forwardMs: number;
  /** From then until the instance's response to it began. */
  upstreamMs: number;
  /** From then until the proxy wrote its first byte to the client. */
  clientMs: number;
}

/** `asleep`'s abort reason when the instance's VM is paused with its connections, not ended. */
export const PAUSED = 'paused';

export interface Waker {
  /**
   * Where the instance can be reached now, waking it if it is in standby.
   * Resolves when the app is ready. The proxy calls it once per burst (one call
   * in flight per instance) and aborts `signal` when its wake timeout passes or
   * it shuts down.
   */
  ensureAwake(instanceId: string, signal: AbortSignal): Promise<AwakeInstance>;
  /**
   * A request (or an upgraded connection, or a raw TCP exchange) started or
   * ended. Started is called when it arrives, before any wake, so parked
   * requests count as in flight; every started gets exactly one finished, on
   * every path (answered, rejected, client gone).
   */
  requestStarted(instanceId: string): void;
  requestFinished(instanceId: string): void;
  /**
   * Whether the instance is running now (no wake needed), for balancing a
   * service over its members before the proxy has sent any of them a request.
   * Without it, only members the proxy has already reached count as awake.
   */
  isAwake?(instanceId: string): boolean;
  /** A client connection that has carried traffic for this instance opened or closed (policy `on` counts these). */
  connectionOpened?(instanceId: string): void;
  connectionClosed?(instanceId: string): void;
}
