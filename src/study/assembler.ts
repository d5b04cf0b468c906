/**
 * The study assembler: a study is complete once `study.quietSeconds` pass without a new
 * instance. One timer per receiving study; the deadline itself lives in SQLite
 * (last_received_at), so after a restart a study whose quiet time ran out while the process was
 * down is queued at once, and the others get a timer for what is left.
 */
import type { Logger } from '../log';
import type { Store } from '../store/store';

export class StudyAssembler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly quietMs: number,
    /** called whenever a study was queued (wakes the job runner) */
    private readonly onQueued: (studyUid: string) => void,
    private readonly logger: Logger,
  ) {}

  /** Restart recovery: requeues interrupted jobs and re-arms the timers of receiving studies. */
  start(now = Date.now()): void {
    const r = this.store.recoverAfterRestart(now);
    if (r.requeuedJobs || r.queuedStudies) this.logger.info({ requeuedJobs: r.requeuedJobs, queuedStudies: r.queuedStudies }, 'interrupted jobs requeued');
    for (const s of r.receiving) this.arm(s.studyUid, Math.max(0, s.lastReceivedAt + this.quietMs - now));
    this.onQueued(''); // jobs queued before the restart (or requeued just now)
  }

  /** An instance of the study was stored: its quiet period starts again. */
  instanceArrived(studyUid: string): void {
    this.arm(studyUid, this.quietMs);
  }

  /** Re-arms the timer from the stored last arrival (a study re-opened by a finished job). */
  watch(studyUid: string): void {
    const s = this.store.getStudy(studyUid);
    if (s && s.status === 'receiving') this.arm(studyUid, Math.max(0, s.lastReceivedAt + this.quietMs - Date.now()));
  }

  pending(): number {
    return this.timers.size;
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private arm(studyUid: string, delayMs: number): void {
    if (this.closed) return;
    const old = this.timers.get(studyUid);
    if (old) clearTimeout(old);
    const t = setTimeout(() => this.fire(studyUid), delayMs);
    t.unref();
    this.timers.set(studyUid, t);
  }

  private fire(studyUid: string): void {
    this.timers.delete(studyUid);
    if (this.closed || this.store.isClosed) return;
    try {
      const r = this.store.queueStudyIfQuiet(studyUid, this.quietMs);
      if (r.queued) {
        this.logger.info({ studyInstanceUid: studyUid }, 'study complete, queued');
        this.onQueued(studyUid);
      } else if (r.waitMs !== undefined) {
        this.arm(studyUid, r.waitMs);
      }
    } catch (e) {
      // a database error must not kill the process; retry later
      this.logger.error({ studyInstanceUid: studyUid, err: (e as Error).message }, 'could not queue study');
      this.arm(studyUid, this.quietMs);
    }
  }
}
