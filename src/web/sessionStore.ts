/**
 * express-session storage in the gateway's SQLite database (sessions table, migration 2), so a
 * restart keeps people signed in and `sonogate users passwd/remove` can end a user's sessions.
 * Rows are keyed by a SHA-256 of the session id: a copy of the database does not hand out
 * live session cookies.
 */
import crypto from 'node:crypto';
import type Database from 'better-sqlite3';
import session from 'express-session';

declare module 'express-session' {
  interface SessionData {
    userId: number;
    /** synchronizer token: every state-changing request must send it back in X-CSRF-Token */
    csrf: string;
    signedInAt: number;
    /** last request the user made (live-update refreshes do not count) */
    lastActiveAt: number;
    /**
     * Set on the sign-in request only: the one save that may create the session's row. Every
     * later save only updates it, so a request still running when the row was deleted (logout, a
     * password reset, a removed user) cannot bring the session back when it ends. Not stored.
     */
    fresh?: boolean;
  }
}

const key = (sid: string) => crypto.createHash('sha256').update(sid).digest('hex');

export class SqliteSessionStore extends session.Store {
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(
    private readonly db: Database.Database,
    /** lifetime of a row whose cookie carries no expiry */
    private readonly defaultTtlMs: number,
    pruneEveryMs = 10 * 60_000,
  ) {
    super();
    this.pruneTimer = setInterval(() => this.prune(), pruneEveryMs);
    this.pruneTimer.unref();
  }

  close(): void {
    clearInterval(this.pruneTimer);
  }

  /** Deletes expired rows. */
  prune(now = Date.now()): number {
    if (!this.db.open) return 0;
    return this.db.prepare('DELETE FROM sessions WHERE expires_at <= ?').run(now).changes;
  }

  private expiry(sess: session.SessionData): number {
    const e = sess.cookie?.expires;
    return e ? new Date(e).getTime() : Date.now() + this.defaultTtlMs;
  }

  /** The stored session now (null when gone or expired), read synchronously. */
  peek(sid: string): session.SessionData | null {
    const row = this.db.prepare('SELECT data, expires_at AS expiresAt FROM sessions WHERE sid = ?').get(key(sid)) as { data: string; expiresAt: number } | undefined;
    return !row || row.expiresAt <= Date.now() ? null : (JSON.parse(row.data) as session.SessionData);
  }

  override get(sid: string, cb: (err: unknown, session?: session.SessionData | null) => void): void {
    try {
      cb(null, this.peek(sid));
    } catch (e) {
      cb(e);
    }
  }

  override set(sid: string, sess: session.SessionData, cb?: (err?: unknown) => void): void {
    try {
      const { fresh, ...data } = sess;
      const values = [sess.userId ?? null, JSON.stringify(data), this.expiry(sess), key(sid)];
      if (fresh) {
        this.db
          .prepare(
            `INSERT INTO sessions (user_id, data, expires_at, sid) VALUES (?, ?, ?, ?)
             ON CONFLICT (sid) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, expires_at = excluded.expires_at`,
          )
          .run(...values);
      } else {
        // a row deleted meanwhile stays deleted
        this.db.prepare('UPDATE sessions SET user_id = ?, data = ?, expires_at = ? WHERE sid = ?').run(...values);
      }
      cb?.();
    } catch (e) {
      cb?.(e);
    }
  }

  override touch(sid: string, sess: session.SessionData, cb?: () => void): void {
    try {
      this.db.prepare('UPDATE sessions SET expires_at = ? WHERE sid = ?').run(this.expiry(sess), key(sid));
    } catch {
      /* the next request's get() decides */
    }
    cb?.();
  }

  override destroy(sid: string, cb?: (err?: unknown) => void): void {
    try {
      this.db.prepare('DELETE FROM sessions WHERE sid = ?').run(key(sid));
      cb?.();
    } catch (e) {
      cb?.(e);
    }
  }

  override length(cb: (err: unknown, length?: number) => void): void {
    try {
      cb(null, (this.db.prepare('SELECT COUNT(*) AS n FROM sessions WHERE expires_at > ?').get(Date.now()) as { n: number }).n);
    } catch (e) {
      cb(e);
    }
  }

  override clear(cb?: (err?: unknown) => void): void {
    try {
      this.db.prepare('DELETE FROM sessions').run();
      cb?.();
    } catch (e) {
      cb?.(e);
    }
  }
}
