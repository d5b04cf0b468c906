/**
 * What result retention frees: N synthetic settled studies (one single-frame image of 121 KB,
 * results the size the load test measured: 0.48 MB per image) are filed through the store's own API, delivered, and left quiet for 100 days; then
 * one housekeeping run (images, then results and records). Prints the data folder and database
 * sizes before and after, the event loop's longest stall during the run, and what happens to the
 * database file when as many new studies arrive afterwards (freed pages are reused).
 *
 *   npm run bench:retention -- [studies=200]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../src/store/store';
import { housekeepingFor, timedRun } from './housekeepingRun';
import { fileSyntheticStudy } from './syntheticStudy';

const DAY = 86_400_000;
const N = Number(process.argv[2] ?? 200);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-retention-'));
const store = Store.open(dataDir);

function sizes(label: string): Record<string, unknown> {
  const size = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
  const db = store.file;
  const pages = store.db.pragma('page_count', { simple: true }) as number;
  const free = store.db.pragma('freelist_count', { simple: true }) as number;
  const row = {
    when: label,
    dataDirKiB: Number(execFileSync('du', ['-sk', dataDir]).toString().split('\t')[0]),
    dbBytes: size(db),
    walBytes: size(`${db}-wal`),
    dbPages: pages,
    freePages: free,
    studies: (store.db.prepare('SELECT COUNT(*) AS n FROM studies').get() as { n: number }).n,
    auditRows: (store.db.prepare('SELECT COUNT(*) AS n FROM audit_log').get() as { n: number }).n,
  };
  console.log(JSON.stringify(row));
  return row;
}

async function main(): Promise<void> {
  const now = Date.now();
  for (let i = 1; i <= N; i++) fileSyntheticStudy(store, dataDir, `2.25.${9000 + i}`, now - 100 * DAY + i, { delivered: true });
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  sizes(`${N} settled studies, 100 days old`);

  const hk = housekeepingFor(store, dataDir, { retentionDays: 30, resultRetentionDays: 90 });
  const { ms, eventLoopMaxStallMs, result: r } = await timedRun(() => hk.runRetention(now));
  console.log(JSON.stringify({ run: { ms, eventLoopMaxStallMs, images: r.images, results: r.results } }));
  sizes('after one housekeeping run');
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  sizes('after a WAL checkpoint');

  for (let i = 1; i <= N; i++) fileSyntheticStudy(store, dataDir, `2.25.${20000 + i}`, now - 10 * DAY + i, { delivered: true });
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  sizes(`${N} new studies filed after the run (freed pages reused)`);
  store.db.exec('VACUUM');
  sizes('after VACUUM (for comparison; not done by housekeeping)');
  store.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

void main();
