/**
 * A small pool of worker processes (see src/workerProcess.ts), each with its own onnxruntime
 * session, so that decoding, inference, postprocessing and report building never block the event
 * loop (associations stay responsive).
 *
 * One request runs per worker at a time (a study's instances wait in a queue, so memory does not
 * grow with the size of the study). A worker that dies — a native crash, an out-of-memory abort,
 * or a request that exceeded its time limit — fails only its own request and is replaced. While no
 * worker can load the model, each request tries to start one and fails with the reason, so nothing
 * waits forever and the pool recovers once the model loads again.
 *
 * A worker keeps the memory of the largest instance it analysed (V8 and the native allocators do
 * not hand the peak back to the system: a 400-frame 800 × 600 RGB cine left one at 1.9 GB while
 * idle, where a fresh one holds about 250 MB; bench/worker-memory.ts). Each reply says the
 * worker's resident set size; one above recycleRssBytes is retired as soon as its request is answered (it is idle then: nothing in flight is lost) and a fresh worker
 * starts in its place, loading the model again. Requests meanwhile wait in the queue (or run on
 * the other workers). Checked once per request, after it: an instance that alone needs more than
 * the bound costs one restart per such instance, never a loop.
 */
import type { ChildProcess } from 'node:child_process';
import type { PipelineOptions } from '../pipeline/processStudy';
import { FramePrediction, GrayFrame, Rect } from '../types/domain';
import type { InstanceOutcome, OutputObject } from '../types/pipeline';
import { ModelError } from './modelSpec';
import type { PredictTimings } from './predictor';
import type { Provider } from './session';
import { killWorker, spawnWorker } from '../workerProcess';

export interface WorkerInit {
  specPath: string;
  providers: Provider[];
  threads?: number;
}

export type WorkerRequest =
  | { type: 'predict'; id: number; frames: GrayFrame[]; rect: Rect; batchSize: number }
  | { type: 'process'; id: number; file: string; outDir: string; options: PipelineOptions };

type Processed = { outcome: InstanceOutcome; outputs: OutputObject[] };
type Predicted = { predictions: FramePrediction[]; timings: PredictTimings };

export type WorkerReply =
  | { type: 'ready'; provider: Provider; skipped: string[] }
  | { type: 'init-error'; message: string; /** model.json and the graph disagree (a configuration error) */ model?: boolean }
  | ({ type: 'result'; id: number; predictions: FramePrediction[]; timings: PredictTimings } & Footprint)
  | ({ type: 'processed'; id: number; outcome: InstanceOutcome; outputs: OutputObject[] } & Footprint)
  | ({ type: 'error'; id: number; message: string } & Footprint)
  /** a batch of frames is done: the request is alive (its time limit starts again) */
  | { type: 'progress'; id: number };

/** what a worker says of itself with each answer */
export interface Footprint {
  /** its resident set size after the request (process.memoryUsage.rss()) */
  rssBytes: number;
}

interface Job {
  req: WorkerRequest;
  resolve: (r: any) => void;
  reject: (e: Error) => void;
}

/** The environment variable that carries WorkerInit (JSON) to a worker process. */
export const WORKER_INIT_ENV = 'SONOGATE_WORKER_INIT';

const spawnInferenceWorker = (init: WorkerInit) => spawnWorker('inference/worker.js', { [WORKER_INIT_ENV]: JSON.stringify(init) });

interface Slot {
  worker: ChildProcess;
  ready: boolean;
  job: Job | null;
  timer: NodeJS.Timeout | null;
}

export interface PoolOptions {
  /** a request still running after this long is abandoned and its worker replaced */
  requestTimeoutMs?: number;
  /** called when a worker died and was replaced (for the log) */
  onWorkerLost?: (reason: string) => void;
  /** a worker whose resident set is above this after a request is replaced by a fresh one (0 or absent: never) */
  recycleRssBytes?: number;
  /** called when a worker was retired for its memory (for the log), with its resident set size */
  onWorkerRecycled?: (rssBytes: number) => void;
}

export class InferencePool {
  private nextId = 1;
  private closed = false;
  private readonly queue: Job[] = [];
  private readonly slots: Slot[] = [];
  private recycledCount = 0;

  private constructor(
    private readonly init: WorkerInit,
    readonly provider: Provider,
    readonly skippedProviders: string[],
    private readonly opts: PoolOptions,
    /** workers the pool was started with, and tries to get back to */
    private readonly size: number,
  ) {}

  /** Starts `size` workers and waits until each has loaded the model. */
  static async start(init: WorkerInit, size = 1, opts: PoolOptions = {}): Promise<InferencePool> {
    const workers = Array.from({ length: size }, () => spawnInferenceWorker(init));
    let first: { provider: Provider; skipped: string[] };
    try {
      const ready = await Promise.all(workers.map(waitReady));
      first = ready[0];
    } catch (e) {
      await Promise.all(workers.map(killWorker));
      throw e;
    }
    const pool = new InferencePool(init, first.provider, first.skipped, opts, size);
    for (const w of workers) pool.adopt(w, true);
    return pool;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** workers retired for their memory since the start (inference.workerRecycleRssMB) */
  get recycled(): number {
    return this.recycledCount;
  }

  private adopt(worker: ChildProcess, ready: boolean): void {
    const slot: Slot = { worker, ready, job: null, timer: null };
    this.slots.push(slot);
    worker.on('message', (m: WorkerReply) => this.onMessage(slot, m));
    worker.on('error', (e) => this.lose(slot, `inference worker failed: ${e.message}`));
    worker.on('exit', (code, signal) => this.lose(slot, `inference worker exited (${signal ?? code})`));
  }

  private onMessage(slot: Slot, m: WorkerReply): void {
    if (m.type === 'ready') {
      slot.ready = true;
      this.dispatch();
      return;
    }
    if (m.type === 'init-error') {
      this.lose(slot, `replacement inference worker could not start: ${m.message}`);
      return;
    }
    const job = slot.job;
    if (!job || job.req.id !== m.id) return;
    if (m.type === 'progress') {
      this.arm(slot);
      return;
    }
    this.release(slot);
    if (m.type === 'result') job.resolve({ predictions: m.predictions, timings: m.timings } satisfies Predicted);
    else if (m.type === 'processed') job.resolve({ outcome: m.outcome, outputs: m.outputs } satisfies Processed);
    else job.reject(new Error(m.message));
    const bound = this.opts.recycleRssBytes ?? 0;
    if (bound > 0 && m.rssBytes > bound && !this.closed) this.recycle(slot, m.rssBytes);
    this.dispatch();
  }

  /** Ends an idle worker that holds too much memory and starts a fresh one in its place. */
  private recycle(slot: Slot, rssBytes: number): void {
    const i = this.slots.indexOf(slot);
    if (i < 0 || slot.job) return;
    this.slots.splice(i, 1);
    slot.worker.removeAllListeners('message').removeAllListeners('exit');
    // idle: nothing of it is lost. Ended first, so that its memory is free before the new one loads the model
    void killWorker(slot.worker);
    this.recycledCount++;
    this.opts.onWorkerRecycled?.(rssBytes);
    this.adopt(spawnInferenceWorker(this.init), false);
  }

  private release(slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = null;
    slot.job = null;
  }

  /** A worker died: fail its request, drop it, start a replacement (unless the pool is closing). */
  private lose(slot: Slot, reason: string): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const job = slot.job;
    this.release(slot);
    slot.worker.removeAllListeners('message').removeAllListeners('exit');
    void killWorker(slot.worker);
    if (this.closed) {
      job?.reject(new Error('inference pool is closed'));
      return;
    }
    job?.reject(new Error(reason));
    this.opts.onWorkerLost?.(reason);
    if (!slot.ready) {
      // a replacement that cannot even load the model: nothing will run, fail what waits
      if (!this.slots.length) for (const j of this.queue.splice(0)) j.reject(new Error(reason));
      return;
    }
    this.adopt(spawnInferenceWorker(this.init), false);
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (!this.queue.length) return;
      if (!slot.ready || slot.job) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      this.arm(slot);
      slot.worker.send(job.req);
    }
  }

  /** (Re)starts the time limit of the slot's request: it runs from the start or the last batch done. */
  private arm(slot: Slot): void {
    if (!this.opts.requestTimeoutMs) return;
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = setTimeout(() => this.lose(slot, `request made no progress for ${Math.round(this.opts.requestTimeoutMs! / 1000)} s`), this.opts.requestTimeoutMs);
  }

  private submit<T>(req: WorkerRequest): Promise<T> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'));
    // workers died and their replacements could not load the model (e.g. the file was removed, or
    // memory ran out): try again for this request, rather than let it wait for ever (no worker
    // left) or run on fewer workers than configured until the next restart; one attempt at a time
    if (this.slots.length < this.size && this.slots.every((s) => s.ready)) this.adopt(spawnInferenceWorker(this.init), false);
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      this.dispatch();
    });
  }

  /** Predicts the frames' rect region (the frames are copied to the worker). */
  predict(frames: GrayFrame[], rect: Rect, batchSize = 8): Promise<Predicted> {
    return this.submit<Predicted>({ type: 'predict', id: this.nextId++, rect, batchSize, frames });
  }

  /** Runs the whole per-instance pipeline (decode → reports written to outDir) in a worker. */
  processFile(file: string, outDir: string, options: PipelineOptions): Promise<Processed> {
    return this.submit<Processed>({ type: 'process', id: this.nextId++, file, outDir, options });
  }

  /**
   * Fails what is queued, lets requests already in a worker finish (at most graceMs, so that a
   * study being processed is not thrown away at shutdown), then ends the worker processes.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new Error('inference pool is closed'));
    const deadline = Date.now() + graceMs;
    while (this.slots.some((s) => s.job) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const slots = this.slots.splice(0);
    for (const s of slots) {
      s.job?.reject(new Error('inference pool is closed'));
      this.release(s);
      s.worker.removeAllListeners('message').removeAllListeners('exit');
    }
    await Promise.all(slots.map((s) => killWorker(s.worker)));
  }
}

function waitReady(w: ChildProcess): Promise<{ provider: Provider; skipped: string[] }> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: WorkerReply) => {
      if (m.type === 'ready') done(() => resolve({ provider: m.provider, skipped: m.skipped }));
      else if (m.type === 'init-error') done(() => reject(m.model ? new ModelError(m.message) : new Error(m.message)));
    };
    const onError = (e: Error) => done(() => reject(e));
    const onExit = (code: number) => done(() => reject(new Error(`inference worker exited (${code}) while loading the model`)));
    const done = (f: () => void) => {
      w.off('message', onMsg);
      w.off('error', onError);
      w.off('exit', onExit);
      f();
    };
    w.on('message', onMsg);
    w.on('error', onError);
    w.on('exit', onExit);
  });
}
