/**
 * The inference worker's memory around one large instance: how long a worker takes to start and
 * load the model, its resident set (RSS, from /proc) before, at its peak during, and idle after
 * the job, and whether the pool replaced it (inference.workerRecycleRssMB).
 *
 *   npm run build && npx tsc -p tsconfig.bench.json && node build/bench/bench/worker-memory.js
 *
 * Options (environment): MEM_FRAMES (400), MEM_ROWS / MEM_COLUMNS (600 × 800), MEM_RGB (1),
 * MEM_RECYCLE_MB (inference.workerRecycleRssMB; 0 = never), MEM_IDLE_SECONDS (30),
 * MEM_BATCH (inference.batchSize, 8), MEM_DEFLATED (0; 1 = Deflated Explicit VR Little Endian, which
 * the worker still reads whole), SONOGATE_MODEL (model/model.json). Prints one JSON line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config/load';
import { loadModelSpec } from '../src/inference/modelSpec';
import { InferencePool } from '../src/inference/workerPool';
import { analyzeOptions } from '../src/runtime';
import { deflatedFile } from '../test/helpers/dicomBuild';
import { phantomDataset, phantomFile } from '../test/helpers/phantom';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const env = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const FRAMES = env('MEM_FRAMES', 400);
const ROWS = env('MEM_ROWS', 600);
const COLS = env('MEM_COLUMNS', 800);
const RGB = env('MEM_RGB', 1) === 1;
const RECYCLE_MB = env('MEM_RECYCLE_MB', 0);
const IDLE_S = env('MEM_IDLE_SECONDS', 30);
const BATCH = env('MEM_BATCH', 8);
const DEFLATED = env('MEM_DEFLATED', 0) === 1;
const MODEL = path.resolve(process.env.SONOGATE_MODEL ?? path.join(ROOT, 'model', 'model.json'));

/** VmRSS and VmHWM (peak) of a process, in MB. */
function memOf(pid: number): { rssMB: number; peakMB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMB: Math.round(kb('VmRSS') / 1024), peakMB: Math.round(kb('VmHWM') / 1024) };
}

const workerPid = (pool: InferencePool): number => (pool as unknown as { slots: { worker: { pid: number } }[] }).slots[0].worker.pid;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  // the pool finds its worker script in dist/ beside its own tree (src/workerProcess.ts): from build/bench, that is build/bench/dist
  const distLink = path.join(__dirname, '..', 'dist');
  if (!fs.existsSync(distLink)) fs.symlinkSync(path.join(ROOT, 'dist'), distLink);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-mem-'));
  try {
    const file = path.join(dir, 'cine.dcm');
    const phantom = { seed: 7, frames: FRAMES, rows: ROWS, columns: COLS, photometric: RGB ? ('RGB' as const) : ('MONOCHROME2' as const) };
    fs.writeFileSync(file, DEFLATED ? deflatedFile(phantomDataset(phantom)) : phantomFile(phantom));
    const fileMB = Math.round(fs.statSync(file).size / 2 ** 20);
    for (const out of ['out', 'out2']) fs.mkdirSync(path.join(dir, out));
    const config = parseConfig({ inference: { model: MODEL, providers: ['cpu'], batchSize: BATCH } });
    const model = loadModelSpec(MODEL);
    const options = { ...analyzeOptions(config, model), outputs: config.outputs, model: { name: model.spec.name, version: model.spec.version } };
    const recycled: number[] = [];
    const t0 = performance.now();
    const pool = await InferencePool.start({ specPath: model.specPath, providers: ['cpu'] }, 1, {
      recycleRssBytes: RECYCLE_MB * 2 ** 20,
      onWorkerRecycled: (rss) => recycled.push(Math.round(rss / 2 ** 20)),
    });
    const startMs = Math.round(performance.now() - t0);
    try {
      const firstPid = workerPid(pool);
      const before = memOf(firstPid);
      let peak = before.peakMB;
      const sampler = setInterval(() => {
        try {
          peak = Math.max(peak, memOf(firstPid).peakMB);
        } catch {
          /* gone */
        }
      }, 200);
      const j0 = performance.now();
      const r = await pool.processFile(file, path.join(dir, 'out'), options);
      const jobMs = Math.round(performance.now() - j0);
      clearInterval(sampler);
      // a recycled worker's replacement: how long from the answer until it has loaded the model
      const slot = () => (pool as unknown as { slots: { ready: boolean }[] }).slots[0];
      while (!slot()?.ready) await sleep(10);
      const readyAfterMs = Math.round(performance.now() - j0) - jobMs;
      const idle: { afterS: number; pid: number; rssMB: number }[] = [];
      for (const s of [1, 5, IDLE_S]) {
        await sleep((s - (idle.at(-1)?.afterS ?? 0)) * 1000);
        const pid = workerPid(pool);
        idle.push({ afterS: s, pid, rssMB: memOf(pid).rssMB });
      }
      // the next job on whatever worker the pool has now
      const n0 = performance.now();
      const again = await pool.processFile(file, path.join(dir, 'out2'), options);
      const nextJobMs = Math.round(performance.now() - n0);
      const sameResult = JSON.stringify(again.outcome.largestLesion) === JSON.stringify(r.outcome.largestLesion) && again.outcome.label === r.outcome.label;
      console.log(
        JSON.stringify({
          file: { frames: FRAMES, rows: ROWS, columns: COLS, rgb: RGB, deflated: DEFLATED, MB: fileMB },
          batchSize: BATCH,
          recycleMB: RECYCLE_MB,
          poolStartMs: startMs,
          status: r.outcome.status,
          reason: r.outcome.reason,
          message: r.outcome.message,
          jobMs,
          workerReadyAfterJobMs: readyAfterMs,
          worker: { pid: firstPid, beforeMB: before.rssMB, peakMB: peak },
          idle,
          recycledAtMB: recycled,
          nextJob: { ms: nextJobMs, status: again.outcome.status, sameResult, pid: workerPid(pool) },
        }),
      );
    } finally {
      await pool.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
