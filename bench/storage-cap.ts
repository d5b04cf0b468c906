/**
 * What the storage cap (housekeeping.maxStorageGB) costs and frees: N synthetic studies filed
 * through the store's API, delivered, a minute apart, 5 days old (the age rules take nothing),
 * every tenth one with its result still unsent (it owes something: never touched). The cap is set
 * to half of what is kept; one cap run then frees the oldest first. Prints the run's time, the event
 * loop's longest stall during it, what was removed, and what reading the kept bytes costs (the
 * triggers' total, against a SUM over the rows and the daily recount).
 *
 *   npm run bench:storage-cap -- [studies=2000] [small]
 *
 * Files are the load test's sizes (one 121 KB single-frame image, 0.48 MB of results per study);
 * with `small` every file is 1 KB, to time many studies without writing gigabytes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseConfig } from '../src/config/load';
import { Housekeeping } from '../src/housekeeping/housekeeping';
import { createLogger } from '../src/log';
import { Store } from '../src/store/store';
import { AuditLog } from '../src/web/audit';

const DAY = 86_400_000;
const N = Number(process.argv[2] ?? 2000);
const SMALL = process.argv.includes('small');
const KB = (kb: number) => (SMALL ? 1 : kb) * 1024;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-cap-'));
const store = Store.open(dataDir);

function fileStudy(uid: string, at: number, delivered: boolean): void {
  const sop = `${uid}.1.1`;
  const image = path.join(dataDir, 'instances', uid, `${uid}.1`, `${sop}.dcm`);
  fs.mkdirSync(path.dirname(image), { recursive: true });
  fs.writeFileSync(image, Buffer.alloc(KB(121), 7));
  store.recordInstance({ sopInstanceUid: sop, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2.1', studyUid: uid, seriesUid: `${uid}.1`, path: image, bytes: KB(121), callingAe: 'US', callingHost: '127.0.0.1', patientName: 'Test^Patient' }, at);
  store.queueStudyIfQuiet(uid, 0, at + 1000);
  const job = store.claimNextJob((s, run) => path.join(dataDir, 'results', s, `run-${run}`), at + 2000)!;
  fs.mkdirSync(job.outDir, { recursive: true });
  const outputs = (
    [
      ['overlay', '1.2.840.10008.5.1.4.1.1.7', 360],
      ['seg', '1.2.840.10008.5.1.4.1.1.66.4', 60],
      ['sr', '1.2.840.10008.5.1.4.1.1.88.33', 50],
      ['kos', '1.2.840.10008.5.1.4.1.1.88.59', 10],
    ] as const
  ).map(([kind, sopClassUid, kb], i) => {
    const file = path.join(job.outDir, `${kind}-${sop}.9${i}.dcm`);
    fs.writeFileSync(file, Buffer.alloc(KB(kb), 3));
    return { kind, path: file, sopClassUid, sopInstanceUid: `${sop}.9${i}`, seriesInstanceUid: `${uid}.9${i}`, sourceSopInstanceUid: kind === 'kos' ? null : sop, bytes: KB(kb) };
  });
  store.completeJob(
    job.jobId,
    {
      outputs,
      instances: [{ sopInstanceUid: sop, status: 'analysed', label: 'benign', probability: 0.8, malignancyProbability: 0.1, lesionCount: 1, frames: 1, timingsMs: { decode: 13, inference: 20, report: 30, total: 70 } }],
      label: 'benign',
      malignancyProbability: 0.1,
      timingsMs: { total: 80 },
    },
    [{ destination: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: 104 }],
    at + 3000,
  );
  if (delivered) for (const s of store.listSends({ studyUid: uid })) store.markSendSent(s.id, s.generation, 0, at + 4000);
}

function timed<T>(fn: () => T, reps = 5): { value: T; ms: number[] } {
  const ms: number[] = [];
  let value!: T;
  for (let i = 0; i < reps; i++) {
    const t = process.hrtime.bigint();
    value = fn();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return { value, ms: ms.map((m) => Math.round(m * 1000) / 1000) };
}

async function main(): Promise<void> {
  const now = Date.now();
  for (let i = 0; i < N; i++) fileStudy(`2.25.${30000 + i}`, now - 5 * DAY + i * 60_000, i % 10 !== 0);
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  const kept = store.storageBytes().total;
  console.log(JSON.stringify({ studies: N, smallFiles: SMALL, keptBytes: kept, owing: Math.ceil(N / 10) }));
  console.log(JSON.stringify({ readKeptBytesMs: timed(() => store.storageBytes().total).ms }));
  console.log(
    JSON.stringify({
      sumOverRowsMs: timed(() => store.db.prepare('SELECT (SELECT IFNULL(SUM(bytes), 0) FROM instances WHERE purged_at IS NULL) + (SELECT IFNULL(SUM(bytes), 0) FROM outputs) AS b').get()).ms,
      recountMs: timed(() => store.recountStorage()).ms,
    }),
  );

  const settings = parseConfig({ housekeeping: { maxStorageGB: kept / 2 / 1e9 } }).housekeeping;
  const hk = new Housekeeping({
    settings,
    gateway: { store, destination: () => undefined, kickSender: () => undefined },
    dataDir,
    destinations: ['pacs'],
    audit: new AuditLog(store.db),
    logger: createLogger('silent'),
  });
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  let t = Date.now();
  const r = await hk.storageCap(now);
  lag.disable();
  console.log(JSON.stringify({ capRun: { ms: Date.now() - t, eventLoopMaxStallMs: Math.round(lag.max / 1e6), ...r } }));
  const untouched = (store.db.prepare("SELECT COUNT(DISTINCT study_uid) AS n FROM sends WHERE status = 'pending'").get() as { n: number }).n;
  console.log(JSON.stringify({ owingStudiesLeft: untouched, studiesLeft: store.listStudies({ limit: 1e9 }).length }));

  // a run with nothing to do (under the cap) is a read of the total
  lag.reset();
  lag.enable();
  t = Date.now();
  const idle = await hk.storageCap(now);
  lag.disable();
  console.log(JSON.stringify({ idleRun: { ms: Date.now() - t, eventLoopMaxStallMs: Math.round(lag.max / 1e6), studies: idle.studies } }));
  store.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

void main();
