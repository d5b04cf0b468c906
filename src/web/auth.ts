/**
 * Signing in and what a request may do:
 *  - POST /api/login checks the password (bcrypt), starts a fresh session (new id: no fixation)
 *    holding the user id and a CSRF synchronizer token, and answers the token;
 *  - every /api request after that loads the user from the database (a removed user or a role
 *    change takes effect at once);
 *  - every state-changing request must send the token back in X-CSRF-Token (compared in constant
 *    time); the login itself is exempt, but must be JSON, which a cross-site form cannot send;
 *  - admin actions need the admin role;
 *  - failed sign-ins are rate limited per client address.
 * Denials and sign-ins land in the audit log.
 */
import crypto from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { SessionData } from 'express-session';
import rateLimit, { type RateLimitInfo } from 'express-rate-limit';
import type { Accounts, User } from './accounts';
import type { AuditLog, AuditOutcome } from './audit';
import type { StillSignedIn } from './live';
import { verifyPassword } from './passwords';
import type { SqliteSessionStore } from './sessionStore';

export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Requests the page makes by itself (live-update refreshes) send this header: they do not keep a session alive. */
export const BACKGROUND_HEADER = 'x-sonogate-background';
/** A session ends this long after sign-in, however active. */
export const MAX_SESSION_MS = 12 * 3600_000;

export interface AuthOptions {
  accounts: Accounts;
  audit: AuditLog;
  loginRateLimit: { max: number; windowSeconds: number };
  /** a session ends after this long without a request from the user */
  idleMs: number;
}

export function currentUser(res: Response): User | undefined {
  return res.locals.user as User | undefined;
}

/** Writes an audit entry for this request (user, address and request id filled in). */
export function auditRequest(
  audit: AuditLog,
  req: Request,
  res: Response,
  action: string,
  outcome: AuditOutcome,
  about: { studyUid?: string | null; target?: string | null; detail?: unknown; username?: string | null } = {},
): void {
  const user = currentUser(res);
  try {
    audit.add({
      username: about.username ?? user?.username ?? null,
      role: user?.role ?? null,
      action,
      outcome,
      studyUid: about.studyUid ?? null,
      target: about.target ?? null,
      ip: req.ip ?? null,
      requestId: req.id,
      detail: about.detail,
    });
  } catch (e) {
    req.log.error({ err: (e as Error).message, action }, 'could not write the audit log');
  }
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

export function createAuth(opts: AuthOptions) {
  const { accounts, audit } = opts;

  /**
   * A limit on failed attempts (only failures count: people who type their password right are
   * never locked out). A refusal is audited once per key and window, so a client hammering the
   * endpoint cannot grow the audit log.
   */
  const failureLimiter = (action: string, message: string, about: (res: Response) => { target?: string | null }, keyGenerator?: (req: Request, res: Response) => string) =>
    rateLimit({
      windowMs: opts.loginRateLimit.windowSeconds * 1000,
      limit: opts.loginRateLimit.max,
      skipSuccessfulRequests: true,
      standardHeaders: 'draft-7',
      legacyHeaders: false,
      ...(keyGenerator ? { keyGenerator } : {}),
      handler: (req, res) => {
        const info = (req as Request & { rateLimit?: RateLimitInfo }).rateLimit;
        if (!info || info.used === info.limit + 1) auditRequest(audit, req, res, action, 'denied', { ...about(res), detail: { why: 'rate limited' } });
        res.status(429).json({ error: 'too_many_attempts', message });
      },
    });

  // failed sign-ins, per client address
  const loginLimiter = failureLimiter('login', 'too many failed sign-ins from this address; try again later', () => ({}));

  /**
   * The same limit on proving one's current password (changing one's own password): a stolen
   * session must not be able to guess it. Counted per user, wherever the requests come from.
   */
  const currentPasswordLimiter = failureLimiter(
    'user.own_password',
    'too many wrong current passwords; try again later',
    (res) => ({ target: currentUser(res)?.username }),
    (_req, res) => `user:${currentUser(res)?.id ?? 'none'}`,
  );

  const login: RequestHandler[] = [
    loginLimiter,
    async (req: Request, res: Response) => {
      if (!req.is('application/json')) {
        res.status(415).json({ error: 'unsupported_media_type', message: 'send {"username","password"} as application/json' });
        return;
      }
      const { username, password } = (req.body ?? {}) as { username?: unknown; password?: unknown };
      if (typeof username !== 'string' || typeof password !== 'string' || !username || !password || username.length > 64 || password.length > 200) {
        res.status(400).json({ error: 'bad_request', message: 'username and password are required' });
        return;
      }
      const cred = accounts.credentials(username);
      const ok = await verifyPassword(password, cred?.passwordHash ?? null);
      if (!ok || !cred) {
        // the name only when it is an account's: a password typed into the name field stays out of the log
        auditRequest(audit, req, res, 'login', 'denied', { username: cred?.username ?? null, detail: { why: cred ? 'wrong password' : 'unknown user name' } });
        res.status(401).json({ error: 'invalid_credentials', message: 'wrong user name or password' });
        return;
      }
      req.session.regenerate((err) => {
        if (err) {
          req.log.error({ err: err.message }, 'could not start a session');
          res.status(500).json({ error: 'internal' });
          return;
        }
        req.session.userId = cred.id;
        req.session.csrf = crypto.randomBytes(32).toString('base64url');
        req.session.signedInAt = Date.now();
        req.session.lastActiveAt = Date.now();
        req.session.fresh = true;
        req.session.save((err2) => {
          if (err2) {
            res.status(500).json({ error: 'internal' });
            return;
          }
          accounts.touchLogin(cred.id);
          res.locals.user = cred;
          res.locals.username = cred.username;
          auditRequest(audit, req, res, 'login', 'ok');
          res.json({ user: { username: cred.username, role: cred.role }, csrfToken: req.session.csrf });
        });
      });
    },
  ];

  /**
   * Loads the signed-in user (if any) into res.locals.user. The idle timeout is checked here
   * rather than left to the cookie: the open page refreshes itself on live updates, and an
   * unattended screen must still sign out.
   */
  const timedOut = (s: Partial<SessionData>, now: number) => now - (s.lastActiveAt ?? s.signedInAt ?? 0) > opts.idleMs || now - (s.signedInAt ?? 0) > MAX_SESSION_MS;

  const loadUser: RequestHandler = (req, res, next) => {
    const s = req.session;
    if (s?.userId === undefined) return next();
    const now = Date.now();
    if (timedOut(s, now)) {
      s.destroy(() => next());
      return;
    }
    const user = accounts.byId(s.userId);
    if (!user) return next();
    res.locals.user = user;
    res.locals.username = user.username;
    if (!req.get(BACKGROUND_HEADER) && !req.originalUrl.startsWith('/api/events')) s.lastActiveAt = now;
    next();
  };

  /**
   * For a response that stays open (the live-update stream): whether its session is still signed
   * in, read again from the store on each call (signed out, user removed, password changed, timed out).
   */
  const stillSignedIn =
    (req: Request): StillSignedIn =>
    () => {
      const s = (req.sessionStore as unknown as SqliteSessionStore).peek(req.sessionID);
      return s?.userId !== undefined && !timedOut(s, Date.now()) && accounts.byId(s.userId) !== undefined;
    };

  const requireUser: RequestHandler = (req, res, next) => {
    if (!currentUser(res)) {
      res.status(401).json({ error: 'unauthenticated', message: 'sign in first' });
      return;
    }
    next();
  };

  const requireCsrf: RequestHandler = (req, res, next) => {
    if (SAFE_METHODS.has(req.method)) return next();
    const sent = req.get(CSRF_HEADER) ?? '';
    const expected = req.session?.csrf ?? '';
    if (!expected || !sent || !sameToken(sent, expected)) {
      auditRequest(audit, req, res, `${req.method} ${req.path}`, 'denied', { detail: { why: 'missing or wrong CSRF token' } });
      res.status(403).json({ error: 'csrf', message: 'missing or wrong CSRF token (send the X-CSRF-Token header)' });
      return;
    }
    next();
  };

  /** Admin-only action; `action` names it in the audit log when refused. */
  const requireAdmin =
    (action: string): RequestHandler =>
    (req: Request, res: Response, next: NextFunction) => {
      if (currentUser(res)?.role !== 'admin') {
        auditRequest(audit, req, res, action, 'denied', { studyUid: (typeof req.params.uid === 'string' ? req.params.uid : null), detail: { why: 'admin role required' } });
        res.status(403).json({ error: 'forbidden', message: 'this needs the admin role' });
        return;
      }
      next();
    };

  const logout: RequestHandler = (req, res) => {
    auditRequest(audit, req, res, 'logout', 'ok');
    req.session.destroy(() => {
      res.clearCookie(SESSION_COOKIE, { path: '/' });
      res.status(204).end();
    });
  };

  const sessionInfo: RequestHandler = (req, res) => {
    const u = currentUser(res)!;
    res.json({ user: { username: u.username, role: u.role }, csrfToken: req.session.csrf });
  };

  return { login, loadUser, requireUser, requireCsrf, requireAdmin, logout, sessionInfo, currentPasswordLimiter, stillSignedIn };
}

export const SESSION_COOKIE = 'sonogate.sid';
