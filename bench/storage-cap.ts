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
import { Store } from '../src/store/store';
import { housekeepingFor, timedRun } from './housekeepingRun';
import { fileSyntheticStudy } from './syntheticStudy';

const DAY = 86_400_000;
const N = Number(process.argv[2] ?? 2000);
const SMALL = process.argv.includes('small');
const KB = (kb: number) => (SMALL ? 1 : kb) * 1024;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-cap-'));
const store = Store.open(dataDir);

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
  for (let i = 0; i < N; i++) fileSyntheticStudy(store, dataDir, `2.25.${30000 + i}`, now - 5 * DAY + i * 60_000, { delivered: i % 10 !== 0, bytes: KB });
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

  const hk = housekeepingFor(store, dataDir, { maxStorageGB: kept / 2 / 1e9 });
  const { result: r, ...capTimes } = await timedRun(() => hk.storageCap(now));
  console.log(JSON.stringify({ capRun: { ...capTimes, ...r } }));
  const untouched = (store.db.prepare("SELECT COUNT(DISTINCT study_uid) AS n FROM sends WHERE status = 'pending'").get() as { n: number }).n;
  console.log(JSON.stringify({ owingStudiesLeft: untouched, studiesLeft: store.listStudies({ limit: 1e9 }).length }));

  // a run with nothing to do (under the cap) is a read of the total
  const { result: idle, ...idleTimes } = await timedRun(() => hk.storageCap(now));
  console.log(JSON.stringify({ idleRun: { ...idleTimes, studies: idle.studies } }));
  store.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

void main();
