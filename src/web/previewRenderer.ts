/**
 * Renders dashboard previews in one worker process (src/web/previewWorker.ts), so reading and
 * decoding a large or compressed file never stalls the DICOM listener or the API on the main event
 * loop, and a codec that crashes or hangs costs a preview, not the gateway. The worker starts on
 * the first request and again after it dies (the requests it held fail with the reason); it does
 * not keep the gateway running while idle.
 */
import type { ChildProcess } from 'node:child_process';
import { holdProcess, killWorker, spawnWorker } from '../workerProcess';
import { NotRenderable } from './images';
import type { PreviewReply, PreviewRequest } from './previewWorker';

interface Pending {
  resolve: (png: Buffer) => void;
  reject: (e: Error) => void;
  done: Promise<Buffer>;
}

export class PreviewRenderer {
  private worker: ChildProcess | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private timer: NodeJS.Timeout | null = null;

  /** `timeoutMs`: a render still running after this long is failed and its worker killed */
  constructor(private readonly timeoutMs = 30_000) {}

  /** `frame` is 0-based */
  render(file: string, maxWidth: number, frame = 0): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('the preview renderer is closed'));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    let settle!: Omit<Pending, 'done'>;
    const done = new Promise<Buffer>((resolve, reject) => (settle = { resolve, reject }));
    this.pending.set(id, { ...settle, done });
    holdProcess(worker, true); // a request in flight keeps the gateway up until it is answered
    if (!this.timer) this.armTimer();
    worker.send({ id, file, maxWidth, frame } satisfies PreviewRequest);
    return done;
  }

  /** the worker's process id, or null while none runs (for tests) */
  get pid(): number | null {
    return this.worker?.pid ?? null;
  }

  /** Lets renders in flight finish (at most `graceMs`), then ends the worker. */
  async close(graceMs = 10_000): Promise<void> {
    this.closed = true;
    const inFlight = [...this.pending.values()].map((p) => p.done);
    if (inFlight.length) await Promise.race([Promise.allSettled(inFlight), new Promise((r) => setTimeout(r, graceMs).unref())]);
    const w = this.worker;
    this.worker = null;
    if (w) await killWorker(w);
    this.failAll('the preview renderer is closed');
  }

  private start(): ChildProcess {
    const w = spawnWorker('web/previewWorker.js');
    w.on('message', (m: PreviewReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.armTimer();
      if (!this.pending.size) holdProcess(w, false);
      if ('png' in m) p.resolve(Buffer.from(m.png.buffer, m.png.byteOffset, m.png.byteLength));
      else p.reject(m.notRenderable ? new NotRenderable(m.error) : new Error(m.error));
    });
    w.on('exit', (code, signal) => this.lost(w, `exit ${signal ?? code}`));
    this.worker = w;
    return w;
  }

  /** One timer: while renders are pending the worker must answer one within timeoutMs, or it counts as hung. */
  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.pending.size || !this.worker) return;
    const w = this.worker;
    this.timer = setTimeout(() => {
      this.lost(w, `a render took longer than ${Math.round(this.timeoutMs / 1000)} s`);
      void killWorker(w);
    }, this.timeoutMs);
    this.timer.unref();
  }

  private lost(w: ChildProcess, why: string): void {
    if (this.worker !== w) return;
    this.worker = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.failAll(`the preview worker stopped (${why})`);
  }

  private failAll(why: string): void {
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
  }
}
