/**
 * The job runner when the disk or the database is full. Results that could not be written for
 * want of space are not the instances' fault: the job goes back to the queue and runs again once
 * there is space, instead of being filed as failed and never retried. A database that cannot take
 * a job's end must not take the gateway down either (an unhandled rejection ends a Node 20
 * process, and every open association with it).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Store } from '../../src/store';
import { JobRunner, isStorageFull } from '../../src/study/runner';
import type { StudyProcessor } from '../../src/types/pipeline';
import { recordingLogger, tempDir } from '../helpers/gatewayHarness';

const STUDY = '2.25.55';
const RETRY_MS = 300;

function received(store: Store, sop: string): void {
  store.recordInstance({ sopInstanceUid: sop, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2.1', studyUid: STUDY, seriesUid: `${STUDY}.1`, path: `/x/${sop}.dcm`, bytes: 1, callingAe: 'US', callingHost: '127.0.0.1' }, 1000);
  store.queueStudyIfQuiet(STUDY, 0, 2000);
}

/** The store's `method` throws as SQLite does on a full disk for its first `times` calls. */
function refuseFirst<K extends 'failJob' | 'requeueJob'>(store: Store, method: K, times: number): void {
  const real = (store[method] as (...a: unknown[]) => unknown).bind(store);
  let refused = 0;
  (store as unknown as Record<K, (...a: unknown[]) => unknown>)[method] = (...args: unknown[]) => {
    if (refused++ < times) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    return real(...args);
  };
}

const until = async (check: () => boolean, ms = 5000) => {
  for (const t0 = Date.now(); !check(); ) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('ENOSPC while writing results: the job waits for space and runs again, instead of failing its instances for good', async () => {
  const dataDir = tempDir('runner-full');
  const store = Store.open(dataDir);
  try {
    received(store, `${STUDY}.1.1`);
    let runs = 0;
    // the first run finds the disk full (as the worker reports it: the instance's reports failed)
    const processor: StudyProcessor = async (input) => {
      runs++;
      const sop = input.instances[0].sopInstanceUid;
      if (runs === 1) return { outputs: [], instances: [{ sopInstanceUid: sop, status: 'failed', reason: 'report.failed', message: 'ENOSPC: no space left on device, write' }] };
      const file = path.join(input.outDir, 'sr.dcm');
      fs.writeFileSync(file, 'SR');
      return {
        outputs: [{ kind: 'sr', path: file, sopClassUid: '1.2.840.10008.5.1.4.1.1.88.33', sopInstanceUid: `${sop}.8`, seriesInstanceUid: `${STUDY}.8`, sourceSopInstanceUid: sop }],
        instances: [{ sopInstanceUid: sop, status: 'analysed', label: 'benign', probability: 0.8, malignancyProbability: 0.1, lesionCount: 1 }],
        label: 'benign',
        malignancyProbability: 0.1,
      };
    };
    const { logger, lines } = recordingLogger();
    const runner = new JobRunner({ store, processor, dataDir, concurrency: 1, logger, targetsFor: () => [], onFinished: () => undefined, storageRetryMs: RETRY_MS });
    const t0 = Date.now();
    runner.kick();
    await until(() => store.getStudy(STUDY)?.status === 'queued');
    expect(lines.some((l) => l.includes('disk full while analysing'))).toBe(true);
    expect(store.listEvents({ studyUid: STUDY }).some((e) => e.kind === 'job.requeued' && /storage full/.test(e.detail ?? ''))).toBe(true);
    runner.kick(); // a new study arriving meanwhile claims nothing while the runner waits for space
    expect(runs).toBe(1);
    await until(() => store.getStudy(STUDY)?.status === 'processed');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(RETRY_MS);
    expect(runs).toBe(2);
    expect(store.listOutputs(STUDY)).toHaveLength(1);
    // the runner filed the result's size as written ('SR': 2 bytes), for housekeeping.maxStorageGB
    expect(store.db.prepare('SELECT bytes FROM outputs').all()).toEqual([{ bytes: 2 }]);
    expect(store.storageBytes().results).toBe(2);
    expect(store.getStudy(STUDY)).toMatchObject({ status: 'processed', label: 'benign' });
    // the run put back for want of space is not counted as one the process died in
    expect(store.listJobs(STUDY).map((j) => j.attempts)).toEqual([1]);
  } finally {
    store.close();
  }
});

test('a job whose end the database cannot record goes back to the queue once it can; no unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  const dataDir = tempDir('runner-dbfull');
  const store = Store.open(dataDir);
  try {
    received(store, `${STUDY}.1.1`);
    // the database refuses the job's failure twice and the requeue once (SQLite on a full disk), then has room again
    refuseFirst(store, 'failJob', 2);
    refuseFirst(store, 'requeueJob', 1);
    let runs = 0;
    const processor: StudyProcessor = async () => {
      runs++;
      throw Object.assign(new Error('model exploded'), { reason: 'inference.failed' });
    };
    const { logger, lines } = recordingLogger();
    const runner = new JobRunner({ store, processor, dataDir, concurrency: 1, logger, targetsFor: () => [], onFinished: () => undefined, storageRetryMs: RETRY_MS });
    runner.kick();
    // run 1: failure not recorded; requeue refused once, then done; run 2: failure not recorded, requeued; run 3: recorded
    await until(() => store.getStudy(STUDY)?.status === 'failed', 10_000);
    expect(runs).toBe(3);
    expect(lines.filter((l) => l.includes('could not record the job failure'))).toHaveLength(2);
    expect(store.getStudy(STUDY)).toMatchObject({ errorReason: 'inference.failed' });
    expect(unhandled).toEqual([]);
  } finally {
    store.close();
    process.off('unhandledRejection', onUnhandled);
  }
});

test('what counts as a full disk', () => {
  expect(isStorageFull('ENOSPC: no space left on device, write')).toBe(true);
  expect(isStorageFull('EDQUOT: disk quota exceeded')).toBe(true);
  expect(isStorageFull('database or disk is full')).toBe(true);
  expect(isStorageFull('decode.malformed: truncated')).toBe(false);
  expect(isStorageFull(undefined)).toBe(false);
});

