/**
 * What an admin can do to a study from the dashboard: re-run the analysis, re-send its results,
 * delete it, retry or discard a failed send, discard a failure. Each one is a small transaction
 * on the gateway's store followed by a nudge to the gateway (sender / runner) when it has one.
 *
 * Results: `{ ok: true, ... }`, or `{ ok: false, code, message }` where code maps to an HTTP
 * status (not_found 404, conflict 409).
 */
import type { AssociationCounts } from '../dicom/associationStats';
import type { Destination } from '../dispatch/destination';
import type { Store } from '../store/store';
import { removeStudyFiles } from '../store/studyFiles';
import type { RoutingSettings } from '../study/routingSettings';

/** The parts of the gateway the dashboard drives (src/gateway.ts `Gateway` satisfies it). */
export interface DashboardGateway {
  readonly store: Store;
  /** the effective routing the gateway uses; without it the dashboard makes one on the same database */
  readonly routing?: RoutingSettings;
  destination(name: string): Destination | undefined;
  kickSender(): void;
  /** wakes the job runner (a re-run is picked up at once); without it, at the runner's next wake-up */
  kickRunner?(): void;
  /** DICOM association counts for /metrics; without it those metrics are absent */
  associations?(): AssociationCounts;
}

export type ActionResult<T extends object = object> = ({ ok: true } & T) | { ok: false; code: 'not_found' | 'conflict' | 'bad_request'; message: string };

/** DICOM UIDs are digits and dots (PS3.5 9.1): safe as a folder name under dataDir. */
const UID = /^[0-9]+(\.[0-9]+)*$/;

const DONE: readonly string[] = ['processed', 'failed'];

export class StudyActions {
  constructor(
    private readonly gateway: DashboardGateway,
    private readonly dataDir: string,
  ) {}

  private get store(): Store {
    return this.gateway.store;
  }

  private get db() {
    return this.gateway.store.db;
  }

  /** Queues the study for analysis again (its results replace the earlier ones: same UIDs). */
  rerun(studyUid: string, by: string, now = Date.now()): ActionResult<{ started: boolean }> {
    const r = this.db.transaction((): ActionResult<{ started: boolean }> => {
      const s = this.store.getStudy(studyUid);
      if (!s) return { ok: false, code: 'not_found', message: 'no such study' };
      if (!DONE.includes(s.status)) return { ok: false, code: 'conflict', message: `the study is ${s.status}; re-run it once that is over` };
      const purged = (this.db.prepare('SELECT COUNT(*) AS n FROM instances WHERE study_uid = ? AND purged_at IS NOT NULL').get(studyUid) as { n: number }).n;
      if (purged > 0) return { ok: false, code: 'conflict', message: `${purged} received image(s) of this study were deleted by retention: it cannot be re-run` };
      this.db.prepare("UPDATE studies SET status = 'queued', error_reason = NULL, error_message = NULL, updated_at = ? WHERE study_uid = ?").run(now, studyUid);
      const busy = this.db.prepare("SELECT 1 FROM jobs WHERE study_uid = ? AND status IN ('queued','running')").get(studyUid);
      if (!busy) this.db.prepare("INSERT INTO jobs (study_uid, status, created_at) VALUES (?, 'queued', ?)").run(studyUid, now);
      this.store.addEvent('study.queued', studyUid, { by, why: 're-run from the dashboard' }, now);
      return { ok: true, started: false };
    })();
    if (r.ok && this.gateway.kickRunner) {
      this.gateway.kickRunner();
      return { ok: true, started: true };
    }
    return r;
  }

  /** Puts every send of the study (optionally of one destination) back in the queue. */
  resend(studyUid: string, by: string, destination?: string): ActionResult<{ sends: number }> {
    if (!this.store.getStudy(studyUid)) return { ok: false, code: 'not_found', message: 'no such study' };
    const ids = this.store
      .listSends({ studyUid })
      .filter((s) => !destination || s.destination === destination)
      .map((s) => s.id);
    if (ids.length === 0) return { ok: false, code: 'conflict', message: destination ? `nothing of this study goes to "${destination}"` : 'this study has no results to send' };
    const n = this.store.resetSends(ids);
    this.store.addEvent('send.requeued', studyUid, { by, sends: n, destination: destination ?? null });
    this.gateway.kickSender();
    return { ok: true, sends: n };
  }

  /** One failed (or still retrying) send: try again now. */
  retrySend(id: number, by: string): ActionResult<{ studyUid: string }> {
    const s = this.sendRow(id);
    if (!s) return { ok: false, code: 'not_found', message: 'no such send' };
    if (s.status === 'sent') return { ok: false, code: 'conflict', message: 'already sent (use re-send on the study to send it again)' };
    this.store.resetSends([id]);
    this.store.addEvent('send.requeued', s.studyUid, { by, sends: 1, destination: s.destination });
    this.gateway.kickSender();
    return { ok: true, studyUid: s.studyUid };
  }

  /** Retries every failed or retrying send (optionally of one destination). */
  retryAllSends(by: string, destination?: string): ActionResult<{ sends: number }> {
    const rows = this.db
      .prepare(`SELECT id, study_uid AS studyUid FROM sends WHERE (status = 'failed' OR (status = 'pending' AND attempts > 0)) ${destination ? 'AND destination = ?' : ''}`)
      .all(...(destination ? [destination] : [])) as { id: number; studyUid: string }[];
    const n = this.store.resetSends(rows.map((r) => r.id));
    for (const studyUid of new Set(rows.map((r) => r.studyUid))) this.store.addEvent('send.requeued', studyUid, { by, destination: destination ?? null });
    if (n) this.gateway.kickSender();
    return { ok: true, sends: n };
  }

  /** Gives up on a send: it stops retrying and leaves the Failures page. */
  discardSend(id: number, by: string, now = Date.now()): ActionResult<{ studyUid: string }> {
    const s = this.sendRow(id);
    if (!s) return { ok: false, code: 'not_found', message: 'no such send' };
    if (s.status === 'sent') return { ok: false, code: 'conflict', message: 'already sent' };
    if (s.status === 'pending') this.store.markSendFailed(id, s.generation, `send.discarded: given up by ${by}`, now);
    this.dismiss('send', String(id), by, now + 1);
    this.store.addEvent('send.discarded', s.studyUid, { by, destination: s.destination }, now);
    return { ok: true, studyUid: s.studyUid };
  }

  /** Hides a failed study or instance from the Failures page (until it fails again). */
  discardFailure(kind: 'study' | 'instance', key: string, by: string, now = Date.now()): ActionResult {
    const failed = (
      kind === 'study'
        ? this.db.prepare("SELECT study_uid AS studyUid FROM studies WHERE study_uid = ? AND status = 'failed'").get(key)
        : this.db.prepare("SELECT study_uid AS studyUid FROM instances WHERE sop_instance_uid = ? AND status = 'failed'").get(key)
    ) as { studyUid: string | null } | undefined;
    if (!failed) return { ok: false, code: 'not_found', message: `no failed ${kind} with that UID` };
    this.dismiss(kind, key, by, now);
    // on the study's record like every admin action (result retention counts its time from the last one)
    this.store.addEvent('failure.discarded', failed.studyUid, { by, kind, ...(kind === 'instance' ? { sopInstanceUid: key } : {}) }, now);
    return { ok: true };
  }

  /**
   * Deletes a study that is not in the pipeline: its rows (instances, jobs, outputs, sends,
   * events) and its files (received images and results). The audit log keeps the record.
   */
  async delete(studyUid: string): Promise<ActionResult<{ files: number }>> {
    if (!UID.test(studyUid)) return { ok: false, code: 'not_found', message: 'no such study' };
    const rows = this.db.transaction((): ActionResult<{ paths: string[] }> => {
      const s = this.store.getStudy(studyUid);
      if (!s) return { ok: false, code: 'not_found', message: 'no such study' };
      if (!DONE.includes(s.status)) return { ok: false, code: 'conflict', message: `the study is ${s.status}; delete it once that is over` };
      const { images, results } = this.store.deleteStudyRows(studyUid);
      return { ok: true, paths: [...images, ...results] };
    })();
    if (!rows.ok) return rows;
    const { files } = await removeStudyFiles(this.dataDir, studyUid, rows.paths);
    return { ok: true, files };
  }

  private sendRow(id: number): { id: number; studyUid: string; destination: string; status: string; generation: number } | undefined {
    return this.db.prepare('SELECT id, study_uid AS studyUid, destination, status, generation FROM sends WHERE id = ?').get(id) as
      | { id: number; studyUid: string; destination: string; status: string; generation: number }
      | undefined;
  }

  private dismiss(kind: 'study' | 'instance' | 'send', key: string, by: string, now: number): void {
    this.db
      .prepare('INSERT INTO failure_dismissals (kind, key, at, username) VALUES (?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET at = excluded.at, username = excluded.username')
      .run(kind, key, now, by);
  }
}
