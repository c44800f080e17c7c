// The web console as flickd mounts it: sessions, the live feed on the
// controller's events, the built front end and the HTTP handler, composed once.
// flickd's main adds `route` to its listener and calls `dispose` at shutdown.
import type { DaemonRoute } from '../daemon/server.js';
import type { TokenAuth } from '../daemon/auth.js';
import type { InstanceRecord } from '../controller/state/instance-record.js';
import { ConsoleAssets } from './assets.js';
import { ConsoleFeed, type FeedController } from './feed.js';
import { createConsoleHandler } from './handler.js';
import type { ConsoleImageSources } from './images.js';
import { SessionStore } from './session.js';

export interface WebConsoleConfig {
  controller: FeedController;
  /** The instance as the API shows it. */
  view(rec: InstanceRecord): Record<string, unknown>;
  api: DaemonRoute['handler'];
  images: ConsoleImageSources;
  auth: TokenAuth;
  /** Where the built front end is (default web/dist). */
  assetsDir?: string;
}

export interface WebConsole {
  route: DaemonRoute;
  feed: ConsoleFeed;
  sessions: SessionStore;
  dispose(): void;
}

export function createWebConsole(config: WebConsoleConfig): WebConsole {
  const sessions = new SessionStore();
  const feed = new ConsoleFeed({ controller: config.controller, view: config.view });
  const assets = new ConsoleAssets(config.assetsDir);
  const handler = createConsoleHandler({
    sessions,
    feed,
    assets,
    images: config.images,
    api: config.api,
    identify: (req) => config.auth.identify(req),
    verifyToken: (t) => config.auth.verify(t),
  });
  // The console checks its callers itself (a session cookie or the token), so the daemon lets every request reach it.
  return { route: { prefix: '/console/', handler, access: () => true }, feed, sessions, dispose: () => feed.dispose() };
}
