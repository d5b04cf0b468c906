/**
 * Housekeeping on node-cron schedules (config.housekeeping):
 *  - retention: received image files older than retentionDays are deleted; the rows, the results
 *    and the audit trail stay. A study keeps its files while it is in the pipeline or while any
 *    of its results is not delivered (pending, retrying, or failed and not discarded by an admin),
 *    so nothing unsent is lost. The same run removes image files that no record points to (a
 *    crash between filing a file and committing its row: never acknowledged, so not owed).
 *  - result retention (same schedule, after it): a study in which nothing happened for
 *    resultRetentionDays, whose received images are gone and which owes nothing (every result
 *    delivered, no failure an admin has not discarded, not in the pipeline) goes entirely: its
 *    rows in one transaction, with one audit row that says so, then its files. The audit log
 *    stays. Result files no row points to (a crash between the two) are removed once a day old.
 *  - storage cap (maxStorageGB; on its own schedule, and after the two above): while the bytes the
 *    rows account for (received images not deleted, result files) are over the cap, the received
 *    images of studies that owe nothing go, then whole settled studies as result retention removes
 *    them, oldest activity first. Nothing of a study that owes something is touched; when what is
 *    left still exceeds the cap, one warning per run says so (counts and UIDs only).
 *  - retry sweep: sends waiting for a retry are made due now, and sends that failed because their
 *    destination was not configured go back in the queue once it is; then the sender is woken.
 *  - a daily summary line in the log (counts only, no patient data).
 */
import type { Dirent } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setImmediate as nextTick } from 'node:timers/promises';
import cron, { ScheduledTask } from 'node-cron';
import { BYTES_PER_GB, type Config } from '../config/schema';
import type { Logger } from '../log';
import { notDiscarded } from '../store/failures';
import { removeStudyFiles } from '../store/studyFiles';
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
  /** studies removed per result-retention run at most (default RESULT_BATCH) */
  resultBatch?: number;
}

export interface RetentionResult {
  deletedFiles: number;
  bytes: number;
  /** old instances kept because their study still has undelivered results or is in the pipeline */
  keptUnsent: number;
  /** files under instances/ that no row points to, older than a day, removed */
  orphans: number;
}

export interface ResultRetentionResult {
  /** studies removed entirely: rows and files */
  studies: number;
  /** their files removed (results, and any received image retention had left) */
  files: number;
  bytes: number;
  /** studies quiet for resultRetentionDays but kept: something unsent, a failure not discarded, an image still on disk, or in the pipeline */
  keptUnsettled: number;
  /** more studies were due than one run takes (RESULT_BATCH); the next run goes on */
  more: boolean;
  /** rows of refused files (no study) whose file retention has deleted and whose failure was discarded */
  rejectedRows: number;
  /** files under results/ that no output row points to, older than a day, removed */
  orphans: number;
}

export interface StorageCapResult {
  /** housekeeping.maxStorageGB in bytes; 0 = no cap, and nothing else was done */
  capBytes: number;
  /** the bytes the rows account for, before and after the run */
  keptBefore: number;
  keptAfter: number;
  /** result files filed without their size whose size was read from the disk in this run */
  sized: number;
  /** received images deleted (of studies that owe nothing), and their bytes */
  imageFiles: number;
  imageBytes: number;
  /** settled studies removed entirely, their files and bytes */
  studies: number;
  files: number;
  bytes: number;
  /** more was due than one run takes (RESULT_BATCH studies per step); the next run goes on */
  more: boolean;
  /** still over the cap with nothing left that may go: the rest belongs to studies that owe something */
  unmet: boolean;
}

/** A file must be this old before it counts as an orphan: one being filed right now has no row yet. */
const ORPHAN_AGE_MS = DAY_MS;

/**
 * Studies removed per run at most (about 3 minutes here, far above a department's daily intake), read
 * RESULT_CHUNK at a time. Each study is one short transaction, its files are removed between them.
 */
export const RESULT_BATCH = 10_000;
const RESULT_CHUNK = 500;

/** SQL over a send `x`: it still owes a delivery (pending, retrying, or failed and not discarded). */
const UNSETTLED_SEND = `(x.status = 'pending' OR (x.status = 'failed' AND ${notDiscarded('send', 'CAST(x.id AS TEXT)', 'x.updated_at')}))`;

/** SQL over a study `s`: nothing happened to it (received, run, sent, re-sent, discarded, ...) since @cutoff. */
const QUIET = `s.status IN ('processed','failed') AND s.last_received_at < @cutoff AND s.updated_at < @cutoff AND IFNULL(s.processed_at, 0) < @cutoff
  AND NOT EXISTS (SELECT 1 FROM sends x WHERE x.study_uid = s.study_uid AND x.updated_at >= @cutoff)
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.study_uid = s.study_uid AND e.at >= @cutoff)`;

/**
 * SQL over a study `s`: the moment QUIET measures from, the last time anything happened to it
 * (received, run, sent, re-sent, discarded, ...). The storage cap frees the oldest first by it.
 */
const LAST_ACTIVITY = `MAX(s.last_received_at, s.updated_at, IFNULL(s.processed_at, 0),
  IFNULL((SELECT MAX(x.updated_at) FROM sends x WHERE x.study_uid = s.study_uid), 0),
  IFNULL((SELECT MAX(e.at) FROM events e WHERE e.study_uid = s.study_uid), 0))`;

/** Studies whose eligibility and last activity the storage cap reads per statement, between which the event loop runs. */
const CAP_CHUNK = 500;

/**
 * SQL over a study `s`: image retention may delete its received images once they are old enough.
 * Not in the pipeline; every result delivered or its failed send discarded.
 */
const IMAGES_MAY_GO = `s.status IN ('processed','failed') AND NOT EXISTS (SELECT 1 FROM sends x WHERE x.study_uid = s.study_uid AND ${UNSETTLED_SEND})`;

/**
 * SQL over a study `s`: it owes nothing. IMAGES_MAY_GO made stricter: no job waiting or running,
 * and no failed analysis or image an admin has not discarded (the Failures page still lists it).
 */
const OWES_NOTHING = `${IMAGES_MAY_GO}
  AND NOT (s.status = 'failed' AND ${notDiscarded('study', 's.study_uid', 's.updated_at')})
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid AND j.status IN ('queued','running'))
  AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid
    AND i.status = 'failed' AND ${notDiscarded('instance', 'i.sop_instance_uid', 'i.received_at')})`;

/**
 * SQL over a study `s`: it may go entirely. It owes nothing, and every received image is already
 * deleted by image retention (records go after images, never before).
 */
const SETTLED = `${OWES_NOTHING}
  AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid AND i.purged_at IS NULL)`;

/** SQL over instances: a refused file's row (no study) whose file is gone and whose failure was discarded, older than @cutoff. */
const REJECTED_DONE = `study_uid IS NULL AND purged_at IS NOT NULL AND received_at < @cutoff
  AND NOT (status = 'failed' AND ${notDiscarded('instance', 'sop_instance_uid', 'received_at')})`;

export class Housekeeping {
  private tasks: ScheduledTask[] = [];
  private readonly log: Logger;
  /** the storage cap run in progress (its own schedule and the retention run's may meet) */
  private capRun: Promise<StorageCapResult> | null = null;
  /** the last storage cap run ended over the cap with nothing more it may remove (metrics) */
  capUnmet = false;

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
      cron.schedule(
        s.retentionSchedule,
        run('retention', () => this.runRetention()),
        { name: 'retention', noOverlap: true },
      ),
      cron.schedule(s.storageCapSchedule, run('storage-cap', () => this.storageCap()), { name: 'storage-cap', noOverlap: true }),
      cron.schedule(s.retrySweepSchedule, run('retry-sweep', () => this.retrySweep()), { name: 'retry-sweep', noOverlap: true }),
      cron.schedule(s.summarySchedule, run('summary', () => this.summary()), { name: 'summary', noOverlap: true }),
    ];
    this.log.info(
      {
        retentionDays: s.retentionDays,
        resultRetentionDays: s.resultRetentionDays,
        maxStorageGB: s.maxStorageGB,
        retention: s.retentionSchedule,
        storageCap: s.storageCapSchedule,
        retrySweep: s.retrySweepSchedule,
        summary: s.summarySchedule,
      },
      'housekeeping scheduled',
    );
  }

  async stop(): Promise<void> {
    for (const t of this.tasks) await t.destroy();
    this.tasks = [];
  }

  /**
   * The scheduled run: received images first, then whole settled studies (whose images are gone by
   * then), then the storage cap. Also reads the size of result files filed without one, and sums
   * the rows once to check the kept totals (once a day: 20-28 ms for 20,000 studies here).
   */
  async runRetention(now = Date.now()): Promise<{ images: RetentionResult; results: ResultRetentionResult; cap: StorageCapResult }> {
    const images = await this.retention(now);
    const results = await this.resultRetention(now);
    await this.sizeResults();
    if (!this.opts.gateway.store.isClosed) {
      const { before, after } = this.opts.gateway.store.recountStorage();
      if (before.images !== after.images || before.results !== after.results) {
        this.log.warn({ before, after }, 'storage: the kept totals differed from the rows (changed around the store?) and were corrected');
      }
    }
    return { images, results, cap: await this.storageCap(now) };
  }

  /**
   * Frees space while the bytes the rows account for are over housekeeping.maxStorageGB, oldest
   * activity (LAST_ACTIVITY) first, by the age rules' own conditions without their ages: first
   * the received images of studies that owe nothing (OWES_NOTHING), then whole settled studies
   * (SETTLED) as result retention removes them, each with its `housekeeping.storage_cap` audit
   * row. Stops as soon as it is under the cap. Never touches a study that owes something; if the
   * cap cannot be met without, one warning per run. At most RESULT_BATCH studies per step.
   * A second call while one runs gets that run's result.
   */
  storageCap(now = Date.now()): Promise<StorageCapResult> {
    if (!this.capRun) this.capRun = this.runStorageCap(now).finally(() => (this.capRun = null));
    return this.capRun;
  }

  private async runStorageCap(now: number): Promise<StorageCapResult> {
    const gb = this.opts.settings.maxStorageGB;
    const capBytes = Math.round(gb * BYTES_PER_GB);
    const store = this.opts.gateway.store;
    const result: StorageCapResult = { capBytes, keptBefore: 0, keptAfter: 0, sized: 0, imageFiles: 0, imageBytes: 0, studies: 0, files: 0, bytes: 0, more: false, unmet: false };
    if (capBytes <= 0 || store.isClosed) {
      this.capUnmet = false;
      return result;
    }
    result.sized = await this.sizeResults();
    const kept = () => store.storageBytes().total;
    result.keptBefore = result.keptAfter = kept();
    if (result.keptBefore <= capBytes) {
      this.capUnmet = false;
      return result;
    }
    const batch = this.opts.resultBatch ?? RESULT_BATCH;
    const over = () => !store.isClosed && kept() > capBytes;

    // 1. the received images of studies that owe nothing: image retention's rule without the age
    const owesNothing = this.db.prepare(`SELECT 1 FROM studies s WHERE s.study_uid = ? AND ${OWES_NOTHING}`);
    const images = this.db.prepare('SELECT sop_instance_uid AS sop, path, bytes FROM instances WHERE study_uid = ? AND purged_at IS NULL');
    let n = 0;
    for (const uid of await this.oldestFirst(`${OWES_NOTHING} AND EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid AND i.purged_at IS NULL)`)) {
      if (!over()) break;
      if (n === batch) {
        result.more = true;
        break;
      }
      const mayGo = () => !!owesNothing.get(uid);
      if (!mayGo()) continue;
      n++;
      const purged = await this.purgeImages(images.all(uid) as { sop: string; path: string; bytes: number }[], now, mayGo);
      result.imageFiles += purged.files;
      result.imageBytes += purged.bytes;
    }
    if (result.imageFiles) {
      this.opts.audit.add({ username: 'system', action: 'housekeeping.storage_cap', outcome: 'ok', detail: { maxStorageGB: gb, imageFiles: result.imageFiles, imageBytes: result.imageBytes } }, now);
    }

    // 2. whole settled studies, as result retention removes them but without its quiet period; only
    // those with result files (a study whose analysis failed has none: removing it frees nothing)
    const settled = this.db.prepare(`SELECT 1 FROM studies s WHERE s.study_uid = ? AND ${SETTLED}`);
    if (!result.more && over()) {
      for (const uid of await this.oldestFirst(`${SETTLED} AND EXISTS (SELECT 1 FROM outputs o WHERE o.study_uid = s.study_uid)`)) {
        if (!over()) break;
        if (result.studies === batch) {
          result.more = true;
          break;
        }
        const keptBytes = kept();
        const removed = await this.removeStudy(uid, () => !!settled.get(uid), { action: 'housekeeping.storage_cap', detail: { maxStorageGB: gb, keptBytes } }, now);
        if (!removed) continue;
        result.studies++;
        result.files += removed.files;
        result.bytes += removed.bytes;
      }
    }
    if (store.isClosed) return result;
    result.keptAfter = kept();
    result.unmet = !result.more && result.keptAfter > capBytes;
    this.capUnmet = result.unmet;
    if (result.imageFiles || result.studies) {
      this.log.info({ maxStorageGB: gb, ...result }, 'storage cap: received images and settled studies removed, oldest first');
      store.addEvent('housekeeping.storage_cap', null, { imageFiles: result.imageFiles, imageBytes: result.imageBytes, studies: result.studies, files: result.files, bytes: result.bytes }, now);
    }
    if (result.unmet) await this.warnCapUnmet(capBytes, result.keptAfter);
    return result;
  }

  /** The one warning of a run that could not meet the cap: what is left, as counts and the UIDs of the oldest studies holding it. */
  private async warnCapUnmet(capBytes: number, keptBytes: number): Promise<void> {
    const holding = `(EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid AND i.purged_at IS NULL) OR EXISTS (SELECT 1 FROM outputs o WHERE o.study_uid = s.study_uid))`;
    const owing = await this.oldestFirst(`NOT (${OWES_NOTHING}) AND ${holding}`);
    if (this.opts.gateway.store.isClosed) return;
    const refused = this.db.prepare('SELECT COUNT(*) AS n, IFNULL(SUM(bytes), 0) AS bytes FROM instances WHERE study_uid IS NULL AND purged_at IS NULL').get() as { n: number; bytes: number };
    this.log.warn(
      { capBytes, keptBytes, studiesOwing: owing.length, oldestOwing: owing.slice(0, 5), refusedFiles: refused.n, refusedBytes: refused.bytes },
      'storage cap not met: what is left belongs to studies that owe something (unsent results, failures not discarded, in the pipeline) or is refused files; deliver or discard them, or raise housekeeping.maxStorageGB',
    );
  }

  /**
   * The study UIDs matching `where` (SQL over a study `s`), oldest LAST_ACTIVITY first. Read
   * CAP_CHUNK studies (by rowid) per statement, letting the event loop run between them: one
   * statement over every study would hold the listener and the dashboard for its whole length.
   */
  private async oldestFirst(where: string): Promise<string[]> {
    const next = this.db.prepare('SELECT MAX(id) AS upto FROM (SELECT rowid AS id FROM studies WHERE rowid > ? ORDER BY rowid LIMIT ?)');
    const read = this.db.prepare(`SELECT s.study_uid AS uid, ${LAST_ACTIVITY} AS at FROM studies s WHERE s.rowid > @after AND s.rowid <= @upto AND ${where}`);
    const rows: { uid: string; at: number }[] = [];
    for (let after = Number.MIN_SAFE_INTEGER; !this.opts.gateway.store.isClosed; ) {
      const { upto } = next.get(after, CAP_CHUNK) as { upto: number | null };
      if (upto === null) break;
      rows.push(...(read.all({ after, upto }) as { uid: string; at: number }[]));
      after = upto;
      await nextTick();
    }
    return rows.sort((a, b) => a.at - b.at || (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0)).map((r) => r.uid);
  }

  /**
   * Reads the size of result files filed before the store recorded sizes (schema 7), so that the
   * kept bytes count them: once each, a chunk at a time. A file that is gone counts 0.
   */
  private async sizeResults(): Promise<number> {
    const store = this.opts.gateway.store;
    let sized = 0;
    while (!store.isClosed) {
      const rows = store.unsizedOutputs(RESULT_CHUNK);
      if (!rows.length) break;
      const sizes: { sopInstanceUid: string; path: string; bytes: number }[] = [];
      for (const r of rows) sizes.push({ ...r, bytes: await fsp.stat(r.path).then((st) => st.size, () => 0) });
      if (store.isClosed) break;
      const n = store.recordOutputSizes(sizes);
      sized += n;
      if (!n) break; // every row changed meanwhile (re-runs): the next run reads them
    }
    if (sized) this.log.info({ sized }, 'storage: sizes of result files filed before sizes were recorded read from the disk');
    return sized;
  }

  async retention(now = Date.now()): Promise<RetentionResult> {
    const days = this.opts.settings.retentionDays;
    const result: RetentionResult = { deletedFiles: 0, bytes: 0, keptUnsent: 0, orphans: await this.removeOrphans(now) };
    if (days <= 0) return result;
    const cutoff = now - days * DAY_MS;
    const settled = `(i.study_uid IS NULL OR EXISTS (SELECT 1 FROM studies s WHERE s.study_uid = i.study_uid AND s.last_received_at < @cutoff AND ${IMAGES_MAY_GO}))`;
    const due = this.db
      .prepare(`SELECT i.sop_instance_uid AS sop, i.path, i.bytes FROM instances i WHERE i.purged_at IS NULL AND i.received_at < @cutoff AND ${settled} LIMIT 5000`)
      .all({ cutoff }) as { sop: string; path: string; bytes: number }[];
    result.keptUnsent = (
      this.db.prepare(`SELECT COUNT(*) AS n FROM instances i WHERE i.purged_at IS NULL AND i.received_at < @cutoff AND NOT (${settled})`).get({ cutoff }) as { n: number }
    ).n;
    const purged = await this.purgeImages(due, now);
    result.deletedFiles = purged.files;
    result.bytes = purged.bytes;
    if (result.deletedFiles || result.keptUnsent) {
      this.log.info({ retentionDays: days, ...result }, 'retention: expired received images deleted');
    }
    if (result.deletedFiles) {
      this.opts.audit.add({ username: 'system', action: 'housekeeping.retention', outcome: 'ok', detail: { retentionDays: days, ...result } }, now);
      this.opts.gateway.store.addEvent('housekeeping.retention', null, { files: result.deletedFiles, bytes: result.bytes }, now);
    }
    return result;
  }

  /**
   * Deletes received image files, each before its row is marked (purged_at); the row's path must
   * still match (a resend of the same instance meanwhile replaced it). `mayGo`, when given, is
   * asked again right before each file, in the same tick as its unlink starts.
   */
  private async purgeImages(due: { sop: string; path: string; bytes: number }[], now: number, mayGo?: () => boolean): Promise<{ files: number; bytes: number }> {
    const root = path.resolve(this.opts.dataDir) + path.sep;
    const mark = this.db.prepare('UPDATE instances SET purged_at = ? WHERE sop_instance_uid = ? AND purged_at IS NULL AND path = ?');
    const done = { files: 0, bytes: 0 };
    for (const d of due) {
      if (!path.resolve(d.path).startsWith(root)) continue;
      if (this.opts.gateway.store.isClosed || (mayGo && !mayGo())) break;
      try {
        await fsp.unlink(d.path);
        done.bytes += d.bytes;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn({ sopInstanceUid: d.sop, err: (e as Error).message }, 'could not delete an expired file');
          continue;
        }
      }
      if (mark.run(now, d.sop, d.path).changes) done.files++;
    }
    return done;
  }

  /**
   * Removes one study as result retention does: its rows in one transaction with its audit row,
   * provided `stillDue` holds in that transaction (the study may have been received again since
   * it was listed), then its files. Null when it may no longer go.
   */
  private async removeStudy(uid: string, stillDue: () => boolean, audit: { action: string; detail: Record<string, unknown> }, now: number): Promise<{ files: number; bytes: number } | null> {
    const store = this.opts.gateway.store;
    const paths = this.db.transaction(() => {
      if (!stillDue()) return null;
      const { images, results } = store.deleteStudyRows(uid);
      this.opts.audit.add({ username: 'system', action: audit.action, outcome: 'ok', studyUid: uid, detail: { ...audit.detail, resultFiles: results.length } }, now);
      return [...images, ...results];
    })();
    return paths && removeStudyFiles(this.opts.dataDir, uid, paths);
  }

  /**
   * Removes settled studies in which nothing happened for resultRetentionDays: rows first (one
   * transaction per study, with its audit row), then files. A kill -9 between the two leaves
   * files without rows, which the orphan sweep at the start of a later run removes. At most
   * RESULT_BATCH studies per run.
   */
  async resultRetention(now = Date.now()): Promise<ResultRetentionResult> {
    const days = this.opts.settings.resultRetentionDays;
    const result: ResultRetentionResult = { studies: 0, files: 0, bytes: 0, keptUnsettled: 0, more: false, rejectedRows: 0, orphans: await this.removeResultOrphans(now) };
    if (days <= 0) return result;
    const cutoff = now - days * DAY_MS;
    const store = this.opts.gateway.store;
    const batch = this.opts.resultBatch ?? RESULT_BATCH;
    // read in chunks, in no particular order (an ORDER BY would evaluate every candidate first)
    const list = this.db.prepare(`SELECT s.study_uid AS uid FROM studies s WHERE ${QUIET} AND ${SETTLED} LIMIT ?`);
    const stillDue = this.db.prepare(`SELECT 1 FROM studies s WHERE s.study_uid = @uid AND ${QUIET} AND ${SETTLED}`);
    for (let progress = true; progress && result.studies < batch && !store.isClosed; ) {
      progress = false;
      for (const { uid } of list.all({ cutoff }, Math.min(RESULT_CHUNK, batch - result.studies)) as { uid: string }[]) {
        if (store.isClosed) break;
        const removed = await this.removeStudy(uid, () => !!stillDue.get({ uid, cutoff }), { action: 'housekeeping.result_retention', detail: { resultRetentionDays: days } }, now);
        if (!removed) continue;
        progress = true;
        result.studies++;
        result.files += removed.files;
        result.bytes += removed.bytes;
      }
    }
    result.more = !store.isClosed && list.all({ cutoff }, 1).length > 0;
    if (!store.isClosed) {
      result.rejectedRows = this.db.transaction(() => {
        const sops = (this.db.prepare(`SELECT sop_instance_uid AS sop FROM instances WHERE ${REJECTED_DONE} LIMIT ?`).all({ cutoff }, batch) as { sop: string }[]).map((r) => r.sop);
        const del = (sql: string) => this.db.prepare(sql);
        for (const sop of sops) {
          del('DELETE FROM instances WHERE sop_instance_uid = ?').run(sop);
          del("DELETE FROM failure_dismissals WHERE kind = 'instance' AND key = ?").run(sop);
        }
        // events about no study: refused files, discards of them, housekeeping's own counts
        del('DELETE FROM events WHERE study_uid IS NULL AND at < ?').run(cutoff);
        return sops.length;
      })();
      result.keptUnsettled = (this.db.prepare(`SELECT COUNT(*) AS n FROM studies s WHERE ${QUIET} AND NOT (${SETTLED})`).get({ cutoff }) as { n: number }).n;
    }
    if (result.studies || result.keptUnsettled || result.rejectedRows) {
      this.log.info({ resultRetentionDays: days, ...result }, 'result retention: settled studies removed (results and records; the audit log keeps one row each)');
    }
    if (result.studies) store.addEvent('housekeeping.result_retention', null, { studies: result.studies, files: result.files, bytes: result.bytes }, now);
    return result;
  }

  /**
   * Removes files under results/ that no output row points to and that are older than a day: left
   * by a crash between a study's rows going and its files (result retention, a dashboard delete),
   * or by a run that died before filing its results. Then the emptied folders that were as old.
   */
  private async removeResultOrphans(now: number): Promise<number> {
    const root = path.join(path.resolve(this.opts.dataDir), 'results');
    let entries: Dirent[];
    try {
      entries = await fsp.readdir(root, { recursive: true, withFileTypes: true });
    } catch {
      return 0; // no results folder yet
    }
    const known = new Set((this.db.prepare('SELECT path FROM outputs').all() as { path: string }[]).map((r) => path.resolve(r.path)));
    const recorded = this.db.prepare('SELECT 1 FROM outputs WHERE path = ?');
    // results/<study>/...: a study in the pipeline may be writing a file of the same name right now
    // (received again after a crash left its old folder behind)
    const busy = this.db.prepare("SELECT 1 FROM studies WHERE study_uid = ? AND status NOT IN ('processed','failed')");
    // a folder's age is read before anything in it goes (removing a file makes its folder new); a
    // run folder being written now is new, and so is the study folder a new run was just added to
    const oldDirs: string[] = [];
    let removed = 0;
    for (const e of entries) {
      const f = path.join(e.parentPath, e.name);
      try {
        const age = now - (await fsp.lstat(f)).mtimeMs;
        if (e.isDirectory()) {
          if (age >= ORPHAN_AGE_MS) oldDirs.push(f);
          continue;
        }
        if (known.has(f) || age < ORPHAN_AGE_MS) continue;
        // checked right before the unlink, in the same tick
        if (recorded.get(f) || busy.get(path.relative(root, f).split(path.sep)[0])) continue;
        await fsp.unlink(f);
        removed++;
      } catch {
        /* gone meanwhile */
      }
    }
    // deepest first; rmdir leaves a folder that still has something in it
    for (const d of oldDirs.sort((a, b) => b.length - a.length)) await fsp.rmdir(d).catch(() => undefined);
    if (removed) this.log.warn({ removed }, 'result retention: result files no record points to were removed (left by a crash between a study\'s rows and its files)');
    return removed;
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
      studiesRemovedByResultRetention: n("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'housekeeping.result_retention' AND at >= ?", since),
      studiesRemovedByStorageCap: n("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'housekeeping.storage_cap' AND study_uid IS NOT NULL AND at >= ?", since),
      storageBytes: this.opts.gateway.store.storageBytes().total,
      bytesFreedByResultRetention: n("SELECT IFNULL(SUM(json_extract(detail, '$.bytes')), 0) AS n FROM events WHERE kind = 'housekeeping.result_retention' AND at >= ?", since),
    };
    this.log.info({ summary: line }, 'daily summary');
    return line;
  }
}
