/**
 * Durable state in one SQLite file under dataDir: what was received, which studies wait, run or
 * are done, what was produced and where it still has to go. Every state change that must survive
 * a crash happens here, in a transaction, before the gateway acts on it.
 *
 * better-sqlite3 is synchronous: a transaction is a plain function call and never interleaves with
 * other event-loop work, which makes the state machine below race-free within the process.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LABEL_SEVERITY, type Label } from '../types/domain';
import type { StudyJobOutput } from '../types/pipeline';
import { MIGRATIONS, SCHEMA_VERSION } from './schema';
import {
  DueSend,
  EventRow,
  InstanceRow,
  JobRow,
  OutputRow,
  ReceivedInstance,
  RejectedInstance,
  SendRow,
  SendTarget,
  StudyRow,
  StudyStatus,
} from './rows';

export const DB_FILE_NAME = 'sonogate.db';
/** a job interrupted this many times by a dying process is failed instead of requeued */
export const MAX_JOB_ATTEMPTS = 3;

const STUDY_COLUMNS = `study_uid AS studyUid, status, patient_name AS patientName, patient_id AS patientId,
  accession_number AS accessionNumber, study_date AS studyDate, study_description AS studyDescription,
  calling_ae AS callingAe, calling_host AS callingHost, first_received_at AS firstReceivedAt,
  last_received_at AS lastReceivedAt, processed_at AS processedAt, label,
  malignancy_probability AS malignancyProbability, error_reason AS errorReason,
  error_message AS errorMessage, run_count AS runCount, updated_at AS updatedAt`;

const INSTANCE_COLUMNS = `sop_instance_uid AS sopInstanceUid, study_uid AS studyUid, series_uid AS seriesUid,
  sop_class_uid AS sopClassUid, transfer_syntax_uid AS transferSyntaxUid, path, bytes,
  received_at AS receivedAt, calling_ae AS callingAe, calling_host AS callingHost, status, reason, message,
  label, probability, malignancy_probability AS malignancyProbability, lesion_count AS lesionCount,
  lesion_json AS lesionJson, frames, timings_json AS timingsJson, network_spread AS networkSpread,
  low_agreement AS lowAgreement`;

const JOB_COLUMNS = `id, study_uid AS studyUid, status, run, attempts, out_dir AS outDir, created_at AS createdAt,
  started_at AS startedAt, finished_at AS finishedAt, timings_json AS timingsJson,
  error_reason AS errorReason, error_message AS errorMessage`;

const OUTPUT_COLUMNS = `sop_instance_uid AS sopInstanceUid, study_uid AS studyUid, series_uid AS seriesUid,
  sop_class_uid AS sopClassUid, kind, path, source_sop_instance_uid AS sourceSopInstanceUid,
  job_id AS jobId, created_at AS createdAt`;

const SEND_COLUMNS = `s.id, s.output_sop_uid AS outputSopUid, s.study_uid AS studyUid, s.destination,
  s.ae_title AS aeTitle, s.host, s.port, s.status, s.attempts, s.next_attempt_at AS nextAttemptAt,
  s.last_error AS lastError, s.last_status AS lastStatus, s.sent_at AS sentAt, s.generation,
  s.created_at AS createdAt, s.updated_at AS updatedAt`;

/** What recording an instance did to its study (drives the assembler's timer). */
export type StudyTransition = 'opened' | 'extended' | 'requeued' | 'reopened' | 'processing';

export interface RecordInstanceResult {
  /** file of an earlier copy of the same SOP Instance UID, when it lived elsewhere */
  previousPath: string | null;
  transition: StudyTransition;
}

export interface ClaimedJob {
  jobId: number;
  studyUid: string;
  run: number;
  startedAt: number;
  outDir: string;
  /** the study's calling AE / host, for return-to-sender routing */
  callingAe: string | null;
  callingHost: string | null;
  /** the caller's verified certificate CN; null without one; undefined when not recorded (older rows) */
  callingCN?: string | null;
}

export interface JobFinish {
  /** true when instances arrived while the job ran: the study is receiving again */
  reopened: boolean;
}

export interface RecoveryReport {
  requeuedJobs: number;
  queuedStudies: number;
  receiving: { studyUid: string; lastReceivedAt: number }[];
}

export class Store {
  readonly db: Database.Database;
  readonly file: string;
  private closed = false;

  private constructor(file: string) {
    this.file = file;
    this.db = new Database(file);
    // WAL lets the dashboard read while the gateway writes. synchronous=FULL because an instance
    // row is committed before the C-STORE success answer: NORMAL could lose it on power loss.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
  }

  /** Opens (creating when needed) dataDir/sonogate.db and applies pending migrations. */
  static open(dataDir: string): Store {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
    const file = path.join(dataDir, DB_FILE_NAME);
    const fresh = !fs.existsSync(file);
    const store = new Store(file);
    // the database holds patient names: readable by the service account only
    if (fresh) fs.chmodSync(file, 0o600);
    store.migrate();
    return store;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  schemaVersion(): number {
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
    return row.v ?? 0;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const applied = new Set((this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > SCHEMA_VERSION) {
      throw new Error(`database ${this.file} has schema version ${newest}, newer than this program's ${SCHEMA_VERSION}`);
    }
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      // PRAGMA foreign_keys is a no-op inside a transaction: it is switched around it (SQLite's
      // "making other kinds of table schema changes", https://www.sqlite.org/lang_altertable.html)
      if (m.rebuildsTables) this.db.pragma('foreign_keys = OFF');
      try {
        this.db.transaction(() => {
          this.db.exec(m.sql);
          if (m.rebuildsTables) {
            const broken = this.db.pragma('foreign_key_check') as unknown[];
            if (broken.length) throw new Error(`migration ${m.version} would break ${broken.length} foreign key reference(s)`);
          }
          this.db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)').run(m.version, m.description, Date.now());
        })();
      } finally {
        if (m.rebuildsTables) this.db.pragma('foreign_keys = ON');
      }
    }
  }

  // ---------------------------------------------------------------- events

  addEvent(kind: string, studyUid: string | null, detail?: unknown, now = Date.now()): void {
    const text = detail === undefined ? null : typeof detail === 'string' ? detail : JSON.stringify(detail);
    this.db.prepare('INSERT INTO events (at, study_uid, kind, detail) VALUES (?, ?, ?, ?)').run(now, studyUid, kind, text);
  }

  listEvents(opts: { studyUid?: string; limit?: number } = {}): EventRow[] {
    const limit = opts.limit ?? 200;
    if (opts.studyUid) {
      return this.db
        .prepare('SELECT id, at, study_uid AS studyUid, kind, detail FROM events WHERE study_uid = ? ORDER BY id DESC LIMIT ?')
        .all(opts.studyUid, limit) as EventRow[];
    }
    return this.db.prepare('SELECT id, at, study_uid AS studyUid, kind, detail FROM events ORDER BY id DESC LIMIT ?').all(limit) as EventRow[];
  }

  // ---------------------------------------------------------------- receiving

  /**
   * Records a stored instance and moves its study along: a new study starts receiving; a queued
   * one goes back to receiving (its queued job is dropped: it is no longer quiet); a processed or
   * failed one is re-opened; a study being processed stays so (the job's end notices the
   * newer instance). A resent SOP Instance UID replaces its row.
   */
  recordInstance(i: ReceivedInstance, now = Date.now()): RecordInstanceResult {
    return this.db.transaction((): RecordInstanceResult => {
      const prev = this.db.prepare('SELECT path FROM instances WHERE sop_instance_uid = ?').get(i.sopInstanceUid) as { path: string } | undefined;
      this.db
        .prepare(
          `INSERT INTO instances (sop_instance_uid, study_uid, series_uid, sop_class_uid, transfer_syntax_uid, path, bytes,
             received_at, calling_ae, calling_host, status)
           VALUES (@sopInstanceUid, @studyUid, @seriesUid, @sopClassUid, @transferSyntaxUid, @path, @bytes, @now, @callingAe, @callingHost, 'received')
           ON CONFLICT (sop_instance_uid) DO UPDATE SET
             study_uid = excluded.study_uid, series_uid = excluded.series_uid, sop_class_uid = excluded.sop_class_uid,
             transfer_syntax_uid = excluded.transfer_syntax_uid, path = excluded.path, bytes = excluded.bytes,
             received_at = excluded.received_at, calling_ae = excluded.calling_ae, calling_host = excluded.calling_host,
             status = 'received', reason = NULL, message = NULL, label = NULL, probability = NULL,
             malignancy_probability = NULL, lesion_count = NULL, lesion_json = NULL, frames = NULL, timings_json = NULL,
             network_spread = NULL, low_agreement = NULL, purged_at = NULL`,
        )
        .run({ ...i, now });

      const study = this.db.prepare('SELECT status FROM studies WHERE study_uid = ?').get(i.studyUid) as { status: StudyStatus } | undefined;
      const patient = {
        patientName: i.patientName ?? null,
        patientId: i.patientId ?? null,
        accessionNumber: i.accessionNumber ?? null,
        studyDate: i.studyDate ?? null,
        studyDescription: i.studyDescription ?? null,
      };
      let transition: StudyTransition;
      if (!study) {
        this.db
          .prepare(
            `INSERT INTO studies (study_uid, status, patient_name, patient_id, accession_number, study_date, study_description,
               calling_ae, calling_host, calling_cn, first_received_at, last_received_at, updated_at, arrivals)
             VALUES (?, 'receiving', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
          )
          .run(i.studyUid, patient.patientName, patient.patientId, patient.accessionNumber, patient.studyDate, patient.studyDescription, i.callingAe, i.callingHost, i.callingCN ?? '', now, now, now);
        transition = 'opened';
        this.addEvent('study.opened', i.studyUid, { callingAe: i.callingAe }, now);
      } else {
        const next: StudyStatus = study.status === 'processing' ? 'processing' : 'receiving';
        this.db
          .prepare(
            `UPDATE studies SET status = ?, last_received_at = ?, calling_ae = ?, calling_host = ?, calling_cn = ?, updated_at = ?, arrivals = arrivals + 1,
               patient_name = COALESCE(?, patient_name), patient_id = COALESCE(?, patient_id),
               accession_number = COALESCE(?, accession_number), study_date = COALESCE(?, study_date),
               study_description = COALESCE(?, study_description)
             WHERE study_uid = ?`,
          )
          .run(next, now, i.callingAe, i.callingHost, i.callingCN ?? '', now, patient.patientName, patient.patientId, patient.accessionNumber, patient.studyDate, patient.studyDescription, i.studyUid);
        switch (study.status) {
          case 'receiving':
            transition = 'extended';
            break;
          case 'queued':
            this.db.prepare("DELETE FROM jobs WHERE study_uid = ? AND status = 'queued'").run(i.studyUid);
            transition = 'requeued';
            break;
          case 'processing':
            transition = 'processing';
            break;
          default:
            transition = 'reopened';
            this.addEvent('study.reopened', i.studyUid, { previousStatus: study.status, sopInstanceUid: i.sopInstanceUid }, now);
        }
      }
      return { previousPath: prev && prev.path !== i.path ? prev.path : null, transition };
    })();
  }

  /** Records an instance kept under dataDir/failed/ (header unreadable); its study is unknown. */
  recordRejectedInstance(r: RejectedInstance, now = Date.now()): { previousPath: string | null } {
    return this.db.transaction(() => {
      const prev = this.db.prepare('SELECT path, study_uid FROM instances WHERE sop_instance_uid = ?').get(r.sopInstanceUid) as
        | { path: string; study_uid: string | null }
        | undefined;
      if (prev && prev.study_uid !== null) {
        // A good copy was stored and acknowledged earlier: a broken resend must not replace (or
        // delete) it. The refused copy stays under failed/ and the event says so.
        this.addEvent('instance.refused_copy', prev.study_uid, { sopInstanceUid: r.sopInstanceUid, reason: r.reason, message: r.message }, now);
        return { previousPath: null };
      }
      this.db
        .prepare(
          `INSERT INTO instances (sop_instance_uid, study_uid, series_uid, sop_class_uid, transfer_syntax_uid, path, bytes,
             received_at, calling_ae, calling_host, status, reason, message)
           VALUES (@sopInstanceUid, NULL, NULL, @sopClassUid, @transferSyntaxUid, @path, @bytes, @now, @callingAe, @callingHost, 'failed', @reason, @message)
           ON CONFLICT (sop_instance_uid) DO UPDATE SET
             study_uid = NULL, series_uid = NULL, sop_class_uid = excluded.sop_class_uid,
             transfer_syntax_uid = excluded.transfer_syntax_uid, path = excluded.path, bytes = excluded.bytes,
             received_at = excluded.received_at, calling_ae = excluded.calling_ae, calling_host = excluded.calling_host,
             status = 'failed', reason = excluded.reason, message = excluded.message, purged_at = NULL`,
        )
        .run({ ...r, now });
      this.addEvent('instance.failed', null, { sopInstanceUid: r.sopInstanceUid, reason: r.reason, message: r.message }, now);
      return { previousPath: prev && prev.path !== r.path ? prev.path : null };
    })();
  }

  getInstance(sopInstanceUid: string): InstanceRow | undefined {
    return this.db.prepare(`SELECT ${INSTANCE_COLUMNS} FROM instances WHERE sop_instance_uid = ?`).get(sopInstanceUid) as InstanceRow | undefined;
  }

  listInstances(studyUid: string): InstanceRow[] {
    return this.db.prepare(`SELECT ${INSTANCE_COLUMNS} FROM instances WHERE study_uid = ? ORDER BY received_at, sop_instance_uid`).all(studyUid) as InstanceRow[];
  }

  /** Instances whose header could not be read (no study). */
  listRejectedInstances(limit = 200): InstanceRow[] {
    return this.db.prepare(`SELECT ${INSTANCE_COLUMNS} FROM instances WHERE study_uid IS NULL ORDER BY received_at DESC LIMIT ?`).all(limit) as InstanceRow[];
  }

  /**
   * Removes every row of a study (instances, jobs, outputs, sends, events, the failures an admin
   * discarded, the study) in one transaction and returns the files they pointed to: received
   * images not yet removed by retention, and results. The caller checks that the study may go and
   * removes the files after the commit: a crash in between leaves files without rows, which the
   * orphan sweeps remove, never rows pointing to missing files. The audit log is not touched (it
   * has no foreign keys into these tables).
   */
  deleteStudyRows(studyUid: string): { images: string[]; results: string[] } {
    return this.db.transaction(() => {
      const paths = (sql: string) => (this.db.prepare(sql).all(studyUid) as { path: string }[]).map((r) => r.path);
      const images = paths('SELECT path FROM instances WHERE study_uid = ? AND purged_at IS NULL');
      const results = paths('SELECT path FROM outputs WHERE study_uid = ?');
      this.db.prepare("DELETE FROM failure_dismissals WHERE kind = 'send' AND key IN (SELECT CAST(id AS TEXT) FROM sends WHERE study_uid = ?)").run(studyUid);
      this.db.prepare("DELETE FROM failure_dismissals WHERE kind = 'instance' AND key IN (SELECT sop_instance_uid FROM instances WHERE study_uid = ?)").run(studyUid);
      this.db.prepare("DELETE FROM failure_dismissals WHERE kind = 'study' AND key = ?").run(studyUid);
      for (const table of ['sends', 'outputs', 'jobs', 'instances', 'events', 'studies']) this.db.prepare(`DELETE FROM ${table} WHERE study_uid = ?`).run(studyUid);
      return { images, results };
    })();
  }

  // ---------------------------------------------------------------- storage

  /**
   * The bytes of the files the rows account for (storage_totals, kept by triggers): received
   * images not yet deleted by housekeeping, refused files under failed/ included, and result
   * files. `unsizedResults`: result rows filed before their size was recorded, not in `results`
   * until housekeeping has read their size (recordOutputSizes).
   */
  storageBytes(): { images: number; results: number; total: number; unsizedResults: number } {
    const totals = Object.fromEntries((this.db.prepare('SELECT what, bytes FROM storage_totals').all() as { what: string; bytes: number }[]).map((r) => [r.what, r.bytes]));
    const images = totals.images ?? 0;
    const results = totals.results ?? 0;
    const unsizedResults = (this.db.prepare('SELECT COUNT(*) AS n FROM outputs WHERE bytes IS NULL').get() as { n: number }).n;
    return { images, results, total: images + results, unsizedResults };
  }

  /**
   * Sums the rows again and corrects storage_totals where it differs (only a change made around
   * the triggers could make it, e.g. rows edited by hand). Returns the totals before and after.
   * Reads every row (20-28 ms for 20,000 studies here, about 150 ms for 100,000), so it is for a
   * daily run, not a scrape.
   */
  recountStorage(): { before: { images: number; results: number }; after: { images: number; results: number } } {
    return this.db.transaction(() => {
      const { images, results } = this.storageBytes();
      const after = {
        images: (this.db.prepare('SELECT IFNULL(SUM(bytes), 0) AS b FROM instances WHERE purged_at IS NULL').get() as { b: number }).b,
        results: (this.db.prepare('SELECT IFNULL(SUM(bytes), 0) AS b FROM outputs').get() as { b: number }).b,
      };
      const set = this.db.prepare('INSERT INTO storage_totals (what, bytes) VALUES (?, ?) ON CONFLICT (what) DO UPDATE SET bytes = excluded.bytes');
      set.run('images', after.images);
      set.run('results', after.results);
      return { before: { images, results }, after };
    })();
  }

  /** Result rows whose file size is not recorded yet (filed before the size was), at most `limit`. */
  unsizedOutputs(limit: number): { sopInstanceUid: string; path: string }[] {
    return this.db.prepare('SELECT sop_instance_uid AS sopInstanceUid, path FROM outputs WHERE bytes IS NULL LIMIT ?').all(limit) as { sopInstanceUid: string; path: string }[];
  }

  /** Records the sizes read from the disk; a row whose path changed meanwhile (a re-run) keeps its own. Returns the rows updated. */
  recordOutputSizes(sizes: { sopInstanceUid: string; path: string; bytes: number }[]): number {
    const set = this.db.prepare('UPDATE outputs SET bytes = ? WHERE sop_instance_uid = ? AND path = ? AND bytes IS NULL');
    return this.db.transaction(() => sizes.reduce((n, s) => n + set.run(s.bytes, s.sopInstanceUid, s.path).changes, 0))();
  }

  // ---------------------------------------------------------------- studies

  getStudy(studyUid: string): StudyRow | undefined {
    return this.db.prepare(`SELECT ${STUDY_COLUMNS} FROM studies WHERE study_uid = ?`).get(studyUid) as StudyRow | undefined;
  }

  listStudies(opts: { status?: StudyStatus; limit?: number } = {}): StudyRow[] {
    const limit = opts.limit ?? 200;
    if (opts.status) {
      return this.db.prepare(`SELECT ${STUDY_COLUMNS} FROM studies WHERE status = ? ORDER BY last_received_at DESC LIMIT ?`).all(opts.status, limit) as StudyRow[];
    }
    return this.db.prepare(`SELECT ${STUDY_COLUMNS} FROM studies ORDER BY last_received_at DESC LIMIT ?`).all(limit) as StudyRow[];
  }

  /**
   * The quiet timer fired: queue the study when nothing arrived for `quietMs`. Returns how long
   * to wait instead when an instance came in meanwhile, or nothing when the study is not receiving.
   */
  queueStudyIfQuiet(studyUid: string, quietMs: number, now = Date.now()): { queued: boolean; waitMs?: number } {
    return this.db.transaction(() => {
      const s = this.db.prepare('SELECT status, last_received_at AS last FROM studies WHERE study_uid = ?').get(studyUid) as
        | { status: StudyStatus; last: number }
        | undefined;
      if (!s || s.status !== 'receiving') return { queued: false };
      const left = s.last + quietMs - now;
      if (left > 0) return { queued: false, waitMs: left };
      this.queueStudy(studyUid, now);
      return { queued: true };
    })();
  }

  private queueStudy(studyUid: string, now: number): void {
    this.db.prepare("UPDATE studies SET status = 'queued', updated_at = ? WHERE study_uid = ?").run(now, studyUid);
    const hasJob = this.db.prepare("SELECT 1 FROM jobs WHERE study_uid = ? AND status IN ('queued','running')").get(studyUid);
    if (!hasJob) this.db.prepare("INSERT INTO jobs (study_uid, status, created_at) VALUES (?, 'queued', ?)").run(studyUid, now);
    this.addEvent('study.queued', studyUid, undefined, now);
  }

  /**
   * After a restart (or crash): jobs left running go back to the queue, studies whose job was
   * lost are queued again, and the studies still receiving are returned so their timers restart.
   */
  recoverAfterRestart(now = Date.now()): RecoveryReport {
    return this.db.transaction((): RecoveryReport => {
      const running = this.db.prepare("SELECT id, study_uid AS studyUid, attempts FROM jobs WHERE status = 'running'").all() as {
        id: number;
        studyUid: string;
        attempts: number;
      }[];
      let requeued = 0;
      for (const j of running) {
        if (j.attempts >= MAX_JOB_ATTEMPTS) {
          // the process died this many times while running this study: it would crash-loop and
          // block the queue, so it fails with a reason the dashboard shows (re-run stays possible)
          const message = `the gateway stopped ${j.attempts} times while analysing this study`;
          this.db.prepare("UPDATE jobs SET status = 'failed', finished_at = ?, error_reason = 'job.crashed', error_message = ? WHERE id = ?").run(now, message, j.id);
          this.db
            .prepare("UPDATE studies SET status = 'failed', error_reason = 'job.crashed', error_message = ?, updated_at = ? WHERE study_uid = ?")
            .run(message, now, j.studyUid);
          this.addEvent('job.failed', j.studyUid, { jobId: j.id, reason: 'job.crashed', attempts: j.attempts }, now);
          continue;
        }
        this.db.prepare("UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ?").run(j.id);
        this.addEvent('job.requeued', j.studyUid, { jobId: j.id, why: 'restart' }, now);
        requeued++;
      }
      this.db.prepare("UPDATE studies SET status = 'queued', updated_at = ? WHERE status = 'processing'").run(now);
      const orphans = this.db
        .prepare("SELECT study_uid AS studyUid FROM studies s WHERE status = 'queued' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid = s.study_uid AND j.status = 'queued')")
        .all() as { studyUid: string }[];
      for (const o of orphans) this.db.prepare("INSERT INTO jobs (study_uid, status, created_at) VALUES (?, 'queued', ?)").run(o.studyUid, now);
      const receiving = this.db
        .prepare("SELECT study_uid AS studyUid, last_received_at AS lastReceivedAt FROM studies WHERE status = 'receiving'")
        .all() as { studyUid: string; lastReceivedAt: number }[];
      return { requeuedJobs: requeued, queuedStudies: orphans.length, receiving };
    })();
  }

  // ---------------------------------------------------------------- jobs

  /** Takes the oldest queued job: job → running, study → processing, run number + 1. */
  claimNextJob(outDirFor: (studyUid: string, run: number) => string, now = Date.now()): ClaimedJob | null {
    return this.db.transaction((): ClaimedJob | null => {
      const job = this.db.prepare("SELECT id, study_uid AS studyUid FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").get() as
        | { id: number; studyUid: string }
        | undefined;
      if (!job) return null;
      const study = this.db
        .prepare('SELECT run_count AS runCount, calling_ae AS callingAe, calling_host AS callingHost, calling_cn AS callingCN, arrivals FROM studies WHERE study_uid = ?')
        .get(job.studyUid) as { runCount: number; callingAe: string | null; callingHost: string | null; callingCN: string | null; arrivals: number } | undefined;
      if (!study) {
        this.db.prepare("UPDATE jobs SET status = 'failed', error_reason = 'internal', error_message = 'study row missing', finished_at = ? WHERE id = ?").run(now, job.id);
        return null;
      }
      const run = study.runCount + 1;
      const outDir = outDirFor(job.studyUid, run);
      this.db
        .prepare(
          "UPDATE jobs SET status = 'running', attempts = attempts + 1, run = ?, out_dir = ?, started_at = ?, arrivals_at_start = ?, error_reason = NULL, error_message = NULL WHERE id = ?",
        )
        .run(run, outDir, now, study.arrivals, job.id);
      this.db.prepare("UPDATE studies SET status = 'processing', run_count = ?, updated_at = ? WHERE study_uid = ?").run(run, now, job.studyUid);
      this.addEvent('job.started', job.studyUid, { jobId: job.id, run }, now);
      // stored '' = no verified certificate; NULL = received before the column existed (unknown)
      const callingCN = study.callingCN === null ? undefined : study.callingCN || null;
      return { jobId: job.id, studyUid: job.studyUid, run, startedAt: now, outDir, callingAe: study.callingAe, callingHost: study.callingHost, callingCN };
    })();
  }

  /** The received instances of a study, as handed to the StudyProcessor. */
  jobInstances(studyUid: string): { sopInstanceUid: string; path: string }[] {
    return this.db
      // files removed by retention cannot be analysed again; their earlier outcome stays on record
      .prepare('SELECT sop_instance_uid AS sopInstanceUid, path FROM instances WHERE study_uid = ? AND purged_at IS NULL ORDER BY series_uid, received_at, sop_instance_uid')
      .all(studyUid) as { sopInstanceUid: string; path: string }[];
  }

  getJob(id: number): JobRow | undefined {
    return this.db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`).get(id) as JobRow | undefined;
  }

  listJobs(studyUid?: string): JobRow[] {
    if (studyUid) return this.db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE study_uid = ? ORDER BY id`).all(studyUid) as JobRow[];
    return this.db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT 200`).all() as JobRow[];
  }

  /** A running job is still running (not requeued by a close or crash recovery meanwhile). */
  private isRunning(jobId: number): { studyUid: string; startedAt: number; arrivalsAtStart: number | null } | null {
    const j = this.db
      .prepare("SELECT study_uid AS studyUid, started_at AS startedAt, arrivals_at_start AS arrivalsAtStart FROM jobs WHERE id = ? AND status = 'running'")
      .get(jobId) as { studyUid: string; startedAt: number; arrivalsAtStart: number | null } | undefined;
    return j ?? null;
  }

  /**
   * Did instances arrive after this job started? Compared by the study's arrival count, not by
   * times: a clock stepped backwards during a job must not hide an instance from analysis. (A job
   * started before the count existed — only possible across an upgrade — falls back to times.)
   */
  private arrivedSince(job: { studyUid: string; startedAt: number; arrivalsAtStart: number | null }): boolean {
    const s = this.db.prepare('SELECT arrivals, last_received_at AS last FROM studies WHERE study_uid = ?').get(job.studyUid) as { arrivals: number; last: number };
    return job.arrivalsAtStart === null ? s.last >= job.startedAt : s.arrivals > job.arrivalsAtStart;
  }

  /**
   * Files a finished run: instance outcomes, outputs (keyed by their deterministic SOP Instance
   * UID, so a re-run replaces), one send per output and target (reset to pending on a re-run,
   * never duplicated), and the study's result. Returns reopened = true when an instance arrived
   * during the run, so the study is receiving again and will be re-run.
   */
  completeJob(jobId: number, result: StudyJobOutput, targets: SendTarget[], now = Date.now()): JobFinish | null {
    return this.db.transaction((): JobFinish | null => {
      const job = this.isRunning(jobId);
      if (!job) return null;
      this.db.prepare("UPDATE jobs SET status = 'done', finished_at = ?, timings_json = ? WHERE id = ?").run(now, JSON.stringify(result.timingsMs ?? {}), jobId);
      const updInstance = this.db.prepare(
        `UPDATE instances SET status = @status, reason = @reason, message = @message, label = @label, probability = @probability,
           malignancy_probability = @malignancyProbability, lesion_count = @lesionCount, lesion_json = @lesionJson,
           frames = @frames, timings_json = @timingsJson, network_spread = @networkSpread, low_agreement = @lowAgreement
         WHERE sop_instance_uid = @sopInstanceUid AND study_uid = @studyUid`,
      );
      for (const o of result.instances) {
        updInstance.run({
          sopInstanceUid: o.sopInstanceUid,
          studyUid: job.studyUid,
          status: o.status,
          reason: o.reason ?? null,
          message: o.message ?? null,
          label: o.label ?? null,
          probability: o.probability ?? null,
          malignancyProbability: o.malignancyProbability ?? null,
          lesionCount: o.lesionCount ?? null,
          lesionJson: o.largestLesion === undefined ? null : JSON.stringify(o.largestLesion),
          frames: o.frames ?? null,
          timingsJson: o.timingsMs ? JSON.stringify(o.timingsMs) : null,
          networkSpread: o.networkSpread ?? null,
          lowAgreement: o.lowAgreement === undefined ? null : Number(o.lowAgreement),
        });
      }
      const upsertOutput = this.db.prepare(
        `INSERT INTO outputs (sop_instance_uid, study_uid, series_uid, sop_class_uid, kind, path, source_sop_instance_uid, job_id, created_at, bytes)
         VALUES (@sopInstanceUid, @studyUid, @seriesInstanceUid, @sopClassUid, @kind, @path, @sourceSopInstanceUid, @jobId, @now, @bytes)
         ON CONFLICT (sop_instance_uid) DO UPDATE SET study_uid = excluded.study_uid, series_uid = excluded.series_uid,
           sop_class_uid = excluded.sop_class_uid, kind = excluded.kind, path = excluded.path,
           source_sop_instance_uid = excluded.source_sop_instance_uid, job_id = excluded.job_id, created_at = excluded.created_at,
           bytes = excluded.bytes`,
      );
      const upsertSend = this.db.prepare(
        `INSERT INTO sends (output_sop_uid, study_uid, destination, ae_title, host, port, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES (@sop, @studyUid, @destination, @aeTitle, @host, @port, 'pending', 0, @now, @now, @now)
         ON CONFLICT (output_sop_uid, destination) DO UPDATE SET ae_title = excluded.ae_title, host = excluded.host, port = excluded.port,
           status = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = NULL, last_status = NULL,
           sent_at = NULL, generation = generation + 1, updated_at = excluded.updated_at`,
      );
      for (const out of result.outputs) {
        upsertOutput.run({ ...out, bytes: out.bytes ?? null, studyUid: job.studyUid, jobId, now });
        for (const t of targets) upsertSend.run({ sop: out.sopInstanceUid, studyUid: job.studyUid, ...t, now });
      }
      // An object this run no longer produces (no lesion any more, an output switched off) must not
      // still be delivered: its unsent sends go. What was already sent stays on record.
      // An instance that failed this time (a worker crash, a timeout) says nothing new: what an
      // earlier run made of it stays, and is still delivered.
      // The study's key object selection of an earlier run is superseded by this run's (or by none,
      // when nothing is flagged now) unless an instance failed this time.
      const produced = new Set(result.outputs.map((o) => o.sopInstanceUid));
      const analysedSources = new Set(result.instances.filter((i) => i.status !== 'failed').map((i) => i.sopInstanceUid));
      const complete = result.instances.every((i) => i.status !== 'failed');
      const stale = (this.db.prepare('SELECT sop_instance_uid AS sop, source_sop_instance_uid AS source, kind FROM outputs WHERE study_uid = ?').all(job.studyUid) as {
        sop: string;
        source: string | null;
        kind: OutputRow['kind'];
      }[]).filter((o) => !produced.has(o.sop) && (o.source !== null ? analysedSources.has(o.source) : o.kind === 'kos' && complete));
      for (const o of stale) this.db.prepare("DELETE FROM sends WHERE output_sop_uid = ? AND status != 'sent'").run(o.sop);
      if (stale.length) this.addEvent('outputs.withdrawn', job.studyUid, { jobId, outputs: stale.map((o) => o.sop) }, now);
      const study = this.db.prepare('SELECT label, malignancy_probability AS p FROM studies WHERE study_uid = ?').get(job.studyUid) as {
        label: Label | null;
        p: number | null;
      };
      const reopened = this.arrivedSince(job);
      // with an instance failed this time, its earlier results still stand: the study keeps the
      // more severe of its earlier label and this run's
      let { label, malignancyProbability } = result;
      if (result.instances.some((i) => i.status === 'failed') && study.label && (!label || LABEL_SEVERITY[study.label] > LABEL_SEVERITY[label])) {
        label = study.label;
        malignancyProbability = Math.max(study.p ?? 0, malignancyProbability ?? 0);
      }
      this.db
        .prepare(
          `UPDATE studies SET status = ?, processed_at = ?, label = ?, malignancy_probability = ?, error_reason = NULL,
             error_message = NULL, updated_at = ? WHERE study_uid = ?`,
        )
        .run(reopened ? 'receiving' : 'processed', now, label, malignancyProbability, now, job.studyUid);
      this.addEvent('job.done', job.studyUid, { jobId, outputs: result.outputs.length, sends: result.outputs.length * targets.length, label }, now);
      if (reopened) this.addEvent('study.reopened', job.studyUid, { why: 'instances arrived during processing' }, now);
      return { reopened };
    })();
  }

  /** The processor threw: the job and the study are failed with the reason (no automatic retry). */
  failJob(jobId: number, reason: string, message: string, now = Date.now()): JobFinish | null {
    return this.db.transaction((): JobFinish | null => {
      const job = this.isRunning(jobId);
      if (!job) return null;
      this.db.prepare("UPDATE jobs SET status = 'failed', finished_at = ?, error_reason = ?, error_message = ? WHERE id = ?").run(now, reason, message, jobId);
      const reopened = this.arrivedSince(job);
      this.db
        .prepare('UPDATE studies SET status = ?, error_reason = ?, error_message = ?, updated_at = ? WHERE study_uid = ?')
        .run(reopened ? 'receiving' : 'failed', reason, message, now, job.studyUid);
      this.addEvent('job.failed', job.studyUid, { jobId, reason, message }, now);
      return { reopened };
    })();
  }

  /** A running job goes back to the queue (graceful shutdown while it was still running, a full disk). */
  requeueJob(jobId: number, now = Date.now(), why = 'shutdown'): void {
    this.db.transaction(() => {
      const job = this.isRunning(jobId);
      if (!job) return;
      // put back on purpose, not interrupted by a crash: the run does not count towards the
      // attempts after which recovery gives a crash-looping study up
      this.db.prepare("UPDATE jobs SET status = 'queued', started_at = NULL, attempts = MAX(attempts - 1, 0) WHERE id = ?").run(jobId);
      this.db.prepare("UPDATE studies SET status = 'queued', updated_at = ? WHERE study_uid = ? AND status = 'processing'").run(now, job.studyUid);
      this.addEvent('job.requeued', job.studyUid, { jobId, why }, now);
    })();
  }

  // ---------------------------------------------------------------- outputs and sends

  listOutputs(studyUid: string): OutputRow[] {
    return this.db.prepare(`SELECT ${OUTPUT_COLUMNS} FROM outputs WHERE study_uid = ? ORDER BY kind, sop_instance_uid`).all(studyUid) as OutputRow[];
  }

  listSends(opts: { studyUid?: string; status?: SendRow['status'] } = {}): SendRow[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.studyUid) {
      where.push('s.study_uid = ?');
      args.push(opts.studyUid);
    }
    if (opts.status) {
      where.push('s.status = ?');
      args.push(opts.status);
    }
    const sql = `SELECT ${SEND_COLUMNS} FROM sends s ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY s.id`;
    return this.db.prepare(sql).all(...args) as SendRow[];
  }

  /** The result files a study's outputs point to (an earlier run's folder keeps these). */
  outputPaths(studyUid: string): Set<string> {
    return new Set((this.db.prepare('SELECT path FROM outputs WHERE study_uid = ?').all(studyUid) as { path: string }[]).map((r) => r.path));
  }

  /**
   * Pending sends due now, oldest first, with the file each one delivers: at most `perDestination`
   * for each destination, so a PACS that is down with a long backlog never hides another's rows.
   */
  dueSends(now = Date.now(), perDestination = 500): DueSend[] {
    return this.db
      .prepare(
        `SELECT * FROM (
           SELECT ${SEND_COLUMNS}, o.path, o.sop_class_uid AS sopClassUid,
             ROW_NUMBER() OVER (PARTITION BY s.destination ORDER BY s.next_attempt_at, s.id) AS nth
           FROM sends s JOIN outputs o ON o.sop_instance_uid = s.output_sop_uid
           WHERE s.status = 'pending' AND s.next_attempt_at <= ?)
         WHERE nth <= ? ORDER BY nextAttemptAt, id`,
      )
      .all(now, perDestination)
      .map((r) => {
        const { nth: _nth, ...row } = r as DueSend & { nth: number };
        return row;
      });
  }

  /** When the next pending send falls due, counting only those due after `after` (null when none). */
  nextSendDueAt(after = Number.MIN_SAFE_INTEGER): number | null {
    const r = this.db.prepare("SELECT MIN(next_attempt_at) AS t FROM sends WHERE status = 'pending' AND next_attempt_at > ?").get(after) as { t: number | null };
    return r.t;
  }

  /** Delivered. Ignored when the row was reset by a re-run since the attempt began (other generation). */
  markSendSent(id: number, generation: number, dimseStatus: number, now = Date.now()): boolean {
    const r = this.db
      .prepare("UPDATE sends SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_status = ?, last_error = NULL, updated_at = ? WHERE id = ? AND generation = ? AND status = 'pending'")
      .run(now, dimseStatus, now, id, generation);
    return r.changes === 1;
  }

  /** Not delivered this time: try again at nextAttemptAt, keeping the error visible. */
  markSendRetry(id: number, generation: number, error: string, dimseStatus: number | null, nextAttemptAt: number, now = Date.now()): boolean {
    const r = this.db
      .prepare("UPDATE sends SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, last_status = ?, updated_at = ? WHERE id = ? AND generation = ? AND status = 'pending'")
      .run(nextAttemptAt, error, dimseStatus, now, id, generation);
    return r.changes === 1;
  }

  /** Cannot ever be delivered as it stands (file gone, destination no longer configured). */
  markSendFailed(id: number, generation: number, error: string, now = Date.now()): boolean {
    const r = this.db
      .prepare("UPDATE sends SET status = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ? AND generation = ? AND status = 'pending'")
      .run(error, now, id, generation);
    return r.changes === 1;
  }

  /** Puts failed or sent rows back in the queue (e.g. from the dashboard: "resend"). */
  resetSends(ids: number[], now = Date.now()): number {
    const stmt = this.db.prepare(
      "UPDATE sends SET status = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL, sent_at = NULL, generation = generation + 1, updated_at = ? WHERE id = ?",
    );
    return this.db.transaction(() => ids.reduce((n, id) => n + stmt.run(now, now, id).changes, 0))();
  }
}
