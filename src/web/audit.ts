/**
 * The audit log: who did what to which study, when, from where, and whether it was allowed.
 * Rows are only ever added. Details hold UIDs, names of destinations and counts, never patient data.
 */
import type Database from 'better-sqlite3';

export type AuditOutcome = 'ok' | 'denied' | 'failed';

export interface AuditEntry {
  username: string | null;
  role?: string | null;
  action: string;
  outcome: AuditOutcome;
  studyUid?: string | null;
  /** what else the action was about: a send id, a destination, a user name */
  target?: string | null;
  ip?: string | null;
  requestId?: string | null;
  detail?: unknown;
}

export interface AuditRow {
  id: number;
  at: number;
  username: string | null;
  role: string | null;
  action: string;
  outcome: AuditOutcome;
  studyUid: string | null;
  target: string | null;
  ip: string | null;
  requestId: string | null;
  detail: string | null;
}

export class AuditLog {
  constructor(private readonly db: Database.Database) {}

  add(e: AuditEntry, now = Date.now()): void {
    const detail = e.detail === undefined || e.detail === null ? null : typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail);
    this.db
      .prepare('INSERT INTO audit_log (at, username, role, action, outcome, study_uid, target, ip, request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(now, e.username, e.role ?? null, e.action, e.outcome, e.studyUid ?? null, e.target ?? null, e.ip ?? null, e.requestId ?? null, detail);
  }

  /**
   * Whether `username` already has an `action` entry about `studyUid` newer than `withinMs`: a
   * study page that refreshes itself is one view, not one per refresh.
   */
  /** Whether this user has an entry for this action and target newer than withinMs. */
  hasRecentTarget(username: string, action: string, target: string, withinMs: number, now = Date.now()): boolean {
    return !!this.db.prepare('SELECT 1 FROM audit_log WHERE username = ? AND action = ? AND target = ? AND at > ? LIMIT 1').get(username, action, target, now - withinMs);
  }

  hasRecent(username: string, action: string, studyUid: string, withinMs: number, now = Date.now()): boolean {
    return !!this.db
      .prepare('SELECT 1 FROM audit_log WHERE username = ? AND action = ? AND study_uid = ? AND at > ? LIMIT 1')
      .get(username, action, studyUid, now - withinMs);
  }

  /**
   * How a study that is no longer on record went: its last successful delete (an admin's) or
   * removal by result retention or by the storage cap. The audit row is the study's only trace
   * (no tombstone is kept).
   */
  removal(studyUid: string): { at: number; username: string | null; action: string } | undefined {
    return this.db
      .prepare(
        "SELECT at, username, action FROM audit_log WHERE study_uid = ? AND action IN ('study.delete','housekeeping.result_retention','housekeeping.storage_cap') AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
      )
      .get(studyUid) as { at: number; username: string | null; action: string } | undefined;
  }

  list(opts: { limit?: number; offset?: number; studyUid?: string; username?: string; action?: string } = {}): { total: number; items: AuditRow[] } {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.studyUid) {
      where.push('study_uid = ?');
      args.push(opts.studyUid);
    }
    if (opts.username) {
      where.push('username = ?');
      args.push(opts.username);
    }
    if (opts.action) {
      where.push('action = ?');
      args.push(opts.action);
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM audit_log ${w}`).get(...args) as { n: number }).n;
    const items = this.db
      .prepare(
        `SELECT id, at, username, role, action, outcome, study_uid AS studyUid, target, ip, request_id AS requestId, detail
         FROM audit_log ${w} ORDER BY id DESC LIMIT ? OFFSET ?`,
      )
      .all(...args, opts.limit ?? 50, opts.offset ?? 0) as AuditRow[];
    return { total, items };
  }
}
