/**
 * Housekeeping on node-cron schedules (config.housekeeping):
 *  - retention: received image files older than retentionDays are deleted; the rows, the results
 *    and the audit trail stay. A study keeps its files while it is in the pipeline or while any
 *    of its results is not delivered (pending, retrying, or failed and not discarded by an admin),
 *    so nothing unsent is lost. The same run removes image files that no record points to (a
 *    crash between filing a file and committing its row: never acknowledged, so not owed).
 *  - retry sweep: sends waiting for a retry are made due now, and sends that failed because their
 *    destination was not configured go back in the queue once it is; then the sender is woken.
 *  - a daily summary line in the log (counts only, no patient data).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import cron, { ScheduledTask } from 'node-cron';
import type { Config } from '../config/schema';
import type { Logger } from '../log';
import type { AuditLog } from '../web/audit';
import type { DashboardGateway } from '../web/studyActions';

const DAY_MS = 24 * 3600_000;

export interface HousekeepingOptions {
  settings: Config['housekeeping'];
  gateway: DashboardGateway;
  dataDir: string;
  /** names of the configured destinations */
  destinations: string[];
  audit: AuditLog;
  logger: Logger;
}

export interface RetentionResult {
  deletedFiles: number;
  bytes: number;
  /** old instances kept because their study still has undelivered results or is in the pipeline */
  keptUnsent: number;
  /** files under instances/ that no row points to, older than a day, removed */
  orphans: number;
}

/** A file must be this old before it counts as an orphan: one being filed right now has no row yet. */
const ORPHAN_AGE_MS = DAY_MS;

export class Housekeeping {
  private tasks: ScheduledTask[] = [];
  private readonly log: Logger;

  constructor(private readonly opts: HousekeepingOptions) {
    this.log = opts.logger.child({ component: 'housekeeping' });
  }

  private get db() {
    return this.opts.gateway.store.db;
  }

  start(): void {
    const s = this.opts.settings;
    const run = (name: string, fn: () => unknown) => async () => {
      if (this.opts.gateway.store.isClosed) return;
      try {
        await fn();
      } catch (e) {
        this.log.error({ task: name, err: (e as Error).message }, 'housekeeping task failed');
      }
    };
    this.tasks = [
      cron.schedule(s.retentionSchedule, run('retention', () => this.retention()), { name: 'retention', noOverlap: true }),
      cron.schedule(s.retrySweepSchedule, run('retry-sweep', () => this.retrySweep()), { name: 'retry-sweep', noOverlap: true }),
      cron.schedule(s.summarySchedule, run('summary', () => this.summary()), { name: 'summary', noOverlap: true }),
    ];
    this.log.info({ retentionDays: s.retentionDays, retention: s.retentionSchedule, retrySweep: s.retrySweepSchedule, summary: s.summarySchedule }, 'housekeeping scheduled');
  }

  async stop(): Promise<void> {
    for (const t of this.tasks) await t.destroy();
    this.tasks = [];
  }

  async retention(now = Date.now()): Promise<RetentionResult> {
    const days = this.opts.settings.retentionDays;
    const result: RetentionResult = { deletedFiles: 0, bytes: 0, keptUnsent: 0, orphans: await this.removeOrphans(now) };
    if (days <= 0) return result;
    const cutoff = now - days * DAY_MS;
    const settled = `(i.study_uid IS NULL OR EXISTS (SELECT 1 FROM studies s WHERE s.study_uid = i.study_uid AND s.status IN ('processed','failed') AND s.last_received_at < @cutoff))
      AND NOT EXISTS (SELECT 1 FROM sends x WHERE x.study_uid = i.study_uid AND (x.status = 'pending' OR (x.status = 'failed'
        AND NOT EXISTS (SELECT 1 FROM failure_dismissals d WHERE d.kind = 'send' AND d.key = CAST(x.id AS TEXT) AND d.at >= x.updated_at))))`;
    const due = this.db
      .prepare(`SELECT i.sop_instance_uid AS sop, i.path, i.bytes FROM instances i WHERE i.purged_at IS NULL AND i.received_at < @cutoff AND ${settled} LIMIT 5000`)
      .all({ cutoff }) as { sop: string; path: string; bytes: number }[];
    result.keptUnsent = (
      this.db.prepare(`SELECT COUNT(*) AS n FROM instances i WHERE i.purged_at IS NULL AND i.received_at < @cutoff AND NOT (${settled})`).get({ cutoff }) as { n: number }
    ).n;
    const root = path.resolve(this.opts.dataDir) + path.sep;
    const mark = this.db.prepare('UPDATE instances SET purged_at = ? WHERE sop_instance_uid = ? AND purged_at IS NULL AND path = ?');
    for (const d of due) {
      if (!path.resolve(d.path).startsWith(root)) continue;
      try {
        await fsp.unlink(d.path);
        result.bytes += d.bytes;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn({ sopInstanceUid: d.sop, err: (e as Error).message }, 'could not delete an expired file');
          continue;
        }
      }
      // path must still match: a resend of the same instance meanwhile replaced the row
      if (mark.run(now, d.sop, d.path).changes) result.deletedFiles++;
    }
    if (result.deletedFiles || result.keptUnsent) {
      this.log.info({ retentionDays: days, ...result }, 'retention: expired received images deleted');
    }
    if (result.deletedFiles) {
      this.opts.audit.add({ username: 'system', action: 'housekeeping.retention', outcome: 'ok', detail: { retentionDays: days, ...result } }, now);
    }
    return result;
  }

  /** Removes .dcm files under instances/ that no instance row points to and that are older than a day. */
  private async removeOrphans(now: number): Promise<number> {
    const root = path.join(path.resolve(this.opts.dataDir), 'instances');
    let files: string[];
    try {
      files = (await fsp.readdir(root, { recursive: true })).filter((f) => f.endsWith('.dcm')).map((f) => path.join(root, f));
    } catch {
      return 0; // no instances folder yet
    }
    if (!files.length) return 0;
    const known = new Set((this.db.prepare('SELECT path FROM instances').all() as { path: string }[]).map((r) => path.resolve(r.path)));
    let removed = 0;
    for (const f of files) {
      if (known.has(f)) continue;
      try {
        if (now - (await fsp.stat(f)).mtimeMs < ORPHAN_AGE_MS) continue;
        // checked again right before: a resend may have just recorded this very path
        if (this.db.prepare('SELECT 1 FROM instances WHERE path = ?').get(f)) continue;
        await fsp.unlink(f);
        removed++;
      } catch {
        /* gone meanwhile */
      }
    }
    if (removed) this.log.warn({ removed }, 'retention: image files no record points to were removed (left by a crash before their row was committed)');
    return removed;
  }

  retrySweep(now = Date.now()): { madeDue: number; requeued: number } {
    const madeDue = this.db.prepare("UPDATE sends SET next_attempt_at = ? WHERE status = 'pending' AND attempts > 0 AND next_attempt_at > ?").run(now, now).changes;
    const known = this.opts.destinations;
    const lost = this.db
      .prepare("SELECT id, destination FROM sends WHERE status = 'failed' AND last_error LIKE 'send.destination_unknown%'")
      .all() as { id: number; destination: string }[];
    const back = lost.filter((r) => known.includes(r.destination)).map((r) => r.id);
    const requeued = back.length ? this.opts.gateway.store.resetSends(back, now) : 0;
    if (madeDue || requeued) {
      this.opts.gateway.kickSender();
      this.log.info({ madeDue, requeued }, 'retry sweep: failed sends tried again');
    }
    return { madeDue, requeued };
  }

  summary(now = Date.now()): Record<string, unknown> {
    const since = now - DAY_MS;
    const n = (sql: string, ...args: unknown[]) => (this.db.prepare(sql).get(...args) as { n: number }).n;
    const labels = Object.fromEntries(
      (this.db.prepare("SELECT label, COUNT(*) AS n FROM studies WHERE status = 'processed' AND processed_at >= ? GROUP BY label").all(since) as { label: string | null; n: number }[]).map(
        (r) => [r.label ?? 'none', r.n],
      ),
    );
    const line = {
      since: new Date(since).toISOString(),
      studiesReceived: n('SELECT COUNT(*) AS n FROM studies WHERE first_received_at >= ?', since),
      instancesReceived: n('SELECT COUNT(*) AS n FROM instances WHERE received_at >= ?', since),
      studiesProcessed: n("SELECT COUNT(DISTINCT study_uid) AS n FROM jobs WHERE status = 'done' AND finished_at >= ?", since),
      studiesFailed: n("SELECT COUNT(DISTINCT study_uid) AS n FROM jobs WHERE status = 'failed' AND finished_at >= ?", since),
      instancesFailed: n("SELECT COUNT(*) AS n FROM instances WHERE status = 'failed' AND received_at >= ?", since),
      labels,
      resultsSent: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'sent' AND sent_at >= ?", since),
      sendsPending: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'pending'"),
      sendsRetrying: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'pending' AND attempts > 0"),
      sendsFailed: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'failed'"),
      filesDeletedByRetention: n('SELECT COUNT(*) AS n FROM instances WHERE purged_at >= ?', since),
    };
    this.log.info({ summary: line }, 'daily summary');
    return line;
  }
}
