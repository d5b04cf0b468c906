/** The sender loop against a scripted destination: grouping, backoff, exactly-once marking, routing. */
import { backoffMs } from '../../src/dispatch/backoff';
import type { Destination, FileSendResult, OutgoingFile } from '../../src/dispatch/destination';
import { isDelivered, isRefusal, REFUSED_ATTEMPTS } from '../../src/dispatch/destination';
import { Sender } from '../../src/dispatch/sender';
import { Store } from '../../src/store';
import { sendTargetsFor } from '../../src/study/routing';
import type { StudyJobOutput } from '../../src/types/pipeline';
import { eventually } from '../helpers/peers';
import { silentLogger, tempDir, testConfig } from '../helpers/gatewayHarness';

const STUDY = '1.2.3';

class ScriptedDestination implements Destination {
  calls: OutgoingFile[][] = [];
  constructor(
    readonly name: string,
    public answer: (f: OutgoingFile) => FileSendResult,
  ) {}
  async send(files: OutgoingFile[]) {
    this.calls.push(files);
    return files.map((f) => this.answer(f));
  }
  async echo() {
    return { ok: true, ms: 0 };
  }
}

const ok = (f: OutgoingFile): FileSendResult => ({ sopInstanceUid: f.sopInstanceUid, delivered: true, status: 0 });
const down = (f: OutgoingFile): FileSendResult => ({ sopInstanceUid: f.sopInstanceUid, delivered: false, status: null, error: 'send.network_error: connect ECONNREFUSED' });

function seed(store: Store, outputs: number, destinations: string[]) {
  store.recordInstance({ sopInstanceUid: '1.2.3.1', sopClassUid: 'x', transferSyntaxUid: 'y', studyUid: STUDY, seriesUid: '1.2.3.4', path: '/p', bytes: 1, callingAe: 'A', callingHost: 'h' }, 1);
  store.queueStudyIfQuiet(STUDY, 0, 2);
  const job = store.claimNextJob(() => '/out', 3)!;
  const result: StudyJobOutput = {
    outputs: Array.from({ length: outputs }, (_, i) => ({ kind: 'sr' as const, path: `/out/${i}.dcm`, sopClassUid: '1.2.840.10008.5.1.4.1.1.88.33', sopInstanceUid: `9.9.${i}`, seriesInstanceUid: '9.9', sourceSopInstanceUid: '1.2.3.1' })),
    instances: [],
    label: null,
    malignancyProbability: null,
    timingsMs: {},
  };
  store.completeJob(job.jobId, result, destinations.map((d) => ({ destination: d, aeTitle: d.toUpperCase(), host: '127.0.0.1', port: 1 })));
}

let store: Store;
let sender: Sender | undefined;
beforeEach(() => {
  store = Store.open(tempDir('sender'));
});
afterEach(async () => {
  await sender?.close();
  store.close();
});

test('backoff doubles from the initial delay up to the maximum', () => {
  expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffMs(n, 5000, 60_000))).toEqual([5000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000]);
  expect(backoffMs(1000, 5000, 600_000)).toBe(600_000);
});

test('success and the warnings (B000/B006/B007, and the general 0001/0107/0116) count as delivered; other statuses do not', () => {
  expect([0x0000, 0xb000, 0xb006, 0xb007, 0x0001, 0x0107, 0x0116].every(isDelivered)).toBe(true);
  expect([0xa700, 0xa900, 0xc000, 0x0110, 0x0122].some(isDelivered)).toBe(false);
  // refusals of the object itself, against failures of the moment
  expect([0xa900, 0xa9ff, 0xc000, 0xc123, 0x0122, 0x0124].every(isRefusal)).toBe(true);
  expect([0xa700, 0xa7ff, 0x0110, 0x0000].some(isRefusal)).toBe(false);
});

test('an object the PACS refuses (0122) stops being retried after three refusals and shows as failed; out of resources (A700) keeps retrying', async () => {
  seed(store, 2, ['pacs']);
  const pacs = new ScriptedDestination('pacs', (f) =>
    f.sopInstanceUid === '9.9.0'
      ? { sopInstanceUid: f.sopInstanceUid, delivered: false, status: 0x0122, error: 'send.status_failure: status 0x0122' }
      : { sopInstanceUid: f.sopInstanceUid, delivered: false, status: 0xa700, error: 'send.status_failure: status 0xa700' },
  );
  sender = new Sender({ store, destinationFor: () => pacs, initialDelayMs: 20, maxDelayMs: 20, logger: silentLogger() });
  sender.start();
  await eventually(() => store.listSends()[1].attempts >= 5, 10_000, 'five attempts of the A700 one');
  const [refused, busy] = store.listSends();
  expect(refused).toMatchObject({ status: 'failed', attempts: REFUSED_ATTEMPTS, lastError: expect.stringMatching(/status 0x0122; refused 3 times, not retried/) });
  expect(busy.status).toBe('pending');
});

test('all due files of one destination go over one association per pass', async () => {
  seed(store, 3, ['pacs', 'archive']);
  const pacs = new ScriptedDestination('pacs', ok);
  const archive = new ScriptedDestination('archive', ok);
  sender = new Sender({ store, destinationFor: (r) => (r.destination === 'pacs' ? pacs : archive), initialDelayMs: 50, maxDelayMs: 200, logger: silentLogger() });
  sender.start();
  await eventually(() => store.listSends({ status: 'sent' }).length === 6, 5000, 'all sent');
  expect(pacs.calls.map((c) => c.length)).toEqual([3]);
  expect(archive.calls.map((c) => c.length)).toEqual([3]);
  expect(pacs.calls[0].map((f) => f.path)).toEqual(['/out/0.dcm', '/out/1.dcm', '/out/2.dcm']);
});

test('a destination that is down is retried with doubling delays, the error stays visible, and the file is sent once when it is back', async () => {
  seed(store, 1, ['pacs']);
  const pacs = new ScriptedDestination('pacs', down);
  const attemptsAt: number[] = [];
  pacs.answer = (f) => {
    attemptsAt.push(Date.now());
    return down(f);
  };
  sender = new Sender({ store, destinationFor: () => pacs, initialDelayMs: 100, maxDelayMs: 400, logger: silentLogger() });
  sender.start();
  await eventually(() => attemptsAt.length >= 4, 5000, '4 attempts');
  const row = store.listSends()[0];
  expect(row).toMatchObject({ status: 'pending', lastError: 'send.network_error: connect ECONNREFUSED' });
  expect(row.attempts).toBeGreaterThanOrEqual(4);
  const gaps = attemptsAt.slice(1, 4).map((t, i) => t - attemptsAt[i]);
  // 100, 200, 400 ms (timers fire late, never early)
  expect(gaps[0]).toBeGreaterThanOrEqual(95);
  expect(gaps[1]).toBeGreaterThanOrEqual(195);
  expect(gaps[2]).toBeGreaterThanOrEqual(395);
  expect(gaps[0]).toBeLessThan(gaps[2]);
  expect(store.listEvents({ studyUid: STUDY }).filter((e) => e.kind === 'send.retry').length).toBeGreaterThanOrEqual(2);

  const before = pacs.calls.length;
  pacs.answer = ok;
  await eventually(() => store.listSends({ status: 'sent' }).length === 1, 5000, 'sent');
  await new Promise((r) => setTimeout(r, 600));
  expect(pacs.calls.length).toBe(before + 1);
  expect(store.listSends()[0]).toMatchObject({ status: 'sent', lastError: null, lastStatus: 0 });
});

test('an unreachable destination costs one connection per pass, not one per batch; its whole backlog backs off', async () => {
  seed(store, 7, ['pacs']);
  const pacs = new ScriptedDestination('pacs', down);
  sender = new Sender({ store, destinationFor: () => pacs, initialDelayMs: 10_000, maxDelayMs: 20_000, batchSize: 2, logger: silentLogger() });
  sender.start();
  await eventually(() => store.listSends().every((r) => r.attempts === 1), 5000, 'one attempt recorded for every send');
  expect(pacs.calls).toHaveLength(1); // 7 files in batches of 2 would be 4 connections
  expect(store.listSends().every((r) => r.lastError === 'send.network_error: connect ECONNREFUSED' && r.nextAttemptAt > Date.now())).toBe(true);
});

test('a status failure is retried and keeps the status; an unreadable file fails for good', async () => {
  seed(store, 2, ['pacs']);
  const pacs = new ScriptedDestination('pacs', (f) =>
    f.sopInstanceUid === '9.9.0'
      ? { sopInstanceUid: f.sopInstanceUid, delivered: false, status: 0xa700, error: 'send.status_failure: status 0xa700' }
      : { sopInstanceUid: f.sopInstanceUid, delivered: false, status: null, error: 'send.file_unreadable: ENOENT', permanent: true },
  );
  sender = new Sender({ store, destinationFor: () => pacs, initialDelayMs: 10_000, maxDelayMs: 10_000, logger: silentLogger() });
  sender.start();
  await eventually(() => store.listSends().every((s) => s.attempts === 1), 5000, 'one attempt each');
  const [a, b] = store.listSends();
  expect(a).toMatchObject({ status: 'pending', lastStatus: 0xa700, lastError: 'send.status_failure: status 0xa700' });
  expect(b).toMatchObject({ status: 'failed', lastError: 'send.file_unreadable: ENOENT' });
});

test('sends to a destination that left the config fail with a reason instead of waiting forever', async () => {
  seed(store, 1, ['gone']);
  sender = new Sender({ store, destinationFor: () => null, initialDelayMs: 10, maxDelayMs: 10, logger: silentLogger() });
  sender.start();
  await eventually(() => store.listSends({ status: 'failed' }).length === 1, 5000, 'failed');
  expect(store.listSends()[0].lastError).toMatch(/^send\.destination_unknown/);
});

test('results go to every destination, and back to the calling scanner only when its entry says so', () => {
  const config = testConfig({
    dataDir: '/tmp/x',
    port: 1,
    destinations: [{ name: 'pacs', aeTitle: 'PACS', host: '10.0.0.5', port: 104 }],
    dicom: {
      allowedCallers: [
        { aeTitle: 'US_SCANNER', host: '10.1.2.3', returnToSender: { port: 4000 } },
        { aeTitle: 'US_OTHER', returnToSender: { port: 4001, aeTitle: 'US_STORE' } },
        { aeTitle: 'US_QUIET' },
      ],
    },
  });
  expect(sendTargetsFor(config, { callingAe: 'US_SCANNER', callingHost: '10.1.2.3' })).toEqual([
    { destination: 'pacs', aeTitle: 'PACS', host: '10.0.0.5', port: 104 },
    { destination: 'return:US_SCANNER@10.1.2.3:4000', aeTitle: 'US_SCANNER', host: '10.1.2.3', port: 4000 },
  ]);
  expect(sendTargetsFor(config, { callingAe: 'US_OTHER', callingHost: '10.9.9.9' })[1]).toEqual({ destination: 'return:US_STORE@10.9.9.9:4001', aeTitle: 'US_STORE', host: '10.9.9.9', port: 4001 });
  expect(sendTargetsFor(config, { callingAe: 'US_QUIET', callingHost: '10.9.9.9' })).toHaveLength(1);
  expect(sendTargetsFor({ ...config, destinations: [] }, { callingAe: 'US_QUIET', callingHost: '10.9.9.9' })).toEqual([]);
});

test('at shutdown, an association that does not finish within the grace time is aborted; its files stay pending for after the restart', async () => {
  seed(store, 2, ['pacs']);
  let aborted = 0;
  let release: (() => void) | null = null;
  // a PACS that accepted the association and then stopped answering
  const hung: Destination = {
    name: 'pacs',
    send: (files) =>
      new Promise<FileSendResult[]>((resolve) => {
        release = () => resolve(files.map((f) => ({ sopInstanceUid: f.sopInstanceUid, delivered: false, status: null, error: 'send.aborted: shutting down' })));
      }),
    echo: async () => ({ ok: true, ms: 0 }),
    abort: () => {
      aborted++;
      release?.();
    },
  };
  sender = new Sender({ store, destinationFor: () => hung, initialDelayMs: 10, maxDelayMs: 10, logger: silentLogger() });
  sender.start();
  await eventually(() => release !== null, 5000, 'the association started');
  const t0 = Date.now();
  await sender.close(200);
  expect(Date.now() - t0).toBeLessThan(2000);
  expect(aborted).toBe(1);
  expect(store.listSends().map((s) => s.status)).toEqual(['pending', 'pending']);
  sender = undefined;
});

test('a study deleted while its results are on the wire leaves no events behind when the answers come back', async () => {
  seed(store, 2, ['pacs']);
  const pacs = new ScriptedDestination('pacs', ok);
  const send = pacs.send.bind(pacs);
  pacs.send = async (files) => {
    // the admin deletes the study (studyActions.delete removes its rows) during the association
    store.db.prepare('DELETE FROM sends WHERE study_uid = ?').run(STUDY);
    store.db.prepare('DELETE FROM events WHERE study_uid = ?').run(STUDY);
    return send(files);
  };
  sender = new Sender({ store, destinationFor: () => pacs, initialDelayMs: 10, maxDelayMs: 10, logger: silentLogger() });
  sender.start();
  await eventually(() => pacs.calls.length === 1, 5000, 'the association ran');
  await sender.close();
  sender = undefined;
  expect(store.listEvents({ studyUid: STUDY })).toEqual([]);
});

test('a full database: a delivery it cannot record is not sent again, and is recorded once it can; failing passes back off', async () => {
  seed(store, 2, ['pacs']);
  const pacs = new ScriptedDestination('pacs', ok);
  // SQLite on a full disk: every write fails until space is freed
  let full = true;
  const fullError = () => Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  const markSendSent = store.markSendSent.bind(store);
  store.markSendSent = (...args: Parameters<Store['markSendSent']>) => {
    if (full) throw fullError();
    return markSendSent(...args);
  };
  sender = new Sender({ store, destinationFor: () => pacs, initialDelayMs: 20, maxDelayMs: 200, logger: silentLogger() });
  sender.start();
  await eventually(() => pacs.calls.length >= 1, 5000, 'first delivery');
  await new Promise((r) => setTimeout(r, 500));
  // delivered once; the rows could not be marked sent, yet they were not sent again
  expect(pacs.calls.flat().map((f) => f.sopInstanceUid).sort()).toEqual(['9.9.0', '9.9.1']);
  expect(store.listSends().map((s) => s.status)).toEqual(['pending', 'pending']);
  full = false;
  await eventually(() => store.listSends().every((s) => s.status === 'sent'), 5000, 'recorded once the database has room');
  expect(pacs.calls).toHaveLength(1);

  // a pass that fails on the database before any PACS answer (retries cannot be recorded either)
  // is held back with backoff, not repeated at once
  seed(store, 1, ['other']);
  const other = new ScriptedDestination('other', down);
  const markSendRetry = store.markSendRetry.bind(store);
  let retryRefusals = 0;
  store.markSendRetry = (...args: Parameters<Store['markSendRetry']>) => {
    if (retryRefusals < 1000) {
      retryRefusals++;
      throw fullError();
    }
    return markSendRetry(...args);
  };
  await sender.close();
  sender = new Sender({ store, destinationFor: (row) => (row.destination === 'other' ? other : pacs), initialDelayMs: 50, maxDelayMs: 400, logger: silentLogger() });
  sender.start();
  await new Promise((r) => setTimeout(r, 1000));
  // without backoff this is hundreds of associations a second; with it 50, 100, 200, 400 ms apart
  expect(other.calls.length).toBeGreaterThanOrEqual(2);
  expect(other.calls.length).toBeLessThanOrEqual(6);
});
