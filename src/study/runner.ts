/**
 * The job runner: takes queued studies from the store, runs the injected StudyProcessor on each
 * (a few at a time at most), and files what comes back: instance outcomes, outputs and one send
 * per output and target. A processor that throws fails the job with its reason; it never takes
 * the gateway down.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log';
import { ensureDirDurable, nodeFileOps } from '../store/files';
import type { SendTarget } from '../store/rows';
import type { ClaimedJob, Store } from '../store/store';
import type { OutputObject, StudyJobOutput, StudyProcessor } from '../types/pipeline';

export interface RunnerOptions {
  store: Store;
  processor: StudyProcessor;
  dataDir: string;
  /** studies processed at the same time */
  concurrency: number;
  targetsFor(job: ClaimedJob): SendTarget[];
  /** a job finished (done or failed); reopened = instances arrived meanwhile */
  onFinished(job: ClaimedJob, outcome: { ok: boolean; reopened: boolean; outputs: number }): void;
  logger: Logger;
  /** after a full disk (or a database that could not take a job's end), wait this long before trying again (default 60 s) */
  storageRetryMs?: number;
}

/** A full disk or quota: not the study's fault, and gone once space is freed. */
export function isStorageFull(message: string | undefined): boolean {
  return /ENOSPC|EDQUOT|no space left on device|disk quota exceeded|database or disk is full/i.test(message ?? '');
}

/** dataDir/results/<study>/run-<n>: each run keeps its own folder, so a re-run never overwrites files still being sent. */
export function runDir(dataDir: string, studyUid: string, run: number): string {
  return path.join(dataDir, 'results', studyUid, `run-${run}`);
}

/**
 * Flushes the processor's files before the database promises to deliver them, and gives each its
 * size as written (the store sums them for housekeeping.maxStorageGB).
 */
async function syncOutputs(outDir: string, outputs: OutputObject[]): Promise<OutputObject[]> {
  const sized: OutputObject[] = [];
  for (const o of outputs) {
    const fh = await fsp.open(o.path, 'r');
    try {
      await fh.sync();
      sized.push({ ...o, bytes: (await fh.stat()).size });
    } finally {
      await fh.close();
    }
  }
  await nodeFileOps.syncDir(outDir);
  return sized;
}

export class JobRunner {
  private readonly running = new Map<number, Promise<void>>();
  private closing = false;
  private halted = false;
  /** no job is claimed before this time (a full disk: every job would fail the same way) */
  private pausedUntil = 0;
  private resumeTimer: NodeJS.Timeout | null = null;
  /** jobs to put back in the queue once the database can take it */
  private readonly retries: (() => void)[] = [];

  constructor(private readonly opts: RunnerOptions) {}

  private get retryMs(): number {
    return this.opts.storageRetryMs ?? 60_000;
  }

  /**
   * Claims nothing for a while, then kicks. `retry` (putting a job back in the queue) runs first;
   * one that still fails is kept for the next round. Several jobs may be waiting so at once.
   */
  private pause(retry?: () => void): void {
    this.pausedUntil = Date.now() + this.retryMs;
    if (retry) this.retries.push(retry);
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = null;
      if (this.closing) return;
      const pending = this.retries.splice(0);
      for (const r of pending) {
        try {
          r();
        } catch (e) {
          this.opts.logger.error({ err: (e as Error).message }, 'storage still full; trying again later');
          this.retries.push(r);
        }
      }
      if (this.retries.length) this.pause();
      else this.kick();
    }, this.retryMs);
    this.resumeTimer.unref?.();
  }

  get active(): number {
    return this.running.size;
  }

  /** Starts queued jobs while there is capacity. */
  kick(): void {
    while (!this.closing && this.running.size < this.opts.concurrency && Date.now() >= this.pausedUntil) {
      let job: ClaimedJob | null;
      try {
        job = this.opts.store.claimNextJob((study, run) => runDir(this.opts.dataDir, study, run));
      } catch (e) {
        this.opts.logger.error({ err: (e as Error).message }, 'could not claim a job');
        return;
      }
      if (!job) return;
      const p = this.run(job)
        .catch((e) => this.opts.logger.error({ jobId: job!.jobId, err: (e as Error).message }, 'job runner error'))
        .finally(() => {
          this.running.delete(job!.jobId);
          this.kick();
        });
      this.running.set(job.jobId, p);
    }
  }

  /**
   * Stops taking jobs; waits up to graceMs for running ones, then puts those still running
   * back in the queue (their late result is ignored: the next start runs them again).
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    const all = Promise.allSettled([...this.running.values()]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    for (const jobId of this.running.keys()) {
      this.opts.logger.warn({ jobId }, 'job still running at shutdown, requeued');
      this.opts.store.requeueJob(jobId);
    }
    this.running.clear();
  }

  /** Stops without touching job state, as a crash would (tests of restart recovery). */
  halt(): void {
    this.closing = true;
    this.halted = true;
    this.running.clear();
  }

  private async run(job: ClaimedJob): Promise<void> {
    const { store, logger } = this.opts;
    const log = logger.child({ studyInstanceUid: job.studyUid, jobId: job.jobId, run: job.run });
    const started = Date.now();
    let result: StudyJobOutput;
    try {
      await fsp.rm(job.outDir, { recursive: true, force: true });
      await ensureDirDurable(job.outDir);
      const instances = store.jobInstances(job.studyUid);
      log.info({ instances: instances.length }, 'job started');
      result = await this.opts.processor({ studyInstanceUid: job.studyUid, instances, outDir: job.outDir });
      // results that could not be written for want of space are not the instances' fault: the
      // whole job waits for space instead of filing them as failed (they would never be retried)
      const full = result.instances.find((i) => i.status === 'failed' && isStorageFull(i.message));
      if (full) throw Object.assign(new Error(full.message ?? 'no space left'), { reason: 'storage.full' });
      const missing = result.outputs.filter((o) => !o.path || !fs.existsSync(o.path)).map((o) => o.sopInstanceUid);
      if (missing.length) throw Object.assign(new Error(`output files missing for ${missing.join(', ')}`), { reason: 'report.failed' });
      result = { ...result, outputs: await syncOutputs(job.outDir, result.outputs) };
    } catch (e) {
      if (this.halted || store.isClosed) return;
      const reason = String((e as { reason?: unknown }).reason ?? 'internal');
      const message = (e as Error)?.message ?? String(e);
      if (isStorageFull(message)) {
        log.error({ err: message, retryInMs: this.retryMs }, 'disk full while analysing: the job goes back to the queue and waits for space');
        this.requeueWhenPossible(job, log);
        return;
      }
      log.error({ reason, err: message }, 'job failed');
      this.recordFailure(job, reason, message, log);
      return;
    }
    if (this.halted || store.isClosed) return;
    try {
      const targets = this.opts.targetsFor(job);
      const r = store.completeJob(job.jobId, result, targets);
      if (!r) return; // requeued meanwhile
      log.info({ outputs: result.outputs.length, targets: targets.length, label: result.label, ms: Date.now() - started }, 'job done');
      if (result.keyImagesError) {
        log.warn({ err: result.keyImagesError }, 'the study\'s key object selection could not be made; its other results are delivered');
        store.addEvent('key_images.failed', job.studyUid, { jobId: job.jobId, message: result.keyImagesError });
      }
      await pruneEarlierRuns(job.outDir, store.outputPaths(job.studyUid), log);
      this.opts.onFinished(job, { ok: true, reopened: r.reopened, outputs: result.outputs.length });
    } catch (e) {
      const message = (e as Error).message;
      if (isStorageFull(message)) {
        log.error({ err: message, retryInMs: this.retryMs }, 'could not file the job result: database full; the job goes back to the queue once there is space');
        this.requeueWhenPossible(job, log);
        return;
      }
      log.error({ err: message }, 'could not file the job result');
      this.recordFailure(job, 'internal', `filing the result: ${message}`, log);
    }
  }

  /** Puts a job back in the queue now, or, when the database cannot take even that, once it can; pauses claiming meanwhile. */
  private requeueWhenPossible(job: ClaimedJob, log: Logger): void {
    const requeue = () => this.opts.store.requeueJob(job.jobId, Date.now(), 'storage full');
    try {
      requeue();
      this.pause();
    } catch (e) {
      log.error({ err: (e as Error).message }, 'could not put the job back in the queue; trying again later');
      this.pause(requeue);
    }
  }

  /**
   * Marks the job failed. Never throws: when the database cannot take it either (full disk, a
   * lock held too long), the job stays `running` and recovery at the next start requeues it.
   */
  private recordFailure(job: ClaimedJob, reason: string, message: string, log: Logger): void {
    try {
      const r = this.opts.store.failJob(job.jobId, reason, message);
      this.opts.onFinished(job, { ok: false, reopened: r?.reopened ?? false, outputs: 0 });
    } catch (e) {
      log.error({ err: (e as Error).message, retryInMs: this.retryMs }, 'could not record the job failure; the job goes back to the queue once the database can take it');
      this.pause(() => this.opts.store.requeueJob(job.jobId, Date.now(), 'its end could not be recorded'));
    }
  }
}

/**
 * Once a run's results are filed, the study's earlier run-N folders would otherwise pile up at
 * every re-run: their files go, except those an output row still points to (the results of an
 * instance that failed in this run, kept and still delivered). An older object that was already
 * sent and is no longer produced keeps only its record.
 */
async function pruneEarlierRuns(outDir: string, keep: Set<string>, log: Logger): Promise<void> {
  const studyDir = path.dirname(outDir);
  const current = path.basename(outDir);
  try {
    for (const name of await fsp.readdir(studyDir)) {
      if (name === current || !/^run-\d+$/.test(name)) continue;
      const dir = path.join(studyDir, name);
      // an earlier run's files that outputs still point to (an instance that failed this time
      // keeps its earlier results) stay; the rest go, and the folder once it is empty
      let kept = 0;
      for (const f of await fsp.readdir(dir)) {
        if (keep.has(path.join(dir, f))) kept++;
        else await fsp.rm(path.join(dir, f), { recursive: true, force: true });
      }
      if (!kept) await fsp.rm(dir, { recursive: true, force: true });
    }
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'could not remove earlier result folders');
  }
}
