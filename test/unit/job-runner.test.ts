/**
 * The job runner when the database fails too: a study whose analysis failed on a full disk, and
 * whose failure the database cannot record either, must not take the gateway down (an unhandled
 * rejection ends a Node 20 process, and every open association with it). The job is left for the
 * next start's recovery, which requeues it.
 */
import path from 'node:path';
import { JobRunner } from '../../src/study/runner';
import type { ClaimedJob, Store } from '../../src/store/store';
import { recordingLogger, tempDir } from '../helpers/gatewayHarness';

test('a failed job whose failure cannot be recorded is logged and left for recovery; the runner goes on', async () => {
  const dataDir = tempDir('runner');
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const jobs = [1, 2];
    let failJobCalls = 0;
    // only what the runner touches; failJob fails as SQLite does on a full disk
    const store = {
      isClosed: false,
      claimNextJob: (dirFor: (study: string, run: number) => string): ClaimedJob | null => {
        const jobId = jobs.shift();
        return jobId === undefined ? null : ({ jobId, studyUid: `1.2.3.${jobId}`, run: 1, outDir: dirFor(`1.2.3.${jobId}`, 1) } as unknown as ClaimedJob);
      },
      jobInstances: () => [],
      failJob: () => {
        failJobCalls++;
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      },
    } as unknown as Store;
    const { logger, lines } = recordingLogger();
    const finished: number[] = [];
    const runner = new JobRunner({
      store,
      dataDir: path.join(dataDir),
      concurrency: 1,
      logger,
      processor: async () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', reason: 'report.failed' });
      },
      targetsFor: () => [],
      onFinished: (job) => finished.push(job.jobId),
    });
    runner.kick();
    for (let i = 0; i < 100 && (runner.active > 0 || jobs.length); i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(runner.active).toBe(0);
    // both jobs were tried (the first one's failure did not stop the runner)
    expect(failJobCalls).toBe(2);
    expect(finished).toEqual([]);
    expect(lines.filter((l) => l.includes('could not record the job failure'))).toHaveLength(2);
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
