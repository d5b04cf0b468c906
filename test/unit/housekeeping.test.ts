/**
 * Housekeeping on a real store (SQLite + files), with the clock passed in: retention deletes
 * old received images but never one whose study still has an undelivered result; the retry
 * sweep brings failed sends back; the daily summary is counts only.
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
import { silentLogger, tempDir } from '../helpers/gatewayHarness';

const DAY = 24 * 3600_000;
const T0 = Date.UTC(2026, 0, 10, 12);
const SC = '1.2.840.10008.5.1.4.1.1.7';
const US = '1.2.840.10008.5.1.4.1.1.6.1';

function setup(retentionDays = 30, logger = silentLogger()) {
  const dataDir = tempDir('housekeeping');
  const store = Store.open(dataDir);
  const kicks: number[] = [];
  const gateway = { store, destination: () => undefined, kickSender: () => kicks.push(Date.now()) };
  const hk = new Housekeeping({
    settings: { retentionDays, retentionSchedule: '30 3 * * *', retrySweepSchedule: '*/10 * * * *', summarySchedule: '0 7 * * *' },
    gateway,
    dataDir,
    destinations: ['pacs'],
    audit: new AuditLog(store.db),
    logger,
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
  return { dataDir, store, hk, study, send, kicks };
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
  expect(parseConfig({}).housekeeping).toEqual({ retentionDays: 30, retentionSchedule: '30 3 * * *', retrySweepSchedule: '*/10 * * * *', summarySchedule: '0 7 * * *' });
  expect(parseConfig({}).http).toMatchObject({ trustProxy: false, secureCookie: 'auto', sessionIdleMinutes: 60, loginRateLimit: { max: 10, windowSeconds: 900 } });
  // timers: at most a day (past 24.8 days Node would fire them at once), first retry within the last
  expect(() => parseConfig({ study: { quietSeconds: 3e6 } })).toThrow(/study\.quietSeconds/);
  expect(() => parseConfig({ dicom: { associationTimeoutSeconds: 3e6 } })).toThrow(/dicom\.associationTimeoutSeconds/);
  expect(() => parseConfig({ send: { initialDelaySeconds: 900, maxDelaySeconds: 600 } })).toThrow(/send\.initialDelaySeconds: initialDelaySeconds must not exceed maxDelaySeconds/);
});
