/** The durable state machine: studies, instances, jobs, outputs and sends in SQLite. */
import path from 'node:path';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION, Store } from '../../src/store';
import type { ReceivedInstance, SendTarget } from '../../src/store';
import type { StudyJobOutput } from '../../src/types/pipeline';
import { tempDir } from '../helpers/gatewayHarness';

const STUDY = '1.2.826.0.1.1';
const QUIET = 500;

function instance(sop: string, over: Partial<ReceivedInstance> = {}): ReceivedInstance {
  return {
    sopInstanceUid: sop,
    sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    studyUid: STUDY,
    seriesUid: `${STUDY}.1`,
    path: `/data/instances/${STUDY}/${STUDY}.1/${sop}.dcm`,
    bytes: 1000,
    callingAe: 'US_SCANNER',
    callingHost: '127.0.0.1',
    patientName: 'Doe^Jane',
    patientId: 'P1',
    ...over,
  };
}

function output(sources: string[]): StudyJobOutput {
  return {
    outputs: sources.map((s) => ({
      kind: 'seg' as const,
      path: `/data/results/${s}.seg.dcm`,
      sopClassUid: '1.2.840.10008.5.1.4.1.1.66.4',
      sopInstanceUid: `${s}.7`,
      seriesInstanceUid: `${STUDY}.7`,
      sourceSopInstanceUid: s,
    })),
    instances: sources.map((s) => ({ sopInstanceUid: s, status: 'analysed' as const, label: 'malignant' as const, probability: 0.9, malignancyProbability: 0.9, lesionCount: 1, largestLesion: { longAxis: 12, shortAxis: 8, area: 70, unit: 'mm' as const } })),
    label: 'malignant',
    malignancyProbability: 0.9,
    timingsMs: { total: 12 },
  };
}

const TARGETS: SendTarget[] = [
  { destination: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: 4242 },
  { destination: 'return:US_SCANNER', aeTitle: 'US_SCANNER', host: '127.0.0.1', port: 104 },
];

const outDir = (s: string, run: number) => path.join('/data/results', s, `run-${run}`);

let dir: string;
let store: Store;
beforeEach(() => {
  dir = tempDir('store');
  store = Store.open(dir);
});
afterEach(() => store.close());

/** Receives, waits out the quiet period, claims: the study is processing, its job running. */
function receiveAndClaim(sops: string[], t0: number) {
  sops.forEach((s, i) => store.recordInstance(instance(s), t0 + i));
  expect(store.queueStudyIfQuiet(STUDY, QUIET, t0 + 10_000)).toEqual({ queued: true });
  const job = store.claimNextJob(outDir, t0 + 10_001);
  expect(job).not.toBeNull();
  return job!;
}

test('opening a database applies the schema once and uses WAL with full sync', () => {
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  store.close();
  store = Store.open(dir);
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
  expect(store.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
  const tables = (store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
  expect(tables).toEqual(expect.arrayContaining(['studies', 'instances', 'jobs', 'outputs', 'sends', 'events', 'schema_migrations']));
});

test('a database from a newer program version is refused', () => {
  store.db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 1, 'future', 0);
  store.close();
  expect(() => Store.open(dir)).toThrow(/newer/);
  store = Store.open(tempDir('store2'));
});

test('a resent SOP Instance UID replaces its row and reports the earlier file', () => {
  expect(store.recordInstance(instance('1.1'), 1000)).toEqual({ previousPath: null, transition: 'opened' });
  const moved = instance('1.1', { seriesUid: `${STUDY}.2`, path: '/data/elsewhere/1.1.dcm' });
  expect(store.recordInstance(moved, 1100)).toEqual({ previousPath: instance('1.1').path, transition: 'extended' });
  expect(store.listInstances(STUDY)).toHaveLength(1);
  expect(store.getInstance('1.1')).toMatchObject({ seriesUid: `${STUDY}.2`, path: '/data/elsewhere/1.1.dcm', status: 'received' });
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'receiving', firstReceivedAt: 1000, lastReceivedAt: 1100, patientName: 'Doe^Jane' });
});

test('a study is queued only after the quiet period, and a new instance sends it back to receiving', () => {
  store.recordInstance(instance('1.1'), 1000);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 1200)).toEqual({ queued: false, waitMs: 300 });
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 1500)).toEqual({ queued: true });
  expect(store.getStudy(STUDY)!.status).toBe('queued');
  expect(store.listJobs(STUDY).map((j) => j.status)).toEqual(['queued']);
  // not quiet any more: the queued job goes away, the timer starts again
  expect(store.recordInstance(instance('1.2'), 1600).transition).toBe('requeued');
  expect(store.getStudy(STUDY)!.status).toBe('receiving');
  expect(store.listJobs(STUDY)).toHaveLength(0);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 2100)).toEqual({ queued: true });
  expect(store.listJobs(STUDY)).toHaveLength(1);
});

test('a finished run files outcomes, outputs and one send per output and target', () => {
  const job = receiveAndClaim(['1.1', '1.2'], 1000);
  expect(job).toMatchObject({ studyUid: STUDY, run: 1, outDir: outDir(STUDY, 1), callingAe: 'US_SCANNER' });
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'processing', runCount: 1 });
  expect(store.jobInstances(STUDY).map((i) => i.sopInstanceUid)).toEqual(['1.1', '1.2']);

  expect(store.completeJob(job.jobId, output(['1.1', '1.2']), TARGETS, 20_000)).toEqual({ reopened: false });
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'processed', processedAt: 20_000, label: 'malignant', malignancyProbability: 0.9 });
  expect(store.getJob(job.jobId)).toMatchObject({ status: 'done', finishedAt: 20_000 });
  expect(store.getInstance('1.1')).toMatchObject({ status: 'analysed', label: 'malignant', lesionCount: 1 });
  expect(JSON.parse(store.getInstance('1.1')!.lesionJson!)).toEqual({ longAxis: 12, shortAxis: 8, area: 70, unit: 'mm' });
  expect(store.listOutputs(STUDY).map((o) => o.sopInstanceUid)).toEqual(['1.1.7', '1.2.7']);
  const sends = store.listSends({ studyUid: STUDY });
  expect(sends).toHaveLength(4);
  expect(sends.every((s) => s.status === 'pending' && s.attempts === 0 && s.nextAttemptAt === 20_000)).toBe(true);
  expect(store.dueSends(20_000).map((s) => s.path)).toContain('/data/results/1.1.seg.dcm');
});

test('a re-run after a late instance resets the sends of regenerated outputs instead of duplicating them', () => {
  const first = receiveAndClaim(['1.1'], 1000);
  store.completeJob(first.jobId, output(['1.1']), TARGETS, 20_000);
  const [toPacs] = store.listSends({ studyUid: STUDY });
  expect(store.markSendSent(toPacs.id, toPacs.generation, 0, 21_000)).toBe(true);

  expect(store.recordInstance(instance('1.2'), 30_000).transition).toBe('reopened');
  expect(store.getStudy(STUDY)!.status).toBe('receiving');
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 31_000)).toEqual({ queued: true });
  const second = store.claimNextJob(outDir, 31_001)!;
  expect(second.run).toBe(2);
  expect(store.jobInstances(STUDY)).toHaveLength(2);
  store.completeJob(second.jobId, output(['1.1', '1.2']), TARGETS, 40_000);

  const sends = store.listSends({ studyUid: STUDY });
  expect(sends).toHaveLength(4); // 2 outputs × 2 targets, the first output's rows reused
  expect(sends.every((s) => s.status === 'pending' && s.attempts === 0 && s.sentAt === null)).toBe(true);
  const again = sends.find((s) => s.id === toPacs.id)!;
  expect(again.generation).toBe(toPacs.generation + 1);
  // a send of the old file that was still in flight cannot mark the regenerated one delivered
  expect(store.markSendSent(toPacs.id, toPacs.generation, 0)).toBe(false);
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'processed', runCount: 2 });
  expect(store.listOutputs(STUDY)).toHaveLength(2);
  expect(store.listEvents({ studyUid: STUDY }).map((e) => e.kind)).toContain('study.reopened');
});

test('an instance arriving while the study is processed re-opens it when the run ends', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  expect(job.startedAt).toBe(11_001);
  expect(store.recordInstance(instance('1.2'), 11_500).transition).toBe('processing');
  expect(store.getStudy(STUDY)!.status).toBe('processing');
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 12_100)).toEqual({ queued: false }); // the job's end decides
  expect(store.completeJob(job.jobId, output(['1.1']), TARGETS, 12_200)).toEqual({ reopened: true });
  expect(store.getStudy(STUDY)!.status).toBe('receiving');
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 12_200)).toEqual({ queued: true });
});

test('an instance arriving during a run re-opens the study even when the clock was stepped back meanwhile', () => {
  const job = receiveAndClaim(['1.1'], 1000); // started at 11_001
  // NTP stepped the clock back by 8 s: the new instance's time is before the job's start
  expect(store.recordInstance(instance('1.2'), 3_000).transition).toBe('processing');
  expect(store.completeJob(job.jobId, output(['1.1']), TARGETS, 3_500)).toEqual({ reopened: true });
  expect(store.getStudy(STUDY)!.status).toBe('receiving');

  // the same for a run that fails
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 20_000)).toEqual({ queued: true });
  const again = store.claimNextJob(outDir, 20_001)!;
  store.recordInstance(instance('1.3'), 15_000);
  expect(store.failJob(again.jobId, 'inference.failed', 'boom', 15_500)).toEqual({ reopened: true });
  expect(store.getStudy(STUDY)!.status).toBe('receiving');

  // and a resend of an instance during a run counts as an arrival, too
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 30_000)).toEqual({ queued: true });
  const third = store.claimNextJob(outDir, 30_001)!;
  expect(store.completeJob(third.jobId, output(['1.1', '1.2', '1.3']), TARGETS, 30_500)).toEqual({ reopened: false });
});

test('a database from before the arrival count is upgraded; a job it left running falls back to times', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  store.close();
  // turn it back into a schema-2 database, as the previous release left it
  const raw = new Database(path.join(dir, 'sonogate.db'));
  raw.exec('ALTER TABLE studies DROP COLUMN arrivals; ALTER TABLE jobs DROP COLUMN arrivals_at_start; DELETE FROM schema_migrations WHERE version = 3');
  raw.close();

  store = Store.open(dir);
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  expect((store.db.prepare('SELECT arrivals FROM studies').get() as { arrivals: number }).arrivals).toBe(0);
  store.recordInstance(instance('1.2'), 11_500);
  store.recordInstance(instance('1.2'), 11_600); // a resend counts as an arrival too
  expect((store.db.prepare('SELECT arrivals FROM studies').get() as { arrivals: number }).arrivals).toBe(2);
  expect(store.completeJob(job.jobId, output(['1.1']), TARGETS, 12_000)).toEqual({ reopened: true });
});

test('a failed run marks job and study failed with the reason; a later instance re-opens the study', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  expect(store.failJob(job.jobId, 'inference.failed', 'model exploded', 12_000)).toEqual({ reopened: false });
  expect(store.getJob(job.jobId)).toMatchObject({ status: 'failed', errorReason: 'inference.failed', errorMessage: 'model exploded' });
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'failed', errorReason: 'inference.failed' });
  expect(store.recordInstance(instance('1.2'), 13_000).transition).toBe('reopened');
});

test('after a crash, running jobs are queued again and receiving studies are reported for their timers', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  const other = '1.2.826.0.1.2';
  store.recordInstance(instance('2.1', { studyUid: other, path: '/x/2.1.dcm' }), 50_000);
  store.close(); // no state update: what kill -9 leaves

  store = Store.open(dir);
  const report = store.recoverAfterRestart(60_000);
  expect(report).toEqual({ requeuedJobs: 1, queuedStudies: 0, receiving: [{ studyUid: other, lastReceivedAt: 50_000 }] });
  expect(store.getJob(job.jobId)).toMatchObject({ status: 'queued' });
  expect(store.getStudy(STUDY)!.status).toBe('queued');
  const again = store.claimNextJob(outDir, 60_001)!;
  expect(again).toMatchObject({ jobId: job.jobId, run: 2 });
  expect(store.getJob(job.jobId)!.attempts).toBe(2);
  // the late result of the interrupted run cannot overwrite: only the running job may complete
  store.requeueJob(again.jobId);
  expect(store.completeJob(again.jobId, output(['1.1']), TARGETS)).toBeNull();
});

test('a study queued without a job (lost job row) gets one at recovery', () => {
  store.recordInstance(instance('1.1'), 1000);
  store.queueStudyIfQuiet(STUDY, QUIET, 5000);
  store.db.prepare('DELETE FROM jobs').run();
  expect(store.recoverAfterRestart(6000)).toMatchObject({ requeuedJobs: 0, queuedStudies: 1 });
  expect(store.claimNextJob(outDir)).not.toBeNull();
});

test('sends are due by next_attempt_at; a retry keeps the error and the status visible', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  store.completeJob(job.jobId, output(['1.1']), TARGETS.slice(0, 1), 20_000);
  const [s] = store.dueSends(20_000);
  expect(store.markSendRetry(s.id, s.generation, 'send.network_error: ECONNREFUSED', null, 25_000, 20_000)).toBe(true);
  expect(store.dueSends(24_999)).toHaveLength(0);
  expect(store.nextSendDueAt()).toBe(25_000);
  // the sender asks "what falls due after now?" with the same clock reading it used for dueSends
  expect(store.nextSendDueAt(24_999)).toBe(25_000);
  expect(store.nextSendDueAt(25_000)).toBeNull();
  expect(store.dueSends(25_000)).toHaveLength(1);
  expect(store.listSends()[0]).toMatchObject({ status: 'pending', attempts: 1, lastError: 'send.network_error: ECONNREFUSED', nextAttemptAt: 25_000 });
  expect(store.markSendSent(s.id, s.generation, 0xb000, 26_000)).toBe(true);
  expect(store.listSends()[0]).toMatchObject({ status: 'sent', attempts: 2, lastStatus: 0xb000, sentAt: 26_000, lastError: null });
  expect(store.nextSendDueAt()).toBeNull();
  // resend from the dashboard
  expect(store.resetSends([s.id], 27_000)).toBe(1);
  expect(store.dueSends(27_000)).toHaveLength(1);
});

test('a destination with a long backlog (a PACS that is down) never hides another destination\'s due sends', () => {
  const sops = Array.from({ length: 6 }, (_, i) => `1.${i + 1}`);
  const job = receiveAndClaim(sops, 1000);
  store.completeJob(job.jobId, output(sops), TARGETS.slice(0, 1), 20_000);
  // the same results for a second destination, due later than all of the first one's
  store.db.prepare("INSERT INTO sends (output_sop_uid, study_uid, destination, ae_title, host, port, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, 'archive', 'ARCH', '127.0.0.1', 4243, 'pending', 0, 21000, 21000, 21000)").run('1.1.7', STUDY);
  const due = store.dueSends(30_000, 3);
  expect(due.filter((d) => d.destination === 'pacs')).toHaveLength(3);
  expect(due.filter((d) => d.destination === 'archive').map((d) => d.outputSopUid)).toEqual(['1.1.7']);
  expect(due[0]).not.toHaveProperty('nth');
});

test('an instance whose header could not be read is recorded as failed without a study', () => {
  store.recordRejectedInstance(
    { sopInstanceUid: '9.9', sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2', path: '/data/failed/9.9.dcm', bytes: 10, callingAe: 'X', callingHost: 'h', reason: 'decode.malformed', message: 'bad' },
    1000,
  );
  expect(store.listRejectedInstances()).toEqual([expect.objectContaining({ sopInstanceUid: '9.9', status: 'failed', reason: 'decode.malformed', studyUid: null })]);
  expect(store.listStudies()).toHaveLength(0);
  expect(store.listEvents()[0]).toMatchObject({ kind: 'instance.failed', studyUid: null });
  // a good copy sent later takes its place
  expect(store.recordInstance(instance('9.9'), 2000).previousPath).toBe('/data/failed/9.9.dcm');
  expect(store.getInstance('9.9')).toMatchObject({ status: 'received', reason: null, studyUid: STUDY });
});

test('a broken resend of an acknowledged instance neither replaces nor deletes the good copy', () => {
  store.recordInstance(instance('8.8', { path: '/data/instances/s/e/8.8.dcm' }), 1000);
  const r = store.recordRejectedInstance(
    { sopInstanceUid: '8.8', sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2', path: '/data/failed/8.8.dcm', bytes: 10, callingAe: 'X', callingHost: 'h', reason: 'decode.malformed', message: 'bad' },
    2000,
  );
  expect(r.previousPath).toBeNull();
  expect(store.getInstance('8.8')).toMatchObject({ status: 'received', path: '/data/instances/s/e/8.8.dcm', studyUid: STUDY });
  expect(store.listEvents()[0]).toMatchObject({ kind: 'instance.refused_copy', studyUid: STUDY });
});

test('a study that keeps killing the process is failed after 3 interrupted runs instead of blocking the queue', () => {
  receiveAndClaim(['1.1'], 1000);
  for (let crash = 1; crash < 3; crash++) {
    expect(store.recoverAfterRestart(20_000 + crash)).toMatchObject({ requeuedJobs: 1 });
    expect(store.claimNextJob(outDir, 20_100 + crash)).not.toBeNull();
  }
  expect(store.recoverAfterRestart(30_000)).toMatchObject({ requeuedJobs: 0 });
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'failed', errorReason: 'job.crashed' });
  expect(store.claimNextJob(outDir, 30_001)).toBeNull();
});

test('a re-run in which an instance fails (a worker crash) keeps that instance\'s undelivered result, and the study its label', () => {
  const job = receiveAndClaim(['1.1', '1.2'], 1000);
  store.completeJob(job.jobId, output(['1.1']), TARGETS.slice(0, 1), 20_000); // 1.1 malignant; its SEG not yet delivered (PACS down)
  // a late instance re-opens the study; in the re-run 1.1's analysis fails, 1.2 is found normal
  store.recordInstance(instance('1.2'), 30_000);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 40_000)).toEqual({ queued: true });
  const again = store.claimNextJob(outDir, 40_001)!;
  store.completeJob(
    again.jobId,
    {
      outputs: [],
      instances: [
        { sopInstanceUid: '1.1', status: 'failed', reason: 'inference.failed', message: 'worker exited' },
        { sopInstanceUid: '1.2', status: 'analysed', label: 'normal', probability: 0.9, malignancyProbability: 0.05, lesionCount: 0 },
      ],
      label: 'normal',
      malignancyProbability: 0.05,
      timingsMs: {},
    },
    TARGETS.slice(0, 1),
    41_000,
  );
  expect(store.listSends({ studyUid: STUDY }).map((x) => [x.outputSopUid, x.status])).toEqual([['1.1.7', 'pending']]);
  expect(store.outputPaths(STUDY)).toEqual(new Set(['/data/results/1.1.seg.dcm']));
  expect(store.getStudy(STUDY)).toMatchObject({ status: 'processed', label: 'malignant' });
  expect(store.listEvents().map((e) => e.kind)).not.toContain('outputs.withdrawn');
});

test('a re-run that no longer produces an object withdraws its unsent sends, never re-delivering it', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  store.completeJob(job.jobId, output(['1.1']), TARGETS.slice(0, 1), 20_000);
  expect(store.listSends({ studyUid: STUDY })).toHaveLength(1);
  // the same instance again (re-sent): the re-run finds no lesion, so no SEG this time
  store.recordInstance(instance('1.1'), 30_000);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 40_000)).toEqual({ queued: true });
  const again = store.claimNextJob(outDir, 40_001)!;
  store.completeJob(again.jobId, { ...output(['1.1']), outputs: [] }, TARGETS.slice(0, 1), 41_000);
  expect(store.listSends({ studyUid: STUDY })).toHaveLength(0);
  expect(store.listEvents().map((e) => e.kind)).toContain('outputs.withdrawn');
});

test("the study's key object selection: a re-run's replaces an earlier one's unsent sends, unless an instance failed this time", () => {
  const kos = (uid: string) => ({ kind: 'kos' as const, path: `/data/results/${uid}.kos.dcm`, sopClassUid: '1.2.840.10008.5.1.4.1.1.88.59', sopInstanceUid: uid, seriesInstanceUid: `${STUDY}.9`, sourceSopInstanceUid: null });
  const rerun = (sops: string[], t: number) => {
    sops.forEach((s) => store.recordInstance(instance(s), t));
    expect(store.queueStudyIfQuiet(STUDY, QUIET, t + 10_000)).toEqual({ queued: true });
    return store.claimNextJob(outDir, t + 10_001)!;
  };
  const first = receiveAndClaim(['1.1'], 1000);
  store.completeJob(first.jobId, { ...output(['1.1']), outputs: [...output(['1.1']).outputs, kos('9.1')] }, TARGETS.slice(0, 1), 20_000);
  expect(store.listOutputs(STUDY).find((o) => o.kind === 'kos')).toMatchObject({ sopInstanceUid: '9.1', sourceSopInstanceUid: null });

  // a second instance arrives (the PACS was down: nothing sent yet); this run's document replaces the first's
  const second = rerun(['1.2'], 30_000);
  store.completeJob(second.jobId, { ...output(['1.1', '1.2']), outputs: [...output(['1.1', '1.2']).outputs, kos('9.2')] }, TARGETS.slice(0, 1), 50_000);
  expect(store.listSends({ studyUid: STUDY }).map((x) => x.outputSopUid).sort()).toEqual(['1.1.7', '1.2.7', '9.2']);

  // a run where one instance failed says nothing new about the study: the document stays due
  const third = rerun(['1.2'], 60_000);
  store.completeJob(
    third.jobId,
    { ...output(['1.1']), instances: [...output(['1.1']).instances, { sopInstanceUid: '1.2', status: 'failed', reason: 'inference.failed', message: 'worker exited' }] },
    TARGETS.slice(0, 1),
    80_000,
  );
  expect(store.listSends({ studyUid: STUDY }).map((x) => x.outputSopUid).sort()).toEqual(['1.1.7', '1.2.7', '9.2']);
});

test('a database from before the key object selection is upgraded: outputs and their sends are kept, foreign keys hold', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  store.completeJob(job.jobId, output(['1.1']), TARGETS, 20_000);
  store.close();
  // turn it back into a schema-4 database: the outputs table as releases up to 4 made it
  const raw = new Database(path.join(dir, 'sonogate.db'));
  raw.pragma('foreign_keys = OFF');
  raw.exec(`
    CREATE TABLE outputs_v4 (sop_instance_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT, sop_class_uid TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('seg','sr','overlay')), path TEXT NOT NULL, source_sop_instance_uid TEXT, job_id INTEGER, created_at INTEGER NOT NULL);
    INSERT INTO outputs_v4 SELECT sop_instance_uid, study_uid, series_uid, sop_class_uid, kind, path, source_sop_instance_uid, job_id, created_at FROM outputs;
    DROP TABLE outputs; ALTER TABLE outputs_v4 RENAME TO outputs;
    CREATE INDEX outputs_study ON outputs(study_uid);
    DROP TABLE storage_totals; DROP TRIGGER instances_storage_insert; DROP TRIGGER instances_storage_update; DROP TRIGGER instances_storage_delete;
    DELETE FROM schema_migrations WHERE version IN (5, 7);`);
  expect(() => raw.prepare("INSERT INTO outputs VALUES ('x', 's', NULL, '1', 'kos', '/p', NULL, NULL, 0)").run()).toThrow(/CHECK/);
  raw.close();

  store = Store.open(dir);
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  expect(store.listOutputs(STUDY).map((o) => o.sopInstanceUid)).toEqual(['1.1.7']);
  expect(store.listSends({ studyUid: STUDY })).toHaveLength(2);
  expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
  expect(store.db.pragma('foreign_key_list(sends)')).toEqual([expect.objectContaining({ table: 'outputs', from: 'output_sop_uid' })]);
  // a key object selection can be filed now, and deleting an output still takes its sends with it
  store.db.prepare("INSERT INTO outputs VALUES ('9.1', ?, NULL, '1.2.840.10008.5.1.4.1.1.88.59', 'kos', '/p', NULL, NULL, 0, NULL)").run(STUDY);
  store.db.prepare("DELETE FROM outputs WHERE sop_instance_uid = '1.1.7'").run();
  expect(store.listSends({ studyUid: STUDY })).toHaveLength(0);
});

test("the networks' disagreement is filed with an instance's result, and a resent instance clears it", () => {
  const job = receiveAndClaim(['1.1', '1.2', '1.3'], 1000);
  const out = output(['1.1', '1.2', '1.3']);
  out.instances[0] = { ...out.instances[0], networkSpread: 0.31, lowAgreement: true };
  out.instances[1] = { ...out.instances[1], networkSpread: 0.04, lowAgreement: false };
  // 1.3: a model without the spread output says nothing about agreement
  store.completeJob(job.jobId, out, TARGETS, 20_000);
  const row = (sop: string) => store.getInstance(sop)!;
  expect(row('1.1')).toMatchObject({ networkSpread: 0.31, lowAgreement: 1 });
  expect(row('1.2')).toMatchObject({ networkSpread: 0.04, lowAgreement: 0 });
  expect(row('1.3')).toMatchObject({ networkSpread: null, lowAgreement: null });

  store.recordInstance(instance('1.1'), 30_000);
  expect(row('1.1')).toMatchObject({ status: 'received', label: null, networkSpread: null, lowAgreement: null });
});

test('a database from before the agreement columns is upgraded: earlier results stay, their agreement unknown', () => {
  const job = receiveAndClaim(['1.1'], 1000);
  store.completeJob(job.jobId, output(['1.1']), TARGETS, 20_000);
  store.close();
  // turn it back into a schema-5 database, as the previous release left it
  const raw = new Database(path.join(dir, 'sonogate.db'));
  raw.exec('ALTER TABLE instances DROP COLUMN network_spread; ALTER TABLE instances DROP COLUMN low_agreement; DELETE FROM schema_migrations WHERE version = 6');
  raw.close();

  store = Store.open(dir);
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  expect(store.getInstance('1.1')).toMatchObject({ status: 'analysed', label: 'malignant', networkSpread: null, lowAgreement: null });
  // and the next run files it
  store.recordInstance(instance('1.1'), 30_000);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 40_000)).toEqual({ queued: true });
  const again = store.claimNextJob(outDir, 40_001)!;
  const out = output(['1.1']);
  out.instances[0] = { ...out.instances[0], networkSpread: 0.22, lowAgreement: true };
  store.completeJob(again.jobId, out, TARGETS, 41_000);
  expect(store.getInstance('1.1')).toMatchObject({ networkSpread: 0.22, lowAgreement: 1 });
});

/** What storage_totals says beside what the rows sum to, in one object. */
function kept(s: Store) {
  const { images, results, unsizedResults } = s.storageBytes();
  const sums = {
    images: (s.db.prepare('SELECT IFNULL(SUM(bytes), 0) AS b FROM instances WHERE purged_at IS NULL').get() as { b: number }).b,
    results: (s.db.prepare('SELECT IFNULL(SUM(bytes), 0) AS b FROM outputs').get() as { b: number }).b,
  };
  expect({ images, results }).toEqual(sums); // the triggers never drift from the rows
  return { images, results, unsizedResults };
}

test('the bytes kept follow the rows: a received image until housekeeping deletes it, a result file while its row lasts', () => {
  const sized = (sources: string[], bytes: number) => {
    const o = output(sources);
    o.outputs = o.outputs.map((x) => ({ ...x, bytes }));
    return o;
  };
  const job = receiveAndClaim(['1.1', '1.2'], 1000);
  expect(kept(store)).toEqual({ images: 2000, results: 0, unsizedResults: 0 });
  store.completeJob(job.jobId, sized(['1.1', '1.2'], 300), TARGETS, 20_000);
  expect(kept(store)).toEqual({ images: 2000, results: 600, unsizedResults: 0 });

  // a resend replaces the row (an upsert: the UPDATE triggers fire) and a re-run the results
  store.recordInstance(instance('1.1', { bytes: 1500 }), 30_000);
  expect(kept(store).images).toBe(2500);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 40_000)).toEqual({ queued: true });
  store.completeJob(store.claimNextJob(outDir, 40_001)!.jobId, sized(['1.1'], 200), TARGETS, 41_000);
  expect(kept(store).results).toBe(500);

  // housekeeping deleted an image: it no longer counts; a refused file (no study) does
  store.db.prepare("UPDATE instances SET purged_at = 50000 WHERE sop_instance_uid = '1.2'").run();
  store.recordRejectedInstance(
    { sopInstanceUid: '9.9', sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2', path: '/data/failed/9.9.dcm', bytes: 10, callingAe: 'X', callingHost: 'h', reason: 'decode.malformed', message: 'bad' },
    50_000,
  );
  expect(kept(store)).toEqual({ images: 1510, results: 500, unsizedResults: 0 });
  // housekeeping deletes the refused file; the same broken file sent again is a file on disk again
  store.db.prepare("UPDATE instances SET purged_at = 55000 WHERE sop_instance_uid = '9.9'").run();
  expect(kept(store).images).toBe(1500);
  store.recordRejectedInstance(
    { sopInstanceUid: '9.9', sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2', path: '/data/failed/9.9.dcm', bytes: 10, callingAe: 'X', callingHost: 'h', reason: 'decode.malformed', message: 'bad' },
    56_000,
  );
  expect(kept(store).images).toBe(1510);
  expect((store.db.prepare("SELECT purged_at FROM instances WHERE sop_instance_uid = '9.9'").get() as { purged_at: number | null }).purged_at).toBeNull();

  // a result filed without its size (an older runner) counts once housekeeping has read it
  store.recordInstance(instance('1.3'), 60_000);
  expect(store.queueStudyIfQuiet(STUDY, QUIET, 70_000)).toEqual({ queued: true });
  store.completeJob(store.claimNextJob(outDir, 70_001)!.jobId, output(['1.3']), TARGETS, 71_000);
  expect(kept(store)).toEqual({ images: 2510, results: 500, unsizedResults: 1 });
  expect(store.unsizedOutputs(10)).toEqual([{ sopInstanceUid: '1.3.7', path: '/data/results/1.3.seg.dcm' }]);
  expect(store.recordOutputSizes([{ sopInstanceUid: '1.3.7', path: '/data/elsewhere.dcm', bytes: 99 }])).toBe(0); // not the row's file
  expect(store.recordOutputSizes([{ sopInstanceUid: '1.3.7', path: '/data/results/1.3.seg.dcm', bytes: 70 }])).toBe(1);
  expect(kept(store)).toEqual({ images: 2510, results: 570, unsizedResults: 0 });

  // the study's rows go: so do its bytes; the refused file's stay
  store.deleteStudyRows(STUDY);
  expect(kept(store)).toEqual({ images: 10, results: 0, unsizedResults: 0 });
  // a total changed around the triggers is put right by a recount
  store.db.prepare("UPDATE storage_totals SET bytes = 12345 WHERE what = 'results'").run();
  expect(store.recountStorage()).toEqual({ before: { images: 10, results: 12345 }, after: { images: 10, results: 0 } });
  expect(kept(store).results).toBe(0);
});

test('a database from before the size columns is upgraded: its received images are counted at once, its results once sized', () => {
  const job = receiveAndClaim(['1.1', '1.2'], 1000);
  store.completeJob(job.jobId, output(['1.1', '1.2']), TARGETS, 20_000);
  store.db.prepare("UPDATE instances SET purged_at = 30000 WHERE sop_instance_uid = '1.2'").run();
  store.close();
  // turn it back into a schema-6 database, as the previous release left it
  const raw = new Database(path.join(dir, 'sonogate.db'));
  raw.exec(`DROP TRIGGER instances_storage_insert; DROP TRIGGER instances_storage_update; DROP TRIGGER instances_storage_delete;
    DROP TRIGGER outputs_storage_insert; DROP TRIGGER outputs_storage_update; DROP TRIGGER outputs_storage_delete;
    DROP TABLE storage_totals; DROP INDEX outputs_unsized; ALTER TABLE outputs DROP COLUMN bytes; DELETE FROM schema_migrations WHERE version = 7`);
  raw.close();

  store = Store.open(dir);
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  expect(kept(store)).toEqual({ images: 1000, results: 0, unsizedResults: 2 });
  store.recordOutputSizes(store.unsizedOutputs(10).map((o) => ({ ...o, bytes: 400 })));
  expect(kept(store)).toEqual({ images: 1000, results: 800, unsizedResults: 0 });
});
