/**
 * The JSON API under /api (the dashboard's pages are a static client of it). Every route but
 * /api/login needs a session; every state-changing one needs the CSRF token; admin actions need
 * the admin role. Each action is written to the audit log with its outcome.
 */
import fs from 'node:fs';
import path from 'node:path';
import express, { Request, Response, Router } from 'express';
import { maskSecrets } from '../config/load';
import { BYTES_PER_GB, type Config } from '../config/schema';
import type { StudyStatus } from '../store/rows';
import { RoutingError, type RoutingSettings } from '../study/routingSettings';
import type { EchoResult } from '../dispatch/destination';
import type { Accounts } from './accounts';
import type { AuditLog } from './audit';
import { auditRequest, createAuth, currentUser } from './auth';
import { DashboardQueries, LABELS, STUDY_STATUSES, parseUtcOffset } from './dashboardQueries';
import { DEFAULT_MAX_FRAMES } from '../dicom/limits';
import { PngCache } from './images';
import type { PreviewRenderer } from './previewRenderer';
import { userRoutes } from './usersApi';
import type { LiveFeed } from './live';
import type { ActionResult, DashboardGateway, StudyActions } from './studyActions';

/** What the dashboard shows about the model in use. */
export interface ModelSummary {
  name: string;
  version: string;
  /** inference provider in use: 'cpu' or 'cuda' */
  provider: string;
  /** model.json */
  specPath: string;
  spec: Record<string, unknown>;
}

export interface ApiDeps {
  config: Config;
  gateway: DashboardGateway;
  model: ModelSummary;
  accounts: Accounts;
  audit: AuditLog;
  queries: DashboardQueries;
  actions: StudyActions;
  live: LiveFeed;
  routing: RoutingSettings;
  /** renders previews in a worker process */
  previews: PreviewRenderer;
  /** where the session secret came from (shown on the Config page, never the secret) */
  sessionSecretSource: 'environment' | 'database';
}

/** a study page open this long (refreshing itself) is one audited view */
const VIEW_AUDIT_MS = 10 * 60_000;
const HTTP_STATUS: Record<string, number> = { not_found: 404, conflict: 409, bad_request: 400 };

/** A route parameter as one string (express 5 types allow string[] for wildcard parameters). */
function param(req: Request, name: string): string {
  const v = req.params[name];
  return Array.isArray(v) ? v.join('/') : String(v ?? '');
}

function intParam(v: unknown, def: number, min: number, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : def;
  return Math.min(max, Math.max(min, n));
}

export function apiRouter(deps: ApiDeps): Router {
  const { config, gateway, model, accounts, audit, queries, actions, live, routing, previews } = deps;
  const auth = createAuth({ accounts, audit, loginRateLimit: config.http.loginRateLimit, idleMs: config.http.sessionIdleMinutes * 60_000 });
  const pngs = new PngCache((file, width, frame) => previews.render(file, width, frame));
  const echoes = new Map<string, EchoResult & { at: number; by: string }>();
  const echoing = new Map<string, Promise<EchoResult>>();
  const r = express.Router();

  r.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  r.use(express.json({ limit: '16kb' }));
  r.use(auth.loadUser);

  r.post('/login', ...auth.login);
  r.use(auth.requireUser);
  r.use(auth.requireCsrf);

  const user = (res: Response) => currentUser(res)!.username;

  /** Answers an action's result and writes the audit entry. */
  const answer = <T extends object>(req: Request, res: Response, action: string, result: ActionResult<T>, about: { studyUid?: string | null; target?: string | null } = {}) => {
    if (result.ok) {
      const { ok: _ok, ...detail } = result;
      auditRequest(audit, req, res, action, 'ok', { ...about, detail });
      res.json(result);
    } else {
      auditRequest(audit, req, res, action, 'failed', { ...about, detail: { code: result.code, message: result.message } });
      res.status(HTTP_STATUS[result.code] ?? 400).json({ error: result.code, message: result.message });
    }
  };

  r.get('/session', auth.sessionInfo);
  r.post('/logout', auth.logout);

  /**
   * Lists that show patients' names and IDs are audited like an opened study: which list (and
   * filter or page) who saw, with how many patients on it; once per user and list per VIEW_AUDIT_MS.
   */
  const auditList = (req: Request, res: Response, action: string, patients: number) => {
    const target = req.originalUrl.replace(/^\/api/, '');
    if (!audit.hasRecentTarget(currentUser(res)!.username, action, target, VIEW_AUDIT_MS)) auditRequest(audit, req, res, action, 'ok', { target, detail: { patients } });
  };

  r.get('/overview', (req, res) => {
    // "today" is the browser's day when the page sends its offset from UTC (tz, minutes)
    const overview = queries.overview(Date.now(), parseUtcOffset(req.query.tz));
    auditList(req, res, 'study.list', overview.recent.length);
    res.json({
      ...overview,
      model: { name: model.name, version: model.version, provider: model.provider },
      // what housekeeping.maxStorageGB bounds, and the cap (0: none)
      storage: { bytes: gateway.store.storageBytes().total, capBytes: Math.round(config.housekeeping.maxStorageGB * BYTES_PER_GB) },
      gateway: {
        aeTitle: config.dicom.aeTitle,
        dicomPort: config.dicom.tls && !config.dicom.tls.plain ? null : config.dicom.port,
        dicomTlsPort: config.dicom.tls?.port ?? null,
        destinations: config.destinations.map((d) => d.name),
      },
    });
  });

  r.get('/studies', (req, res) => {
    const q = req.query;
    const status = typeof q.status === 'string' && (STUDY_STATUSES as readonly string[]).includes(q.status) ? (q.status as StudyStatus) : undefined;
    const label = typeof q.label === 'string' && ([...LABELS, 'none'] as string[]).includes(q.label) ? q.label : undefined;
    const limit = intParam(q.limit, 50, 1, 200);
    const offset = intParam(q.offset, 0, 0, 1e9);
    // the browser's offset from UTC, so that From / To are the days the page shows (±14 h)
    const list = queries.listStudies({ status, label, from: q.from as string | undefined, to: q.to as string | undefined, utcOffsetMinutes: parseUtcOffset(q.tz), limit, offset });
    auditList(req, res, 'study.list', list.items.length);
    res.json({ ...list, limit, offset });
  });

  /**
   * Who opened which patient's study (patient data on screen: the study page, or its images,
   * whose pixels may carry burned-in demographics) is audited, once per user and study per VIEW_AUDIT_MS.
   */
  const auditView = (req: Request, res: Response, uid: string) => {
    if (!audit.hasRecent(currentUser(res)!.username, 'study.view', uid, VIEW_AUDIT_MS)) auditRequest(audit, req, res, 'study.view', 'ok', { studyUid: uid });
  };

  r.get('/studies/:uid', (req, res) => {
    const uid = param(req, 'uid');
    const d = queries.study(uid);
    if (!d) {
      // a study removed on purpose says so, and where its trace is
      const gone = audit.removal(uid);
      const how =
        gone?.action === 'study.delete'
          ? `deleted by ${gone.username ?? 'an admin'}`
          : gone?.action === 'housekeeping.storage_cap'
            ? 'removed by the storage cap (housekeeping.maxStorageGB)'
            : 'removed by result retention (housekeeping.resultRetentionDays)';
      const message = gone ? `this study was ${how} on ${new Date(gone.at).toISOString()}; the audit log keeps the record` : 'no such study';
      res.status(404).json({ error: 'not_found', message });
      return;
    }
    auditView(req, res, uid);
    const viewer = currentUser(res)!;
    res.json({ ...d, audit: audit.list({ studyUid: uid, limit: 50 }).items, canAct: viewer.role === 'admin' });
  });

  const sendPng = async (res: Response, file: string | null, width: number, frame = 0) => {
    if (!file || !fs.existsSync(file)) {
      res.status(404).json({ error: 'not_found', message: 'the image file is gone (retention or deletion)' });
      return;
    }
    try {
      const png = await pngs.get(file, width, frame);
      // patient images stay out of the browser's cache like the rest of /api (no-store): on a shared
      // workstation nothing of the patient outlives the sign-out (PngCache keeps re-renders cheap)
      res.type('png').send(png);
    } catch (e) {
      res.status(422).json({ error: 'cannot_render', message: (e as Error).message });
    }
  };

  r.get('/studies/:uid/instances/:sop/image.png', async (req, res) => {
    const f = queries.instanceFile(param(req, 'uid'), param(req, 'sop'));
    if (f) auditView(req, res, param(req, 'uid'));
    // ?frame= counts from 1, as DICOM frame numbers do
    await sendPng(res, f && !f.purgedAt ? f.path : null, intParam(req.query.w, 192, 32, 2048), intParam(req.query.frame, 1, 1, DEFAULT_MAX_FRAMES) - 1);
  });

  r.get('/studies/:uid/outputs/:sop/image.png', async (req, res) => {
    const f = queries.outputFile(param(req, 'uid'), param(req, 'sop'));
    if (f) auditView(req, res, param(req, 'uid'));
    await sendPng(res, f && f.kind === 'overlay' ? f.path : null, intParam(req.query.w, 1024, 32, 4096));
  });

  r.post('/studies/:uid/rerun', auth.requireAdmin('study.rerun'), (req, res) => {
    answer(req, res, 'study.rerun', actions.rerun(param(req, 'uid'), user(res)), { studyUid: param(req, 'uid') });
  });

  r.post('/studies/:uid/resend', auth.requireAdmin('study.resend'), (req, res) => {
    const destination = typeof req.body?.destination === 'string' ? req.body.destination : undefined;
    answer(req, res, 'study.resend', actions.resend(param(req, 'uid'), user(res), destination), { studyUid: param(req, 'uid'), target: destination ?? null });
  });

  r.post('/studies/:uid/delete', auth.requireAdmin('study.delete'), async (req, res) => {
    const result = await actions.delete(param(req, 'uid'));
    answer(req, res, 'study.delete', result, { studyUid: param(req, 'uid') });
  });

  r.get('/failures', (req, res) => {
    const failures = queries.failures();
    auditList(req, res, 'study.list', failures.studies.length);
    res.json(failures);
  });

  r.post('/failures/studies/:uid/discard', auth.requireAdmin('failure.discard'), (req, res) => {
    answer(req, res, 'failure.discard', actions.discardFailure('study', param(req, 'uid'), user(res)), { studyUid: param(req, 'uid') });
  });

  r.post('/failures/instances/:sop/discard', auth.requireAdmin('failure.discard'), (req, res) => {
    answer(req, res, 'failure.discard', actions.discardFailure('instance', param(req, 'sop'), user(res)), { target: `instance ${param(req, 'sop')}` });
  });

  const sendId = (req: Request) => (/^\d+$/.test(param(req, 'id')) ? Number(param(req, 'id')) : -1);

  r.post('/sends/retry', auth.requireAdmin('send.retry_all'), (req, res) => {
    const destination = typeof req.body?.destination === 'string' ? req.body.destination : undefined;
    answer(req, res, 'send.retry_all', actions.retryAllSends(user(res), destination), { target: destination ?? null });
  });

  r.post('/sends/:id/retry', auth.requireAdmin('send.retry'), (req, res) => {
    const result = actions.retrySend(sendId(req), user(res));
    answer(req, res, 'send.retry', result, { studyUid: result.ok ? result.studyUid : null, target: `send ${param(req, 'id')}` });
  });

  r.post('/sends/:id/discard', auth.requireAdmin('send.discard'), (req, res) => {
    const result = actions.discardSend(sendId(req), user(res));
    answer(req, res, 'send.discard', result, { studyUid: result.ok ? result.studyUid : null, target: `send ${param(req, 'id')}` });
  });

  r.get('/destinations', (_req, res) => {
    const list = queries.destinations(config.destinations).map((d) => ({ ...d, lastEcho: echoes.get(d.name) ?? null }));
    res.json({ items: list, canAct: currentUser(res)!.role === 'admin' });
  });

  // a connection test changes nothing: viewers may run it too
  r.post('/destinations/:name/echo', async (req, res) => {
    const name = param(req, 'name');
    const d = gateway.destination(name);
    if (!d) {
      auditRequest(audit, req, res, 'destination.echo', 'failed', { target: name, detail: { why: 'not a configured destination' } });
      res.status(404).json({ error: 'not_found', message: 'not a configured destination' });
      return;
    }
    // one C-ECHO per destination at a time: a request made while one is under way gets its
    // answer, so no number of clicks (from viewers, too) opens more associations to the PACS
    let pending = echoing.get(name);
    if (!pending) {
      pending = d.echo().finally(() => echoing.delete(name));
      echoing.set(name, pending);
    }
    const result = await pending;
    echoes.set(name, { ...result, at: Date.now(), by: user(res) });
    auditRequest(audit, req, res, 'destination.echo', result.ok ? 'ok' : 'failed', { target: name, detail: result });
    res.json(result);
  });

  r.get('/model', (_req, res) => {
    const cardPath = path.join(path.dirname(model.specPath), 'MODEL_CARD.md');
    let card: string | null = null;
    try {
      card = fs.readFileSync(cardPath, 'utf8');
    } catch {
      /* shown as missing */
    }
    const { metrics, training, input, outputs } = model.spec as Record<string, unknown>;
    res.json({ name: model.name, version: model.version, provider: model.provider, metrics: metrics ?? null, training: training ?? null, input, outputs, card, cardFile: path.basename(cardPath) });
  });

  r.get('/audit', (req, res) => {
    const limit = intParam(req.query.limit, 50, 1, 500);
    const offset = intParam(req.query.offset, 0, 0, 1e9);
    const studyUid = typeof req.query.study === 'string' ? req.query.study : undefined;
    res.json({ ...audit.list({ limit, offset, studyUid }), limit, offset });
  });

  r.get('/config', (_req, res) => {
    res.json({ config: maskSecrets(config), sessionSecret: deps.sessionSecretSource === 'environment' ? 'from SONOGATE_SESSION_SECRET (hidden)' : 'generated, kept in the database (hidden)' });
  });

  // --- routing: analyse rules and destinations on/off; overrides of the config file kept in the database
  r.get('/routing', (_req, res) => {
    res.json({ ...routing.view(), canEdit: currentUser(res)!.role === 'admin' });
  });

  r.put('/routing', auth.requireAdmin('routing.update'), (req, res) => {
    let changes;
    try {
      changes = routing.update(req.body ?? {}, user(res));
    } catch (e) {
      if (!(e instanceof RoutingError)) throw e;
      auditRequest(audit, req, res, 'routing.update', 'failed', { target: 'routing', detail: { message: e.message } });
      res.status(400).json({ error: 'bad_request', message: e.message });
      return;
    }
    auditRequest(audit, req, res, 'routing.update', 'ok', { target: 'routing', detail: { changes } });
    if (Object.keys(changes).length) req.log.info({ keys: Object.keys(changes), user: user(res) }, 'routing changed on the dashboard');
    res.json({ ok: true, changes, ...routing.view(), canEdit: true });
  });

  r.post('/routing/revert', auth.requireAdmin('routing.revert'), (req, res) => {
    const raw = req.body?.keys;
    if (raw !== undefined && !(Array.isArray(raw) && raw.every((k) => typeof k === 'string'))) {
      res.status(400).json({ error: 'bad_request', message: 'keys: expected a list of keys such as "routing.analyze.bodyParts" (omitted = all)' });
      return;
    }
    const changes = routing.revert(raw as string[] | undefined);
    auditRequest(audit, req, res, 'routing.revert', 'ok', { target: 'routing', detail: { keys: raw ?? 'all', changes } });
    if (Object.keys(changes).length) req.log.info({ keys: Object.keys(changes), user: user(res) }, 'routing reverted to the config file');
    res.json({ ok: true, changes, ...routing.view(), canEdit: true });
  });

  userRoutes(r, { accounts, audit, auth });

  r.get('/events', (req, res) => live.handler(req, res, auth.stillSignedIn(req)));

  r.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such API route' });
  });
  return r;
}
