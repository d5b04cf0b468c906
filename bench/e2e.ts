/**
 * `npm run bench`: end-to-end latency and throughput of the gateway, measured in one run against
 * real peers on loopback (DCMTK storescu as the scanner, storescp as the PACS), next to a bare
 * onnxruntime session running the same model on the same frames.
 *
 *   latency    : one study at a time; from storescu's return (instance acknowledged) to the last of
 *                its result objects stored by the PACS. Includes study.quietSeconds (reported).
 *   throughput : N studies sent at once; gateway frames/s = frames / (last result − first send −
 *                quietSeconds), next to bare onnxruntime frames/s (preprocessed tensors, same batch
 *                size, one session). Their ratio is what the gateway adds around inference.
 *
 * Options (environment): BENCH_STUDIES (default 20), BENCH_LATENCY_STUDIES (5), BENCH_FRAMES
 * (frames per study, default 1), BENCH_ROWS / BENCH_COLUMNS (600 × 800), SONOGATE_MODEL
 * (default model/model.json).
 */
import Database from 'better-sqlite3';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadModelSpec } from '../src/inference/modelSpec';
import { DB_FILE_NAME } from '../src/store/store';
import { Predictor } from '../src/inference/predictor';
import { toInputTensor } from '../src/inference/preprocess';
import { phantomFile, phantomPixels } from '../test/helpers/phantom';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const env = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const N = env('BENCH_STUDIES', 20);
const NLAT = env('BENCH_LATENCY_STUDIES', 5);
const FRAMES = env('BENCH_FRAMES', 1);
const ROWS = env('BENCH_ROWS', 600);
const COLS = env('BENCH_COLUMNS', 800);
const WORKERS = env('BENCH_WORKERS', 1);
const QUIET = 0.5;
const MODEL = path.resolve(process.env.SONOGATE_MODEL ?? path.join(ROOT, 'model', 'model.json'));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function resultsOf(pacsDir: string, study: string): number {
  const dir = path.join(pacsDir, `S_${study}`);
  return fs.existsSync(dir) ? fs.readdirSync(dir).length : 0;
}

function storescu(port: number, files: string[]): void {
  execFileSync('storescu', ['-aet', 'US_SCANNER', '-aec', 'SONOGATE', '127.0.0.1', String(port), ...files], { env: { ...process.env, TCP_NODELAY: '1' } });
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function bareOrtFramesPerSecond(frames: number, batch: number): Promise<{ fps: number; provider: string }> {
  const model = loadModelSpec(MODEL);
  const p = await Predictor.create(model.spec, model.onnxPath, ['cpu']);
  const [h, w] = model.spec.input.size;
  const [px] = phantomPixels({ rows: ROWS, columns: COLS });
  const one = toInputTensor(px, COLS, ROWS, model.spec.input);
  const input = new Float32Array(batch * h * w);
  for (let i = 0; i < batch; i++) input.set(one, i * h * w);
  await p.runTensors(input, batch); // warm-up
  const t0 = performance.now();
  let done = 0;
  while (done < frames) {
    const n = Math.min(batch, frames - done);
    await p.runTensors(input.subarray(0, n * h * w), n);
    done += n;
  }
  const s = (performance.now() - t0) / 1000;
  await p.release();
  return { fps: frames / s, provider: p.provider };
}

/** Median of each pipeline stage over every analysed instance, from the gateway's own rows. */
function stageMedians(dbFile: string): Record<string, number> {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT timings_json AS t FROM instances WHERE status = 'analysed' AND timings_json IS NOT NULL").all() as { t: string }[];
    const byStage: Record<string, number[]> = {};
    for (const { t } of rows) for (const [k, v] of Object.entries(JSON.parse(t) as Record<string, number>)) (byStage[k] ??= []).push(v);
    return Object.fromEntries(Object.entries(byStage).map(([k, v]) => [k, Number(median(v).toFixed(1))]));
  } finally {
    db.close();
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(CLI)) throw new Error('build first: npm run build');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-bench-'));
  const pacsDir = path.join(work, 'pacs');
  fs.mkdirSync(pacsDir);
  const pacsPort = await freePort();
  const dicomPort = await freePort();
  const children: ChildProcess[] = [];
  try {
    const pacs = spawn('storescp', ['-aet', 'PACS', '-od', pacsDir, '-su', 'S', '+xa', pacsPort.toString()], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
    children.push(pacs);
    const configFile = path.join(work, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        dicom: { aeTitle: 'SONOGATE', host: '127.0.0.1', port: dicomPort },
        destinations: [{ name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: pacsPort }],
        http: { host: '127.0.0.1', port: 0 },
        dataDir: path.join(work, 'data'),
        study: { quietSeconds: QUIET },
        inference: { model: MODEL, providers: ['cpu'], workers: WORKERS },
        send: { initialDelaySeconds: 0.2, maxDelaySeconds: 1 },
        log: { level: 'warn' },
      }),
    );
    const gw = spawn(process.execPath, [CLI, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(gw);
    await until(() => {
      try {
        execFileSync('echoscu', ['-aec', 'SONOGATE', '127.0.0.1', String(dicomPort)], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    }, 60_000, 'gateway start');

    const inDir = path.join(work, 'in');
    fs.mkdirSync(inDir);
    const make = (i: number) => {
      const study = `2.25.9${String(i).padStart(6, '0')}`;
      const f = path.join(inDir, `${i}.dcm`);
      fs.writeFileSync(f, phantomFile({ seed: i + 1, rows: ROWS, columns: COLS, frames: FRAMES, studyInstanceUid: study }));
      return { study, f };
    };
    const perStudy = 3; // SEG + SR + overlay when a lesion is found; the phantom has one

    // latency: one study at a time
    const lat: number[] = [];
    for (let i = 0; i < NLAT; i++) {
      const s = make(i);
      storescu(dicomPort, [s.f]);
      const t0 = performance.now();
      await until(() => resultsOf(pacsDir, s.study) >= 2, 120_000, `study ${i}`);
      await until(() => resultsOf(pacsDir, s.study) >= perStudy, 2_000, `study ${i} SEG`).catch(() => undefined);
      lat.push(performance.now() - t0);
    }

    // throughput: N studies at once
    const batch = Array.from({ length: N }, (_, i) => make(1000 + i));
    const t0 = performance.now();
    storescu(dicomPort, batch.map((b) => b.f));
    const sentMs = performance.now() - t0;
    await until(() => batch.every((b) => resultsOf(pacsDir, b.study) >= 2), 600_000, 'throughput studies');
    const wallS = (performance.now() - t0) / 1000;
    const gatewayFps = (N * FRAMES) / Math.max(wallS - QUIET, 1e-3);
    const bare = await bareOrtFramesPerSecond(N * FRAMES, 8);
    const model = loadModelSpec(MODEL).spec;
    const stages = stageMedians(path.join(work, 'data', DB_FILE_NAME));
    const report = {
      model: `${model.name} ${model.version}`,
      image: `${COLS}x${ROWS}, ${FRAMES} frame(s) per study`,
      inference_workers: WORKERS,
      cpu: `${os.cpus().length} × ${os.cpus()[0]?.model}`,
      latency_ms: { studies: NLAT, median: Math.round(median(lat)), worst: Math.round(Math.max(...lat)), includes_quiet_seconds: QUIET },
      throughput: {
        studies: N,
        send_ms: Math.round(sentMs),
        wall_s: Number(wallS.toFixed(2)),
        gateway_frames_per_s: Number(gatewayFps.toFixed(2)),
        bare_onnxruntime_frames_per_s: Number(bare.fps.toFixed(2)),
        gateway_over_bare: Number((gatewayFps / bare.fps).toFixed(3)),
      },
      per_instance_median_ms: stages,
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    for (const c of children) c.kill('SIGTERM');
  }
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e.stack ?? e}\n`);
  process.exitCode = 1;
});
