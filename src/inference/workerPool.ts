/**
 * A small pool of worker threads, each with its own onnxruntime session, so that decoding-heavy
 * preprocessing and inference never block the event loop (associations stay responsive).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
// sharp (used by the overlay builder inside the workers) must be loaded by the main thread before
// any worker starts: its native module cannot be unloaded safely when a worker exits (sharp docs).
import 'sharp';
import type { PipelineOptions } from '../pipeline/processStudy';
import { FramePrediction, GrayFrame, Rect } from '../types/domain';
import type { InstanceOutcome, OutputObject } from '../types/pipeline';
import type { PredictTimings } from './predictor';
import type { Provider } from './session';

export interface WorkerInit {
  specPath: string;
  providers: Provider[];
  threads?: number;
}

export type WorkerRequest =
  | { type: 'predict'; id: number; frames: { width: number; height: number; data: ArrayBuffer }[]; rect: Rect; batchSize: number }
  | { type: 'process'; id: number; file: string; outDir: string; options: PipelineOptions };

type Processed = { outcome: InstanceOutcome; outputs: OutputObject[] };
type Predicted = { predictions: FramePrediction[]; timings: PredictTimings };

export type WorkerReply =
  | { type: 'ready'; provider: Provider; skipped: string[] }
  | { type: 'init-error'; message: string }
  | { type: 'result'; id: number; predictions: FramePrediction[]; timings: PredictTimings }
  | { type: 'processed'; id: number; outcome: InstanceOutcome; outputs: OutputObject[] }
  | { type: 'error'; id: number; message: string };

interface Pending {
  resolve: (r: any) => void;
  reject: (e: Error) => void;
}

/** The compiled worker; when running from TypeScript sources (tests), use the built one in dist/. */
function workerScript(): string {
  const here = path.join(__dirname, 'worker.js');
  if (fs.existsSync(here)) return here;
  const built = path.resolve(__dirname, '..', '..', 'dist', 'inference', 'worker.js');
  if (fs.existsSync(built)) return built;
  throw new Error('inference worker not built: run `npm run build`');
}

class PoolWorker {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  busy = 0;

  constructor(init: WorkerInit) {
    this.worker = new Worker(workerScript(), { workerData: init });
  }
}

export class InferencePool {
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly workers: PoolWorker[],
    readonly provider: Provider,
    readonly skippedProviders: string[],
  ) {}

  static async start(init: WorkerInit, size = 1): Promise<InferencePool> {
    const workers = Array.from({ length: size }, () => new PoolWorker(init));
    const ready = await Promise.all(
      workers.map(
        (w) =>
          new Promise<{ provider: Provider; skipped: string[] }>((resolve, reject) => {
            const onMsg = (m: WorkerReply) => {
              if (m.type === 'ready') resolve({ provider: m.provider, skipped: m.skipped });
              else if (m.type === 'init-error') reject(new Error(m.message));
            };
            w.worker.once('message', onMsg);
            w.worker.once('error', reject);
          }),
      ),
    ).catch(async (e) => {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw e;
    });
    const pool = new InferencePool(workers, ready[0].provider, ready[0].skipped);
    for (const w of workers) pool.wire(w);
    return pool;
  }

  private wire(w: PoolWorker): void {
    w.worker.on('message', (m: WorkerReply) => {
      if (m.type !== 'result' && m.type !== 'processed' && m.type !== 'error') return;
      const p = w.pending.get(m.id);
      if (!p) return;
      w.pending.delete(m.id);
      w.busy--;
      if (m.type === 'result') p.resolve({ predictions: m.predictions, timings: m.timings } satisfies Predicted);
      else if (m.type === 'processed') p.resolve({ outcome: m.outcome, outputs: m.outputs } satisfies Processed);
      else p.reject(new Error(m.message));
    });
    const failAll = (err: Error) => {
      for (const p of w.pending.values()) p.reject(err);
      w.pending.clear();
    };
    w.worker.on('error', failAll);
    w.worker.on('exit', (code) => {
      if (!this.closed) failAll(new Error(`inference worker exited (${code})`));
    });
  }

  private submit<T>(req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'));
    const w = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    return new Promise<T>((resolve, reject) => {
      w.pending.set(req.id, { resolve, reject });
      w.busy++;
      w.worker.postMessage(req, transfer);
    });
  }

  /** Predicts the frames' rect region on the least busy worker. Frame buffers are copied, not moved. */
  predict(frames: GrayFrame[], rect: Rect, batchSize = 8): Promise<Predicted> {
    const data = frames.map((f) => ({ width: f.width, height: f.height, data: f.data.slice().buffer as ArrayBuffer }));
    return this.submit<Predicted>({ type: 'predict', id: this.nextId++, rect, batchSize, frames: data }, data.map((f) => f.data));
  }

  /** Runs the whole per-instance pipeline (decode → reports written to outDir) on the least busy worker. */
  processFile(file: string, outDir: string, options: PipelineOptions): Promise<Processed> {
    return this.submit<Processed>({ type: 'process', id: this.nextId++, file, outDir, options });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
