/**
 * Housekeeping on a real store (SQLite + files), with the clock passed in: retention deletes
 * old received images but never one whose study still has an undelivered result; the retry
 * sweep brings failed sends back; the daily summary is counts only. Result retention removes a
 * settled study entirely (results and rows, not the audit log), and only one that owes nothing.
 * The storage cap frees space by the same two rules without their ages, oldest activity first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { ConfigError, parseConfig } from '../../src/config/load';
import { createLogger } from '../../src/log';
import { Store } from '../../src/store/store';
import { AuditLog } from '../../src/web/audit';
import { StudyActions } from '../../src/web/studyActions';
import { Housekeeping } from '../../src/housekeeping/housekeeping';
import { PipelineMetrics } from '../../src/web/metrics';
import { silentLogger, tempDir } from '../helpers/gatewayHarness';

const DAY = 24 * 3600_000;
const T0 = Date.UTC(2026, 0, 10, 12);
const SC = '1.2.840.10008.5.1.4.1.1.7';
const US = '1.2.840.10008.5.1.4.1.1.6.1';

function setup(retentionDays = 30, logger = silentLogger(), results: { days?: number; batch?: number; capBytes?: number } = {}) {
  const dataDir = tempDir('housekeeping');
  const store = Store.open(dataDir);
  const kicks: number[] = [];
  const gateway = { store, destination: () => undefined, kickSender: () => kicks.push(Date.now()) };
  // the object itself is handed over, so a test can change the cap between runs
  const settings = parseConfig({ housekeeping: { retentionDays, resultRetentionDays: results.days ?? 90, maxStorageGB: (results.capBytes ?? 0) / 1e9 } }).housekeeping;
  const hk = new Housekeeping({
    settings,
    gateway,
    dataDir,
    destinations: ['pacs'],
    audit: new AuditLog(store.db),
    logger,
    resultBatch: results.batch,
  });

  /** A study received at `at`, processed (one overlay output, one send to pacs) unless `processed` is false. */
  const study = (uid: string, at: number, opts: { processed?: boolean; patientName?: string } = {}) => {
    const sop = `${uid}.1.1`;
    const file = path.join(dataDir, 'instances', uid, `${uid}.1`, `${sop}.dcm`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.alloc(1000, 1));
    store.recordInstance(
      { sopInstanceUid: sop, sopClassUid: US, transferSyntaxUid: '1.2.840.10008.1.2.1', studyUid: uid, seriesUid: `${uid}.1`, path: file, bytes: 1000, callingAe: 'US', callingHost: '127.0.0.1', patientName: opts.patientName ?? 'Keep^Private' },
      at,
    );
    if (opts.processed === false) return { file, sop, output: '' };
    store.queueStudyIfQuiet(uid, 0, at + 1000);
    const job = store.claimNextJob((s, run) => path.join(dataDir, 'results', s, `run-${run}`), at + 2000)!;
    const output = path.join(job.outDir, 'overlay.dcm');
    fs.mkdirSync(job.outDir, { recursive: true });
    fs.writeFileSync(output, Buffer.alloc(500, 2));
    store.completeJob(
      job.jobId,
      {
        outputs: [{ kind: 'overlay', path: output, sopClassUid: SC, sopInstanceUid: `${sop}.9`, seriesInstanceUid: `${uid}.9`, sourceSopInstanceUid: sop }],
        instances: [{ sopInstanceUid: sop, status: 'analysed', label: 'benign', probability: 0.8, malignancyProbability: 0.1, lesionCount: 1, frames: 1, timingsMs: { inference: 20 } }],
        label: 'benign',
        malignancyProbability: 0.1,
        timingsMs: { total: 50 },
      },
      [{ destination: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: 104 }],
      at + 3000,
    );
    return { file, sop, output };
  };
  const send = (uid: string) => store.listSends({ studyUid: uid })[0];
  return { dataDir, store, hk, study, send, kicks, settings };
}

test('retention deletes received images older than N days, keeps results and records, and never a study with an unsent result', async () => {
  const { dataDir, store, hk, study, send } = setup(30);
  const delivered = study('2.25.1', T0);
  store.markSendSent(send('2.25.1').id, send('2.25.1').generation, 0, T0 + 4000);
  const unsent = study('2.25.2', T0); // its send is still pending
  const failed = study('2.25.3', T0);
  store.markSendFailed(send('2.25.3').id, send('2.25.3').generation, 'send.file_unreadable: x', T0 + 4000);
  const young = study('2.25.4', T0 + 20 * DAY);
  store.markSendSent(send('2.25.4').id, send('2.25.4').generation, 0, T0 + 20 * DAY);
  const receiving = study('2.25.5', T0, { processed: false });

  const r = await hk.retention(T0 + 31 * DAY);
  expect(r.deletedFiles).toBe(1);
  expect(r.keptUnsent).toBe(3);
  expect(fs.existsSync(delivered.file)).toBe(false);
  expect(fs.existsSync(delivered.output)).toBe(true); // the result stays
  expect(store.getInstance(delivered.sop)).toMatchObject({ status: 'analysed', label: 'benign' });
  expect(store.db.prepare('SELECT purged_at AS p FROM instances WHERE sop_instance_uid = ?').get(delivered.sop)).toEqual({ p: T0 + 31 * DAY });
  expect(store.getStudy('2.25.1')).toMatchObject({ status: 'processed', label: 'benign' });
  for (const kept of [unsent, failed, young, receiving]) expect(fs.existsSync(kept.file)).toBe(true);
  const audit = new AuditLog(store.db).list().items;
  expect(audit[0]).toMatchObject({ username: 'system', action: 'housekeeping.retention', outcome: 'ok' });

  // once the last result is delivered, the next run takes the files
  store.markSendSent(send('2.25.2').id, send('2.25.2').generation, 0, T0 + 31 * DAY);
  expect((await hk.retention(T0 + 32 * DAY)).deletedFiles).toBe(1);
  expect(fs.existsSync(unsent.file)).toBe(false);
  // a failed send keeps the images until an admin has dealt with it; once discarded, they go too
  new StudyActions({ store, kickSender: () => undefined } as never, dataDir).discardSend(send('2.25.3').id, 'alice', T0 + 32 * DAY);
  expect((await hk.retention(T0 + 33 * DAY)).deletedFiles).toBe(1);
  expect(fs.existsSync(failed.file)).toBe(false);
  store.close();
});

test('image files no record points to (a crash between the file and its row) are removed once a day old; recorded ones stay', async () => {
  const { dataDir, store, hk, study } = setup(0); // even with retention off: these were never acknowledged
  const now = Date.now();
  const recorded = study('2.25.7', now - 3 * DAY);
  fs.utimesSync(recorded.file, (now - 3 * DAY) / 1000, (now - 3 * DAY) / 1000);
  const orphan = path.join(dataDir, 'instances', '2.25.8', '2.25.8.1', '2.25.8.1.1.dcm');
  const fresh = path.join(dataDir, 'instances', '2.25.9', '2.25.9.1', '2.25.9.1.1.dcm');
  for (const f of [orphan, fresh]) {
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, Buffer.alloc(10));
  }
  fs.utimesSync(orphan, (now - 2 * DAY) / 1000, (now - 2 * DAY) / 1000);
  expect((await hk.retention(now)).orphans).toBe(1);
  expect([fs.existsSync(orphan), fs.existsSync(fresh), fs.existsSync(recorded.file)]).toEqual([false, true, true]);
  store.close();
});

test('retention 0 keeps every file', async () => {
  const { store, hk, study, send } = setup(0);
  const s = study('2.25.1', T0);
  store.markSendSent(send('2.25.1').id, send('2.25.1').generation, 0, T0);
  expect(await hk.retention(T0 + 3650 * DAY)).toEqual({ deletedFiles: 0, bytes: 0, keptUnsent: 0, orphans: 0 });
  expect(fs.existsSync(s.file)).toBe(true);
  store.close();
});

test('the retry sweep makes waiting retries due now and re-queues sends whose destination is configured again', () => {
  const { store, hk, study, send, kicks } = setup();
  study('2.25.1', T0);
  study('2.25.2', T0);
  const a = send('2.25.1');
  store.markSendRetry(a.id, a.generation, 'send.network_error: refused', null, T0 + 3600_000, T0 + 5000);
  const b = send('2.25.2');
  store.markSendFailed(b.id, b.generation, 'send.destination_unknown: "pacs" is no longer configured', T0 + 5000);
  const r = hk.retrySweep(T0 + 60_000);
  expect(r).toEqual({ madeDue: 1, requeued: 1 });
  expect(send('2.25.1')).toMatchObject({ status: 'pending', nextAttemptAt: T0 + 60_000, attempts: 1 });
  expect(send('2.25.2')).toMatchObject({ status: 'pending', attempts: 0 });
  expect(kicks).toHaveLength(1);
  expect(hk.retrySweep(T0 + 61_000)).toEqual({ madeDue: 0, requeued: 0 });
  store.close();
});

test('the daily summary is one log line of counts, without patient data', () => {
  let out = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  const { store, hk, study, send } = setup(30, createLogger('info', sink));
  const now = Date.now();
  study('2.25.1', now - 3600_000, { patientName: 'Secret^Sally' });
  store.markSendSent(send('2.25.1').id, send('2.25.1').generation, 0, now - 3000_000);
  const s = hk.summary(now);
  expect(s).toMatchObject({ studiesReceived: 1, studiesProcessed: 1, resultsSent: 1, labels: { benign: 1 }, sendsPending: 0 });
  const line = out.trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.msg === 'daily summary');
  expect(line.summary.studiesProcessed).toBe(1);
  expect(out).not.toContain('Sally');
  store.close();
});

test('housekeeping schedules are validated: a bad cron expression names its key', () => {
  expect(() => parseConfig({ housekeeping: { retentionSchedule: '61 * * * *' } })).toThrow(ConfigError);
  expect(() => parseConfig({ housekeeping: { retentionSchedule: '61 * * * *' } })).toThrow(/housekeeping\.retentionSchedule: not a valid cron expression/);
  expect(() => parseConfig({ housekeeping: { retentionDays: -1 } })).toThrow(/housekeeping\.retentionDays/);
  // results are kept at least as long as the images they were made from (records go after images)
  expect(() => parseConfig({ housekeeping: { retentionDays: 30, resultRetentionDays: 7 } })).toThrow(/housekeeping\.resultRetentionDays: must be 0 \(keep results forever\) or at least housekeeping\.retentionDays/);
  expect(parseConfig({ housekeeping: { retentionDays: 30, resultRetentionDays: 0 } }).housekeeping.resultRetentionDays).toBe(0);
  expect(parseConfig({ housekeeping: { retentionDays: 30, resultRetentionDays: 30 } }).housekeeping.resultRetentionDays).toBe(30);
  // unset, it follows a longer retentionDays: a config written before the key existed still starts
  expect(parseConfig({ housekeeping: { retentionDays: 120 } }).housekeeping.resultRetentionDays).toBe(120);
  expect(parseConfig({}).housekeeping).toEqual({
    retentionDays: 30,
    resultRetentionDays: 90,
    maxStorageGB: 0,
    retentionSchedule: '30 3 * * *',
    storageCapSchedule: '*/15 * * * *',
    retrySweepSchedule: '*/10 * * * *',
    summarySchedule: '0 7 * * *',
  });
  // the size cap: 0 (none) or a positive size in GB, fractions allowed; its schedule is a cron expression too
  expect(() => parseConfig({ housekeeping: { maxStorageGB: -1 } })).toThrow(/housekeeping\.maxStorageGB: Too small/);
  expect(() => parseConfig({ housekeeping: { maxStorageGB: '500' } })).toThrow(/housekeeping\.maxStorageGB/);
  expect(parseConfig({ housekeeping: { maxStorageGB: 0.5 } }).housekeeping.maxStorageGB).toBe(0.5);
  expect(() => parseConfig({ housekeeping: { storageCapSchedule: 'often' } })).toThrow(/housekeeping\.storageCapSchedule: not a valid cron expression/);
  expect(parseConfig({}).http).toMatchObject({ trustProxy: false, secureCookie: 'auto', sessionIdleMinutes: 60, loginRateLimit: { max: 10, windowSeconds: 900 } });
  // timers: at most a day (past 24.8 days Node would fire them at once), first retry within the last
  expect(() => parseConfig({ study: { quietSeconds: 3e6 } })).toThrow(/study\.quietSeconds/);
  expect(() => parseConfig({ dicom: { associationTimeoutSeconds: 3e6 } })).toThrow(/dicom\.associationTimeoutSeconds/);
  expect(() => parseConfig({ send: { initialDelaySeconds: 900, maxDelaySeconds: 600 } })).toThrow(/send\.initialDelaySeconds: initialDelaySeconds must not exceed maxDelaySeconds/);
});

/** Rows a study has in each table (the audit log is counted apart: it stays). */
function rowsOf(store: Store, uid: string): Record<string, number> {
  const n = (sql: string) => (store.db.prepare(sql).get(uid) as { n: number }).n;
  return {
    ...Object.fromEntries(['studies', 'instances', 'jobs', 'outputs', 'sends', 'events'].map((t) => [t, n(`SELECT COUNT(*) AS n FROM ${t} WHERE study_uid = ?`)])),
    dismissals: n("SELECT COUNT(*) AS n FROM failure_dismissals WHERE key = ? OR kind = 'send'"),
  };
}
const NONE = { studies: 0, instances: 0, jobs: 0, outputs: 0, sends: 0, events: 0, dismissals: 0 };

/** Sets the file (or the folder and everything in it) to have been written `ms` ago. */
function backdate(target: string, ms: number) {
  const t = (Date.now() - ms) / 1000;
  const inside = fs.statSync(target).isDirectory() ? fs.readdirSync(target, { recursive: true }).map((f) => path.join(target, String(f))) : [];
  for (const f of [...inside, target]) fs.utimesSync(f, t, t);
}

test('result retention removes a settled study quiet for N days entirely, results and rows, and keeps its audit trail', async () => {
  const { dataDir, store, hk, study, send } = setup(30, silentLogger(), { days: 90 });
  const audit = new AuditLog(store.db);
  const s = study('2.25.1', T0);
  store.markSendSent(send('2.25.1').id, send('2.25.1').generation, 0, T0 + 4000);
  audit.add({ username: 'alice', action: 'study.view', outcome: 'ok', studyUid: '2.25.1' }, T0 + 5000);
  const metrics = new PipelineMetrics(store, { name: 'm', version: '1', provider: 'cpu' }, T0);

  // day 89: the received image goes (retentionDays 30), the results and rows stay
  let r = await hk.runRetention(T0 + 89 * DAY);
  expect([r.images.deletedFiles, r.results.studies]).toEqual([1, 0]);
  expect(fs.existsSync(s.output)).toBe(true);
  expect(rowsOf(store, '2.25.1')).toMatchObject({ studies: 1, outputs: 1, sends: 1 });

  r = await hk.runRetention(T0 + 91 * DAY);
  expect(r.results).toMatchObject({ studies: 1, files: 1, bytes: 500, keptUnsettled: 0, more: false, orphans: 0 });
  expect(fs.existsSync(s.output)).toBe(false);
  expect(fs.readdirSync(path.join(dataDir, 'results'))).toEqual([]); // nor a folder moved aside
  expect(fs.existsSync(path.join(dataDir, 'instances', '2.25.1'))).toBe(false);
  expect(rowsOf(store, '2.25.1')).toEqual(NONE);
  expect(store.db.pragma('foreign_key_check')).toEqual([]);
  const trail = audit.list({ studyUid: '2.25.1' }).items;
  expect(trail.map((a) => [a.username, a.action, a.outcome])).toEqual([
    ['system', 'housekeeping.result_retention', 'ok'],
    ['alice', 'study.view', 'ok'],
  ]);
  expect(audit.removal('2.25.1')).toEqual({ at: T0 + 91 * DAY, username: 'system', action: 'housekeeping.result_retention' }); // what the dashboard says instead of the study
  expect(hk.summary(T0 + 91 * DAY)).toMatchObject({ studiesRemovedByResultRetention: 1, bytesFreedByResultRetention: 500 });
  const text = await metrics.render();
  expect(text).toMatch(/sonogate_retention_removed_studies_total 1\n/);
  expect(text).toMatch(/sonogate_retention_deleted_bytes_total\{what="results"\} 500\n/);
  expect(text).toMatch(/sonogate_retention_deleted_bytes_total\{what="images"\} 1000\n/);

  // received again: a new study, analysed from run 1 (the same deterministic result UIDs go out again)
  const again = study('2.25.1', T0 + 92 * DAY);
  expect(store.getStudy('2.25.1')).toMatchObject({ status: 'processed', runCount: 1 });
  expect(again.output).toBe(path.join(dataDir, 'results', '2.25.1', 'run-1', 'overlay.dcm'));
  expect(send('2.25.1')).toMatchObject({ status: 'pending', attempts: 0 });
  store.close();
});

test('result retention keeps a study that owes something (unsent, failed and not discarded, in the pipeline) or had activity lately', async () => {
  const { dataDir, store, hk, study, send } = setup(30, silentLogger(), { days: 90 });
  const actions = new StudyActions({ store, kickSender: () => undefined } as never, dataDir);
  const pending = study('2.25.2', T0);
  const failedSend = study('2.25.3', T0);
  store.markSendFailed(send('2.25.3').id, send('2.25.3').generation, 'send.refused: A900', T0 + 4000);
  const late = study('2.25.4', T0); // delivered on day 80: the delivery is its last activity
  store.markSendSent(send('2.25.4').id, send('2.25.4').generation, 0, T0 + 80 * DAY);
  // delivered, its image deleted on day 31, then re-sent from the dashboard: pending again
  const resent = study('2.25.8', T0);
  store.markSendSent(send('2.25.8').id, send('2.25.8').generation, 0, T0 + 4000);
  expect((await hk.retention(T0 + 31 * DAY)).deletedFiles).toBe(2); // 2.25.8's and 2.25.4's images
  store.resetSends([send('2.25.8').id], T0 + 32 * DAY);
  const receiving = study('2.25.5', T0, { processed: false });
  study('2.25.7', T0, { processed: false }); // its analysis failed
  store.queueStudyIfQuiet('2.25.7', 0, T0 + 1000);
  store.failJob(store.claimNextJob(() => path.join(dataDir, 'results', 'x'), T0 + 2000)!.jobId, 'decode.failed', 'x', T0 + 3000);
  expect(store.getStudy('2.25.7')!.status).toBe('failed');
  const queued = study('2.25.6', T0, { processed: false });
  store.queueStudyIfQuiet('2.25.6', 0, T0 + 1000);

  const r = (await hk.runRetention(T0 + 91 * DAY)).results;
  expect(r).toMatchObject({ studies: 0, keptUnsettled: 3 }); // pending, failedSend, 2.25.7
  expect((await hk.runRetention(T0 + 123 * DAY)).results).toMatchObject({ studies: 0 }); // 2.25.8 quiet, but owes a send
  expect(fs.existsSync(resent.output)).toBe(true);
  for (const uid of ['2.25.2', '2.25.3', '2.25.4', '2.25.5', '2.25.6', '2.25.7']) expect(store.getStudy(uid)).toBeDefined();
  for (const kept of [pending, failedSend, late]) expect(fs.existsSync(kept.output)).toBe(true);
  expect([receiving, queued].map((k) => fs.existsSync(k.file))).toEqual([true, true]); // never even their images

  // once delivered or discarded, each goes after N quiet days, counted from that moment
  store.markSendSent(send('2.25.2').id, send('2.25.2').generation, 0, T0 + 91 * DAY);
  actions.discardSend(send('2.25.3').id, 'alice', T0 + 91 * DAY);
  expect(actions.discardFailure('study', '2.25.7', 'alice', T0 + 91 * DAY)).toEqual({ ok: true });
  expect((await hk.runRetention(T0 + 171 * DAY)).results).toMatchObject({ studies: 1, keptUnsettled: 1 }); // 2.25.4: quiet since day 80; 2.25.8 still owes
  expect(store.getStudy('2.25.4')).toBeUndefined();
  expect(fs.existsSync(late.output)).toBe(false);
  expect((await hk.runRetention(T0 + 182 * DAY)).results).toMatchObject({ studies: 3 });
  for (const uid of ['2.25.2', '2.25.3', '2.25.7']) expect(rowsOf(store, uid)).toEqual(NONE);
  for (const uid of ['2.25.5', '2.25.6']) expect(store.getStudy(uid)).toBeDefined();
  store.close();
});

test('result retention 0 keeps results and records forever (received images still go)', async () => {
  const { store, hk, study, send } = setup(30, silentLogger(), { days: 0 });
  const s = study('2.25.1', T0);
  store.markSendSent(send('2.25.1').id, send('2.25.1').generation, 0, T0 + 4000);
  const r = await hk.runRetention(T0 + 3650 * DAY);
  expect([r.images.deletedFiles, r.results.studies]).toEqual([1, 0]);
  expect(fs.existsSync(s.output)).toBe(true);
  expect(rowsOf(store, '2.25.1')).toMatchObject({ studies: 1, instances: 1, outputs: 1, sends: 1 });
  store.close();
});

test('with received images kept forever (retentionDays 0), result retention keeps their studies too: records go only after images', async () => {
  const { store, hk, study, send } = setup(0, silentLogger(), { days: 90 });
  const s = study('2.25.1', T0);
  store.markSendSent(send('2.25.1').id, send('2.25.1').generation, 0, T0 + 4000);
  expect((await hk.runRetention(T0 + 3650 * DAY)).results).toMatchObject({ studies: 0, keptUnsettled: 1 });
  expect([fs.existsSync(s.file), fs.existsSync(s.output)]).toEqual([true, true]);
  expect(store.getInstance(s.sop)).toMatchObject({ path: s.file });
  store.close();
});

test('result retention takes at most a batch of studies per run; the next run goes on', async () => {
  const { store, hk, study, send } = setup(30, silentLogger(), { days: 90, batch: 2 });
  for (const uid of ['2.25.1', '2.25.2', '2.25.3']) {
    study(uid, T0);
    store.markSendSent(send(uid).id, send(uid).generation, 0, T0 + 4000);
  }
  expect((await hk.runRetention(T0 + 91 * DAY)).results).toMatchObject({ studies: 2, more: true });
  expect((await hk.runRetention(T0 + 91 * DAY)).results).toMatchObject({ studies: 1, more: false });
  expect(store.listStudies()).toEqual([]);
  store.close();
});

test('the rows of refused files go with result retention once their file is gone and their failure discarded', async () => {
  const { dataDir, store, hk } = setup(30, silentLogger(), { days: 90 });
  const refuse = (sop: string) => {
    const file = path.join(dataDir, 'failed', `${sop}.dcm`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.alloc(10));
    store.recordRejectedInstance({ sopInstanceUid: sop, sopClassUid: US, transferSyntaxUid: '1.2.840.10008.1.2', path: file, bytes: 10, callingAe: 'US', callingHost: '127.0.0.1', reason: 'decode.header', message: 'x' }, T0);
  };
  refuse('2.25.50');
  refuse('2.25.51');
  new StudyActions({ store, kickSender: () => undefined } as never, dataDir).discardFailure('instance', '2.25.50', 'alice', T0 + 3600_000);
  expect((await hk.runRetention(T0 + 91 * DAY)).results.rejectedRows).toBe(1);
  expect(store.getInstance('2.25.50')).toBeUndefined();
  expect(store.getInstance('2.25.51')).toMatchObject({ status: 'failed' }); // still on the Failures page
  expect(store.db.prepare('SELECT COUNT(*) AS n FROM failure_dismissals').get()).toEqual({ n: 0 });
  expect(store.db.prepare('SELECT COUNT(*) AS n FROM events WHERE study_uid IS NULL AND at < ?').get(T0 + 2 * DAY)).toEqual({ n: 0 });
  store.close();
});

test('result files no row points to are removed once a day old, even with result retention off; recorded and newer ones stay', async () => {
  const { dataDir, store, hk, study } = setup(0, silentLogger(), { days: 0 });
  const recorded = study('2.25.7', Date.now() - 3 * DAY);
  backdate(path.join(dataDir, 'results'), 3 * DAY);
  const put = (rel: string, ageMs: number) => {
    const f = path.join(dataDir, 'results', rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, Buffer.alloc(10));
    backdate(path.join(dataDir, 'results', rel.split('/')[0]), ageMs);
    return f;
  };
  const orphan = put('2.25.8/run-1/seg-2.25.8.9.dcm', 2 * DAY);
  const fresh = put('2.25.9/run-1/sr-2.25.9.9.dcm', 3600_000);
  // a study received again after a crash left its old folder: its run may be rewriting these names now
  study('2.25.12', Date.now(), { processed: false });
  const rewriting = put('2.25.12/run-1/overlay-2.25.12.9.dcm', 2 * DAY);
  const temp = path.join(path.dirname(recorded.output), '.sr-1.dcm.0a1b.tmp'); // a write cut short
  fs.writeFileSync(temp, Buffer.alloc(10));
  backdate(temp, 2 * DAY);

  expect((await hk.resultRetention(Date.now())).orphans).toBe(2);
  expect([orphan, temp, fresh, recorded.output, rewriting].map((f) => fs.existsSync(f))).toEqual([false, false, true, true, true]);
  expect(fs.existsSync(path.join(dataDir, 'results', '2.25.8'))).toBe(false); // emptied folders go too
  store.close();
});

test('a kill -9 after a study\'s rows went and before its files did leaves only orphans, which the next run removes', async () => {
  const { dataDir, store, hk, study, send } = setup(30, silentLogger(), { days: 90 });
  const now = Date.now();
  const s = study('2.25.10', now - 100 * DAY);
  store.markSendSent(send('2.25.10').id, send('2.25.10').generation, 0, now - 100 * DAY);
  // the transaction committed (rows and audit row), the process died before removeStudyFiles
  store.deleteStudyRows('2.25.10');
  // and one died after moving a study's results aside (results/.deleted-<uid>-<ms>), before removing them
  const aside = path.join(dataDir, 'results', '.deleted-2.25.11-1700000000000', 'run-1', 'sr-2.25.11.9.dcm');
  fs.mkdirSync(path.dirname(aside), { recursive: true });
  fs.writeFileSync(aside, Buffer.alloc(10));
  backdate(path.join(dataDir, 'results'), 100 * DAY);
  backdate(s.file, 100 * DAY);

  const r = await hk.runRetention(now);
  expect([r.images.orphans, r.results.orphans, r.results.studies]).toEqual([1, 2, 0]);
  expect([s.file, s.output, aside].map((f) => fs.existsSync(f))).toEqual([false, false, false]);
  expect(fs.readdirSync(path.join(dataDir, 'results'))).toEqual([]);
  store.close();
});

// ------------------------------------------------------------------ storage cap (housekeeping.maxStorageGB)

/** Captures the log as parsed lines. */
function logLines() {
  let out = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  });
  return { logger: createLogger('info', sink), text: () => out, lines: () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** The setup's study() (a 1000-byte image, a 500-byte overlay), delivered at `sentAt`: it owes nothing. */
function deliveredStudy(h: ReturnType<typeof setup>, uid: string, at: number, sentAt = at + 4000) {
  const s = h.study(uid, at);
  h.store.markSendSent(h.send(uid).id, h.send(uid).generation, 0, sentAt);
  return s;
}

test('the storage cap deletes received images, then whole settled studies, oldest activity first, and stops once under the cap', async () => {
  const h = setup(30, silentLogger(), { days: 90, capBytes: 4200 });
  const { store, hk, settings } = h;
  const audit = new AuditLog(store.db);
  const metrics = new PipelineMetrics(store, { name: 'm', version: '1', provider: 'cpu' }, { storageCapBytes: 4200, storageCapUnmet: () => hk.capUnmet }, T0);
  // by last activity: A, B, C, D. D was received first but delivered last, so it is the newest
  const a = deliveredStudy(h, '2.25.31', T0);
  const b = deliveredStudy(h, '2.25.32', T0 + 1 * DAY);
  const c = deliveredStudy(h, '2.25.33', T0 + 2 * DAY);
  const d = deliveredStudy(h, '2.25.34', T0 - 1 * DAY, T0 + 3 * DAY);
  const now = T0 + 5 * DAY; // nothing is old enough for the age rules (30 and 90 days)

  // 4 × (1000 + 500) = 6000 bytes; the result files' sizes are read from the disk first (filed without)
  let r = await hk.storageCap(now);
  expect(r).toMatchObject({ capBytes: 4200, keptBefore: 6000, sized: 4, imageFiles: 2, imageBytes: 2000, studies: 0, keptAfter: 4000, more: false, unmet: false });
  expect([a.file, b.file, c.file, d.file].map((f) => fs.existsSync(f))).toEqual([false, false, true, true]);
  expect([a.output, b.output, c.output, d.output].every((f) => fs.existsSync(f))).toBe(true);
  expect(store.getInstance(a.sop)).toMatchObject({ status: 'analysed' }); // the record stays, as after image retention
  expect(audit.list({ action: 'housekeeping.storage_cap' }).items).toEqual([expect.objectContaining({ username: 'system', studyUid: null })]);

  // under the cap: the next run does nothing
  expect(await hk.storageCap(now)).toMatchObject({ keptBefore: 4000, imageFiles: 0, studies: 0 });

  // a lower cap: the other two images go, then whole studies (results and rows), oldest first: A, B
  settings.maxStorageGB = 1200 / 1e9;
  r = await hk.storageCap(now);
  expect(r).toMatchObject({ keptBefore: 4000, imageFiles: 2, studies: 2, files: 2, bytes: 1000, keptAfter: 1000, unmet: false });
  expect(rowsOf(store, '2.25.31')).toEqual(NONE);
  expect(rowsOf(store, '2.25.32')).toEqual(NONE);
  expect([a.output, b.output, c.output, d.output].map((f) => fs.existsSync(f))).toEqual([false, false, true, true]);
  expect(store.getStudy('2.25.33')).toMatchObject({ status: 'processed' });
  expect(store.getStudy('2.25.34')).toMatchObject({ status: 'processed' });
  expect(store.storageBytes()).toMatchObject({ images: 0, results: 1000, unsizedResults: 0 });
  // one audit row per removed study, saying it was the cap; the study page says so too
  const trail = audit.list({ studyUid: '2.25.31' }).items;
  expect(trail).toEqual([expect.objectContaining({ username: 'system', action: 'housekeeping.storage_cap', outcome: 'ok' })]);
  expect(JSON.parse(String(trail[0].detail))).toEqual({ maxStorageGB: 1200 / 1e9, keptBytes: 2000, resultFiles: 1 }); // kept when it went: C's and D's images had gone first
  expect(audit.removal('2.25.32')).toEqual({ at: now, username: 'system', action: 'housekeeping.storage_cap' });
  expect(hk.summary(now)).toMatchObject({ studiesRemovedByStorageCap: 2, storageBytes: 1000 });
  const text = await metrics.render();
  expect(text).toMatch(/sonogate_storage_cap_removed_studies_total 2\n/);
  expect(text).toMatch(/sonogate_storage_cap_freed_bytes_total\{what="images"\} 4000\n/);
  expect(text).toMatch(/sonogate_storage_cap_freed_bytes_total\{what="results"\} 1000\n/);
  expect(text).toMatch(/sonogate_storage_bytes 1000\n/);
  expect(text).toMatch(/sonogate_storage_cap_bytes 4200\n/); // the cap the process started with
  expect(text).toMatch(/sonogate_storage_cap_unmet 0\n/);
  expect(text).toMatch(/sonogate_retention_removed_studies_total 0\n/); // not counted as result retention
  store.close();
});

test('the storage cap never touches a study that owes something, even the oldest; it warns once per run, with UIDs and counts only', async () => {
  const log = logLines();
  const h = setup(30, log.logger, { days: 90, capBytes: 1 });
  const { dataDir, store, hk, send } = h;
  const actions = new StudyActions({ store, kickSender: () => undefined } as never, dataDir);
  const pending = h.study('2.25.41', T0 - 50 * DAY, { patientName: 'Secret^Sally' }); // the oldest: its result is not delivered
  const failedSend = h.study('2.25.42', T0 - 40 * DAY);
  store.markSendFailed(send('2.25.42').id, send('2.25.42').generation, 'send.refused: A900', T0 - 40 * DAY);
  const failedRun = h.study('2.25.43', T0 - 30 * DAY, { processed: false });
  store.queueStudyIfQuiet('2.25.43', 0, T0 - 30 * DAY + 1000);
  store.failJob(store.claimNextJob(() => path.join(dataDir, 'results', 'x'), T0 - 30 * DAY + 2000)!.jobId, 'decode.failed', 'x', T0 - 30 * DAY + 3000);
  const settled = deliveredStudy(h, '2.25.46', T0); // the newest, and the only one that may go
  const receiving = h.study('2.25.44', T0 - 20 * DAY, { processed: false });
  const queued = h.study('2.25.45', T0 - 20 * DAY, { processed: false });
  store.queueStudyIfQuiet('2.25.45', 0, T0 - 20 * DAY + 1000);

  const r = await hk.storageCap(T0 + DAY);
  expect(r).toMatchObject({ imageFiles: 1, studies: 1, unmet: true, more: false, keptAfter: 5 * 1000 + 2 * 500 });
  expect(hk.capUnmet).toBe(true);
  const text = await new PipelineMetrics(store, { name: 'm', version: '1', provider: 'cpu' }, { storageCapBytes: 1, storageCapUnmet: () => hk.capUnmet }).render();
  expect(text).toMatch(/sonogate_storage_cap_unmet 1\n/);
  expect(text).toMatch(/sonogate_storage_bytes 6000\n/);
  expect(store.getStudy('2.25.46')).toBeUndefined();
  expect(fs.existsSync(settled.output)).toBe(false);
  for (const kept of [pending, failedSend, failedRun, receiving, queued]) expect(fs.existsSync(kept.file)).toBe(true);
  for (const kept of [pending, failedSend]) expect(fs.existsSync(kept.output)).toBe(true);
  for (const uid of ['2.25.41', '2.25.42', '2.25.43', '2.25.44', '2.25.45']) expect(store.listInstances(uid)[0]).toMatchObject({ studyUid: uid });
  expect(store.db.prepare('SELECT COUNT(*) AS n FROM instances WHERE purged_at IS NOT NULL').get()).toEqual({ n: 0 });

  const warnings = log.lines().filter((l) => l.msg === 'storage cap not met: what is left belongs to studies that owe something (unsent results, failures not discarded, in the pipeline) or is refused files; deliver or discard them, or raise housekeeping.maxStorageGB');
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatchObject({ level: 40, capBytes: 1, keptBytes: 6000, studiesOwing: 5, refusedFiles: 0 });
  expect(warnings[0].oldestOwing).toEqual(['2.25.41', '2.25.42', '2.25.43', '2.25.44', '2.25.45']);
  expect(log.text()).not.toContain('Sally');

  // once delivered or discarded, a study owes nothing and goes like any other, oldest first
  store.markSendSent(send('2.25.41').id, send('2.25.41').generation, 0, T0 + DAY);
  actions.discardSend(send('2.25.42').id, 'alice', T0 + DAY);
  expect(actions.discardFailure('study', '2.25.43', 'alice', T0 + DAY)).toEqual({ ok: true });
  expect(await hk.storageCap(T0 + 2 * DAY)).toMatchObject({ imageFiles: 3, studies: 2, unmet: true });
  expect([store.getStudy('2.25.41'), store.getStudy('2.25.42')]).toEqual([undefined, undefined]);
  // the failed analysis lost its image, but has no result files: removing its record would free nothing
  expect(fs.existsSync(failedRun.file)).toBe(false);
  expect(store.getStudy('2.25.43')).toMatchObject({ status: 'failed' });
  expect(log.lines().filter((l) => l.level === 40)).toHaveLength(2); // one more warning: one per run
  store.close();
});

test('a cap of 0 removes nothing by size, however much is kept', async () => {
  const h = setup(30, silentLogger(), { days: 90, capBytes: 0 });
  const kept = [deliveredStudy(h, '2.25.51', T0), deliveredStudy(h, '2.25.52', T0)];
  expect(await h.hk.storageCap(T0 + DAY)).toEqual({ capBytes: 0, keptBefore: 0, keptAfter: 0, sized: 0, imageFiles: 0, imageBytes: 0, studies: 0, files: 0, bytes: 0, more: false, unmet: false });
  expect((await h.hk.runRetention(T0 + DAY)).cap).toMatchObject({ capBytes: 0, imageFiles: 0, studies: 0 });
  for (const s of kept) expect([fs.existsSync(s.file), fs.existsSync(s.output)]).toEqual([true, true]);
  expect(h.store.storageBytes()).toMatchObject({ images: 2000, results: 1000 }); // the retention run read the results' sizes
  expect(await new PipelineMetrics(h.store, { name: 'm', version: '1', provider: 'cpu' }).render()).toMatch(/sonogate_storage_cap_bytes 0\n/);
  h.store.close();
});

test('the retention run applies the cap after the age rules; the cap takes at most a batch of studies per run', async () => {
  const h = setup(30, silentLogger(), { days: 90, batch: 2, capBytes: 1 });
  for (const [i, uid] of ['2.25.61', '2.25.62', '2.25.63'].entries()) deliveredStudy(h, uid, T0 + i * 1000);
  // day 31: image retention deletes the three images; the cap then removes the studies, two per run
  const r = await h.hk.runRetention(T0 + 31 * DAY);
  expect([r.images.deletedFiles, r.results.studies]).toEqual([3, 0]);
  expect(r.cap).toMatchObject({ imageFiles: 0, studies: 2, more: true, unmet: false });
  expect(h.store.listStudies().map((s) => s.studyUid)).toEqual(['2.25.63']); // the two oldest went
  // two calls at once (its own schedule and the retention run's) share one run
  const [x, y] = [h.hk.storageCap(T0 + 31 * DAY), h.hk.storageCap(T0 + 31 * DAY)];
  expect(x).toBe(y);
  expect(await x).toMatchObject({ studies: 1, more: false, unmet: false, keptAfter: 0 });
  expect(h.store.listStudies()).toEqual([]);
  h.store.close();
});
