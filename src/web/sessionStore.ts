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

  override get(sid: string, cb: (err: unknown, session?: session.SessionData | null) => void): void {
    try {
      const row = this.db.prepare('SELECT data, expires_at AS expiresAt FROM sessions WHERE sid = ?').get(key(sid)) as { data: string; expiresAt: number } | undefined;
      if (!row || row.expiresAt <= Date.now()) return cb(null, null);
      cb(null, JSON.parse(row.data) as session.SessionData);
    } catch (e) {
      cb(e);
    }
  }

  override set(sid: string, sess: session.SessionData, cb?: (err?: unknown) => void): void {
    try {
      this.db
        .prepare(
          `INSERT INTO sessions (sid, user_id, data, expires_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (sid) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, expires_at = excluded.expires_at`,
        )
        .run(key(sid), sess.userId ?? null, JSON.stringify(sess), this.expiry(sess));
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
