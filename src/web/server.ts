/**
 * The dashboard's HTTP server (express), composed in one place:
 *
 *   request id + log line ─▶ security headers (helmet, strict CSP) ─▶ /healthz /readyz /metrics (no login)
 *   ─▶ session (SQLite store, httpOnly SameSite=Strict cookie) ─▶ /api (login, CSRF, roles, audit)
 *   ─▶ static pages (src/web/static: HTML + one JS file + CSS, no inline script)
 *
 * It reads and steers the gateway through its store and its small control surface
 * (DashboardGateway); it never touches the DICOM side directly.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express, { NextFunction, Request, Response } from 'express';
import session from 'express-session';
import helmet from 'helmet';
import { listenError } from '../config/listenError';
import { PACKAGE_ROOT } from '../config/load';
import { BYTES_PER_GB, type Config } from '../config/schema';
import type { Logger } from '../log';
import { RoutingSettings } from '../study/routingSettings';
import { Accounts, sessionSecrets } from './accounts';
import { apiRouter, ModelSummary } from './api';
import { PreviewRenderer } from './previewRenderer';
import { AuditLog } from './audit';
import { SESSION_COOKIE } from './auth';
import { DashboardQueries } from './dashboardQueries';
import { LiveFeed } from './live';
import { PipelineMetrics } from './metrics';
import { hostCheck } from './hostCheck';
import { requestLog } from './requestLog';
import { SqliteSessionStore } from './sessionStore';
import { DashboardGateway, StudyActions } from './studyActions';

/** The static client (not compiled: served as is from the source tree, next to dist/). */
export const STATIC_DIR = path.join(PACKAGE_ROOT, 'src', 'web', 'static');

export interface WebServerOptions {
  config: Config;
  gateway: DashboardGateway;
  model: ModelSummary;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** inference workers retired for their memory since the start (for /metrics) */
  workersRecycled?: () => number;
  /** the last storage cap run could not meet housekeeping.maxStorageGB (for /metrics) */
  storageCapUnmet?: () => boolean;
}

export interface WebServer {
  readonly port: number;
  readonly url: string;
  readonly metrics: PipelineMetrics;
  readonly live: LiveFeed;
  readonly audit: AuditLog;
  /** stops accepting, ends live streams, waits for requests in progress */
  close(): Promise<void>;
}

/** The dashboard's secrets: read once at start, never left for a child process to inherit. */
const SECRET_VARIABLES = ['SONOGATE_ADMIN_PASSWORD', 'SONOGATE_SESSION_SECRET'] as const;

/**
 * Moves the dashboard's secrets (and the first admin's name) out of `env` into a new object for
 * startWebServer. `sonogate serve` calls it before it starts any worker process, which would
 * otherwise inherit them.
 */
export function takeDashboardSecrets(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const taken: NodeJS.ProcessEnv = { SONOGATE_ADMIN_USER: env.SONOGATE_ADMIN_USER };
  for (const k of SECRET_VARIABLES) {
    taken[k] = env[k];
    delete env[k];
  }
  return taken;
}

/**
 * Creates the first admin from SONOGATE_ADMIN_PASSWORD (user SONOGATE_ADMIN_USER, default
 * "admin") when the database has no user at all; afterwards the variable is ignored. The
 * variable is removed from the environment either way, so no child process inherits it.
 */
export async function bootstrapFirstAdmin(accounts: Accounts, audit: AuditLog, env: NodeJS.ProcessEnv, logger: Logger): Promise<void> {
  const password = env.SONOGATE_ADMIN_PASSWORD;
  const username = env.SONOGATE_ADMIN_USER || 'admin';
  delete env.SONOGATE_ADMIN_PASSWORD;
  if (accounts.count() > 0) {
    if (password) logger.info('SONOGATE_ADMIN_PASSWORD ignored: users exist already');
    return;
  }
  if (!password) {
    logger.warn('no dashboard user yet: create one with `sonogate users add NAME --role admin` (or start once with SONOGATE_ADMIN_PASSWORD set)');
    return;
  }
  const u = await accounts.addFirstAdmin(username, password);
  if (u) {
    audit.add({ username: 'system', action: 'user.add', outcome: 'ok', target: u.username, detail: { role: 'admin', from: 'SONOGATE_ADMIN_PASSWORD' } });
    logger.info({ user: u.username }, 'first admin created from SONOGATE_ADMIN_PASSWORD');
  }
}

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const { config, gateway, model } = opts;
  const env = opts.env ?? process.env;
  const logger = opts.logger.child({ component: 'web' });
  const store = gateway.store;
  const accounts = new Accounts(store.db);
  const audit = new AuditLog(store.db);
  const queries = new DashboardQueries(store);
  const actions = new StudyActions(gateway, path.resolve(config.dataDir));
  // the same overrides either way: RoutingSettings reads them from the database on every call
  const routing = gateway.routing ?? new RoutingSettings(config, store.db);
  const live = new LiveFeed(queries, () => !store.isClosed, logger);
  const metrics = new PipelineMetrics(store, model, {
    associations: gateway.associations?.bind(gateway),
    workersRecycled: opts.workersRecycled,
    storageCapBytes: Math.round(config.housekeeping.maxStorageGB * BYTES_PER_GB),
    storageCapUnmet: opts.storageCapUnmet,
  });
  const previews = new PreviewRenderer();
  const sessions = new SqliteSessionStore(store.db, config.http.sessionIdleMinutes * 60_000);
  let closing = false;

  await bootstrapFirstAdmin(accounts, audit, env, logger);
  const secret = sessionSecrets(store.db, env);
  const sessionSecretSource = env.SONOGATE_SESSION_SECRET ? 'environment' : 'database';

  const app = express();
  app.set('trust proxy', config.http.trustProxy);
  app.disable('x-powered-by');
  app.use(requestLog(logger));
  app.use(hostCheck(config.http.host, config.http.allowedHosts));
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", 'data:'],
          connectSrc: ["'self'"],
          fontSrc: ["'self'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
          objectSrc: ["'none'"],
        },
      },
      // no framing at all, as frame-ancestors 'none' says, also for browsers that only know X-Frame-Options
      xFrameOptions: { action: 'deny' },
      // HTTP Strict Transport Security only means something over HTTPS; harmless otherwise
      strictTransportSecurity: config.http.secureCookie === true ? { maxAge: 31536000 } : false,
    }),
  );

  // --- no login, no patient data
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const checks: Record<string, string> = {};
    try {
      if (store.isClosed) throw new Error('closed');
      store.db.prepare('SELECT 1').get();
      checks.database = 'ok';
    } catch {
      checks.database = 'unavailable';
    }
    checks.model = `${model.name} ${model.version} on ${model.provider}`;
    checks.shutdown = closing ? 'in progress' : 'no';
    const ready = checks.database === 'ok' && !closing;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });
  app.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', metrics.contentType);
    res.send(await metrics.render());
  });

  // --- signed-in area
  app.use(
    '/api',
    session({
      name: SESSION_COOKIE,
      secret,
      store: sessions,
      resave: false,
      saveUninitialized: false,
      rolling: true,
      cookie: {
        httpOnly: true,
        sameSite: 'strict',
        secure: config.http.secureCookie,
        path: '/',
        maxAge: config.http.sessionIdleMinutes * 60_000,
      },
    }),
    apiRouter({ config, gateway, model, accounts, audit, queries, actions, live, routing, previews, sessionSecretSource }),
  );

  app.use(express.static(STATIC_DIR, { index: 'index.html', fallthrough: true, etag: true, maxAge: 0 }));
  app.use((_req, res) => {
    res.status(404).json({ error: 'not_found' });
  });
  app.use((err: Error & { status?: number; type?: string }, req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status >= 500) req.log.error({ err: err.message }, 'request failed');
    if (res.headersSent) return;
    res.status(status).json({ error: status >= 500 ? 'internal' : 'bad_request', message: status >= 500 ? 'internal error' : err.message, requestId: req.id });
  });

  const server = http.createServer(app);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError(e, 'http.host / http.port', config.http.host, config.http.port)));
    server.listen(config.http.port, config.http.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`;
  logger.info({ host: config.http.host, port }, `dashboard listening on ${url}`);

  let closed: Promise<void> | null = null;
  return {
    port,
    url,
    metrics,
    live,
    audit,
    close() {
      closed ??= (async () => {
        closing = true;
        live.close();
        sessions.close();
        await previews.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          setTimeout(() => server.closeAllConnections(), 3000).unref();
        });
        logger.info('dashboard stopped');
      })();
      return closed;
    },
  };
}
