/**
 * Read-only views of the gateway's database for the dashboard and the JSON API: the overview,
 * the study list with filters, one study in full, the failures, the destinations. Patient names
 * and IDs are in the study views (shown to signed-in users only) and nowhere else.
 */
import type Database from 'better-sqlite3';
import type { InstanceRow, JobRow, OutputRow, SendRow, StudyRow, StudyStatus } from '../store/rows';
import type { Store } from '../store/store';
import { notDiscarded } from '../store/failures';

export const STUDY_STATUSES: readonly StudyStatus[] = ['receiving', 'queued', 'processing', 'processed', 'failed'];
export const LABELS = ['normal', 'benign', 'malignant'] as const;

/**
 * Midnight of the day `now` falls in (the dashboard's "today"): in the gateway's local time, or,
 * given `utcOffsetMinutes`, in the zone that far from UTC (the browser's).
 */
export function startOfDay(now: number, utcOffsetMinutes?: number): number {
  if (utcOffsetMinutes !== undefined) {
    const shift = utcOffsetMinutes * 60_000;
    return Math.floor((now + shift) / 86_400_000) * 86_400_000 - shift;
  }
  const d = new Date(now);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** A browser's offset from UTC in minutes (east positive, within ±14 h) from a query value, or undefined. */
export function parseUtcOffset(v: unknown): number | undefined {
  return typeof v === 'string' && /^-?\d{1,3}$/.test(v) && Math.abs(Number(v)) <= 14 * 60 ? Number(v) : undefined;
}

/**
 * Midnight of a YYYY-MM-DD date (and `days` later), or null when it is not one: in the gateway's
 * local time, or, given `utcOffsetMinutes`, in the zone that far from UTC (the browser's).
 */
export function parseDay(s: unknown, utcOffsetMinutes?: number, days = 0): number | null {
  if (typeof s !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(s)) return null;
  const [y, m, d] = s.split('-').map(Number);
  if (utcOffsetMinutes !== undefined) {
    const utc = Date.UTC(y, m - 1, d);
    return new Date(utc).getUTCDate() === d ? utc + days * 86_400_000 - utcOffsetMinutes * 60_000 : null;
  }
  const t = new Date(y, m - 1, d + days).getTime(); // the next local midnight, whatever the day's length (DST)
  return Number.isFinite(t) && new Date(y, m - 1, d).getDate() === d ? t : null;
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface SendSummary {
  sent: number;
  pending: number;
  retrying: number;
  failed: number;
}

export interface StudyListItem extends StudyRow {
  instances: number;
  sends: SendSummary;
  /** an analysed instance of the study has its model's networks disagreeing (its call is uncertain) */
  lowAgreement: boolean;
}

export interface StudyFilter {
  status?: StudyStatus;
  label?: string;
  /** received on or after this local day (YYYY-MM-DD) */
  from?: string;
  /** received on or before this local day */
  to?: string;
  /**
   * minutes to add to UTC for the caller's local time (the browser's zone: -getTimezoneOffset()):
   * `from` and `to` are days there; without it, days in the gateway's own zone
   */
  utcOffsetMinutes?: number;
  limit?: number;
  offset?: number;
}

const STUDY_COLUMNS = `s.study_uid AS studyUid, s.status, s.patient_name AS patientName, s.patient_id AS patientId,
  s.accession_number AS accessionNumber, s.study_date AS studyDate, s.study_description AS studyDescription,
  s.calling_ae AS callingAe, s.calling_host AS callingHost, s.first_received_at AS firstReceivedAt,
  s.last_received_at AS lastReceivedAt, s.processed_at AS processedAt, s.label,
  s.malignancy_probability AS malignancyProbability, s.error_reason AS errorReason,
  s.error_message AS errorMessage, s.run_count AS runCount, s.updated_at AS updatedAt`;

const SEND_SUMMARY = `(SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid) AS instances,
  (SELECT COUNT(*) FROM sends x WHERE x.study_uid = s.study_uid AND x.status = 'sent') AS sendsSent,
  (SELECT COUNT(*) FROM sends x WHERE x.study_uid = s.study_uid AND x.status = 'pending') AS sendsPending,
  (SELECT COUNT(*) FROM sends x WHERE x.study_uid = s.study_uid AND x.status = 'pending' AND x.attempts > 0) AS sendsRetrying,
  (SELECT COUNT(*) FROM sends x WHERE x.study_uid = s.study_uid AND x.status = 'failed') AS sendsFailed,
  EXISTS (SELECT 1 FROM instances i WHERE i.study_uid = s.study_uid AND i.status = 'analysed' AND i.low_agreement = 1) AS lowAgreement`;

type RawListRow = StudyRow & { instances: number; sendsSent: number; sendsPending: number; sendsRetrying: number; sendsFailed: number; lowAgreement: 0 | 1 };

function toListItem(r: RawListRow): StudyListItem {
  const { sendsSent, sendsPending, sendsRetrying, sendsFailed, lowAgreement, ...rest } = r;
  return { ...rest, sends: { sent: sendsSent, pending: sendsPending, retrying: sendsRetrying, failed: sendsFailed }, lowAgreement: lowAgreement === 1 };
}

export interface InstanceView extends Omit<InstanceRow, 'lesionJson' | 'timingsJson' | 'path' | 'lowAgreement'> {
  /** the model's networks disagree on this image (its call is uncertain); null: no such output, or not analysed */
  lowAgreement: boolean | null;
  lesion: { longAxis: number; shortAxis: number; area: number; unit: 'mm' | 'px' } | null;
  timingsMs: Record<string, number> | null;
  purgedAt: number | null;
  /** an overlay (Secondary Capture) made from this instance, if any */
  overlaySopInstanceUid: string | null;
}

export interface StudyDetail {
  study: StudyRow;
  instances: InstanceView[];
  outputs: Omit<OutputRow, 'path'>[];
  sends: SendRow[];
  jobs: (Omit<JobRow, 'timingsJson' | 'outDir'> & { timingsMs: Record<string, number> | null })[];
  /** milliseconds per pipeline stage, summed over the instances of the latest run */
  stageTimesMs: Record<string, number>;
  events: { id: number; at: number; kind: string; detail: unknown }[];
}

function parseJson<T>(s: string | null): T | null {
  if (!s) return null;
  try {
    return JSON.parse(s) as T;
  } catch {
    return null;
  }
}

export class DashboardQueries {
  private readonly db: Database.Database;

  constructor(private readonly store: Store) {
    this.db = store.db;
  }

  listStudies(f: StudyFilter = {}): { total: number; items: StudyListItem[] } {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.status) {
      where.push('s.status = ?');
      args.push(f.status);
    }
    if (f.label) {
      if (f.label === 'none') where.push('s.label IS NULL');
      else {
        where.push('s.label = ?');
        args.push(f.label);
      }
    }
    const from = parseDay(f.from, f.utcOffsetMinutes);
    if (from !== null) {
      where.push('s.first_received_at >= ?');
      args.push(from);
    }
    const to = parseDay(f.to, f.utcOffsetMinutes, 1);
    if (to !== null) {
      where.push('s.first_received_at < ?');
      args.push(to);
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM studies s ${w}`).get(...args) as { n: number }).n;
    const limit = Math.min(Math.max(1, f.limit ?? 50), 500);
    const offset = Math.max(0, f.offset ?? 0);
    const rows = this.db
      .prepare(`SELECT ${STUDY_COLUMNS}, ${SEND_SUMMARY} FROM studies s ${w} ORDER BY s.last_received_at DESC, s.study_uid LIMIT ? OFFSET ?`)
      .all(...args, limit, offset) as RawListRow[];
    return { total, items: rows.map(toListItem) };
  }

  study(studyUid: string): StudyDetail | null {
    const study = this.store.getStudy(studyUid);
    if (!study) return null;
    const outputs = this.store.listOutputs(studyUid);
    const overlayBySource = new Map<string, string>();
    for (const o of outputs) if (o.kind === 'overlay' && o.sourceSopInstanceUid) overlayBySource.set(o.sourceSopInstanceUid, o.sopInstanceUid);
    const purged = new Map(
      (this.db.prepare('SELECT sop_instance_uid AS sop, purged_at AS at FROM instances WHERE study_uid = ? AND purged_at IS NOT NULL').all(studyUid) as { sop: string; at: number }[]).map(
        (r) => [r.sop, r.at],
      ),
    );
    const stageTimesMs: Record<string, number> = {};
    const instances: InstanceView[] = this.store.listInstances(studyUid).map((i) => {
      const { lesionJson, timingsJson, path: _path, lowAgreement, ...rest } = i;
      const timingsMs = parseJson<Record<string, number>>(timingsJson);
      for (const [k, v] of Object.entries(timingsMs ?? {})) if (typeof v === 'number') stageTimesMs[k] = (stageTimesMs[k] ?? 0) + v;
      return {
        ...rest,
        lowAgreement: lowAgreement === null ? null : lowAgreement === 1,
        lesion: parseJson(lesionJson),
        timingsMs,
        purgedAt: purged.get(i.sopInstanceUid) ?? null,
        overlaySopInstanceUid: overlayBySource.get(i.sopInstanceUid) ?? null,
      };
    });
    const jobs = this.store.listJobs(studyUid).map(({ timingsJson, outDir: _o, ...j }) => ({ ...j, timingsMs: parseJson<Record<string, number>>(timingsJson) }));
    const lastDone = [...jobs].reverse().find((j) => j.status === 'done' && j.startedAt && j.finishedAt);
    if (lastDone) {
      stageTimesMs.queueWait = Math.max(0, lastDone.startedAt! - lastDone.createdAt);
      stageTimesMs.job = lastDone.finishedAt! - lastDone.startedAt!;
    }
    const sends = this.store.listSends({ studyUid });
    const lastSent = sends.reduce((m, s) => Math.max(m, s.sentAt ?? 0), 0);
    if (lastDone && lastSent >= lastDone.finishedAt! && sends.every((s) => s.status === 'sent')) stageTimesMs.send = lastSent - lastDone.finishedAt!;
    return {
      study,
      instances,
      outputs: outputs.map(({ path: _p, ...o }) => o),
      sends,
      jobs,
      stageTimesMs,
      events: this.store.listEvents({ studyUid, limit: 100 }).map((e) => ({ id: e.id, at: e.at, kind: e.kind, detail: parseJson(e.detail) ?? e.detail })),
    };
  }

  overview(now = Date.now(), utcOffsetMinutes?: number) {
    const day = startOfDay(now, utcOffsetMinutes);
    const one = <T>(sql: string, ...args: unknown[]) => this.db.prepare(sql).get(...args) as T;
    const n = (sql: string, ...args: unknown[]) => one<{ n: number }>(sql, ...args).n;
    const finishedToday = this.db
      .prepare(
        `SELECT j.finished_at AS finishedAt, j.started_at AS startedAt, s.last_received_at AS lastReceivedAt,
           (SELECT MAX(x.sent_at) FROM sends x WHERE x.study_uid = j.study_uid) AS lastSentAt,
           (SELECT COUNT(*) FROM sends x WHERE x.study_uid = j.study_uid AND x.status != 'sent') AS unsent
         FROM jobs j JOIN studies s ON s.study_uid = j.study_uid
         WHERE j.status = 'done' AND j.finished_at >= ?`,
      )
      .all(day) as { finishedAt: number; startedAt: number; lastReceivedAt: number; lastSentAt: number | null; unsent: number }[];
    // latency from the study's last received instance (so including the quiet period) to its results
    const processing = finishedToday.filter((r) => r.lastReceivedAt <= r.startedAt).map((r) => r.finishedAt - r.lastReceivedAt);
    const delivery = finishedToday
      .filter((r) => r.lastReceivedAt <= r.startedAt && r.unsent === 0 && r.lastSentAt !== null)
      .map((r) => r.lastSentAt! - r.lastReceivedAt);
    return {
      now,
      today: {
        since: day,
        studiesReceived: n('SELECT COUNT(*) AS n FROM studies WHERE first_received_at >= ?', day),
        instancesReceived: n('SELECT COUNT(*) AS n FROM instances WHERE received_at >= ?', day),
        studiesProcessed: n("SELECT COUNT(DISTINCT study_uid) AS n FROM jobs WHERE status = 'done' AND finished_at >= ?", day),
        studiesFailed: n("SELECT COUNT(DISTINCT study_uid) AS n FROM jobs WHERE status = 'failed' AND finished_at >= ?", day),
        instancesFailed: n("SELECT COUNT(*) AS n FROM instances WHERE status = 'failed' AND received_at >= ?", day),
        resultsSent: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'sent' AND sent_at >= ?", day),
        byLabel: Object.fromEntries(
          (this.db.prepare("SELECT label, COUNT(*) AS n FROM studies WHERE processed_at >= ? AND status = 'processed' AND label IS NOT NULL GROUP BY label").all(day) as { label: string; n: number }[]).map(
            (r) => [r.label, r.n],
          ),
        ),
      },
      queue: {
        receiving: n("SELECT COUNT(*) AS n FROM studies WHERE status = 'receiving'"),
        queued: n("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'"),
        running: n("SELECT COUNT(*) AS n FROM jobs WHERE status = 'running'"),
        sendsPending: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'pending'"),
        sendsRetrying: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'pending' AND attempts > 0"),
        sendsFailed: n("SELECT COUNT(*) AS n FROM sends WHERE status = 'failed'"),
      },
      latencyMs: {
        processing: { median: median(processing), worst: processing.length ? Math.max(...processing) : null, studies: processing.length },
        delivery: { median: median(delivery), worst: delivery.length ? Math.max(...delivery) : null, studies: delivery.length },
      },
      recent: this.listStudies({ limit: 10 }).items,
    };
  }

  /** Failures not discarded by an admin (a newer failure of a discarded item shows again). */
  failures() {
    const studies = this.db
      .prepare(
        `SELECT ${STUDY_COLUMNS} FROM studies s
         WHERE s.status = 'failed' AND ${notDiscarded('study', 's.study_uid', 's.updated_at')}
         ORDER BY s.updated_at DESC LIMIT 500`,
      )
      .all() as StudyRow[];
    const instances = this.db
      .prepare(
        `SELECT i.sop_instance_uid AS sopInstanceUid, i.study_uid AS studyUid, i.sop_class_uid AS sopClassUid,
           i.transfer_syntax_uid AS transferSyntaxUid, i.received_at AS receivedAt, i.calling_ae AS callingAe,
           i.calling_host AS callingHost, i.reason, i.message, i.bytes
         FROM instances i
         WHERE i.status = 'failed' AND ${notDiscarded('instance', 'i.sop_instance_uid', 'i.received_at')}
         ORDER BY i.received_at DESC LIMIT 500`,
      )
      .all();
    const sends = this.db
      .prepare(
        `SELECT s.id, s.output_sop_uid AS outputSopUid, s.study_uid AS studyUid, s.destination, s.ae_title AS aeTitle, s.host, s.port,
           s.status, s.attempts, s.next_attempt_at AS nextAttemptAt, s.last_error AS lastError, s.last_status AS lastStatus,
           s.updated_at AS updatedAt, o.kind
         FROM sends s LEFT JOIN outputs o ON o.sop_instance_uid = s.output_sop_uid
         WHERE (s.status = 'failed' OR (s.status = 'pending' AND s.attempts > 0))
           AND ${notDiscarded('send', 'CAST(s.id AS TEXT)', 's.updated_at')}
         ORDER BY s.updated_at DESC LIMIT 1000`,
      )
      .all();
    return { studies, instances, sends };
  }

  /** Per destination (configured ones first, then return-to-sender targets seen in sends). */
  destinations(configured: { name: string; aeTitle: string; host: string; port: number }[]) {
    const stats = this.db
      .prepare(
        `SELECT destination,
           SUM(status = 'sent') AS sent, SUM(status = 'pending') AS pending,
           SUM(status = 'pending' AND attempts > 0) AS retrying, SUM(status = 'failed') AS failed,
           MAX(sent_at) AS lastSuccessAt
         FROM sends GROUP BY destination`,
      )
      .all() as { destination: string; sent: number; pending: number; retrying: number; failed: number; lastSuccessAt: number | null }[];
    const lastError = this.db.prepare(
      `SELECT last_error AS error, updated_at AS at, ae_title AS aeTitle, host, port FROM sends
       WHERE destination = ? AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1`,
    );
    const byName = new Map(stats.map((s) => [s.destination, s]));
    const names = [...configured.map((c) => c.name), ...stats.map((s) => s.destination).filter((d) => !configured.some((c) => c.name === d))];
    return names.map((name) => {
      const c = configured.find((x) => x.name === name);
      const s = byName.get(name);
      const err = lastError.get(name) as { error: string; at: number; aeTitle: string; host: string; port: number } | undefined;
      return {
        name,
        configured: !!c,
        aeTitle: c?.aeTitle ?? err?.aeTitle ?? null,
        host: c?.host ?? err?.host ?? null,
        port: c?.port ?? err?.port ?? null,
        sent: s?.sent ?? 0,
        pending: s?.pending ?? 0,
        retrying: s?.retrying ?? 0,
        failed: s?.failed ?? 0,
        lastSuccessAt: s?.lastSuccessAt ?? null,
        lastError: err ? { error: err.error, at: err.at } : null,
      };
    });
  }

  /** A study's instance or output file, for image rendering (null when unknown). */
  instanceFile(studyUid: string, sopInstanceUid: string): { path: string; purgedAt: number | null } | null {
    return (
      (this.db.prepare('SELECT path, purged_at AS purgedAt FROM instances WHERE study_uid = ? AND sop_instance_uid = ?').get(studyUid, sopInstanceUid) as
        | { path: string; purgedAt: number | null }
        | undefined) ?? null
    );
  }

  outputFile(studyUid: string, sopInstanceUid: string): { path: string; kind: string } | null {
    return (this.db.prepare('SELECT path, kind FROM outputs WHERE study_uid = ? AND sop_instance_uid = ?').get(studyUid, sopInstanceUid) as { path: string; kind: string } | undefined) ?? null;
  }

  /** Something changed since the last call (new event, send or study update, audit entry): drives live updates. */
  changeStamp(): string {
    const r = this.db
      .prepare(
        `SELECT (SELECT IFNULL(MAX(id), 0) FROM events) AS e, (SELECT IFNULL(MAX(updated_at), 0) FROM sends) AS s,
           (SELECT IFNULL(MAX(updated_at), 0) FROM studies) AS st, (SELECT IFNULL(MAX(id), 0) FROM audit_log) AS a,
           (SELECT COUNT(*) FROM studies) AS n`,
      )
      .get() as Record<string, number>;
    return `${r.e}:${r.s}:${r.st}:${r.a}:${r.n}`;
  }

  newEvents(afterId: number, limit = 100): { id: number; kind: string; studyUid: string | null }[] {
    return this.db.prepare('SELECT id, kind, study_uid AS studyUid FROM events WHERE id > ? ORDER BY id LIMIT ?').all(afterId, limit) as {
      id: number;
      kind: string;
      studyUid: string | null;
    }[];
  }

  lastEventId(): number {
    return (this.db.prepare('SELECT IFNULL(MAX(id), 0) AS id FROM events').get() as { id: number }).id;
  }
}
