/**
 * Renders dashboard previews in one worker thread (src/web/previewWorker.ts), so decoding a large
 * or compressed frame never stalls the DICOM listener or the API on the main event loop. The
 * worker starts on the first request and is started again after it dies (the requests it held
 * fail with the reason); it does not keep the process alive.
 */
import { Worker } from 'node:worker_threads';
import { workerFile } from '../workerFile';
import { NotRenderable } from './images';
import type { PreviewReply, PreviewRequest } from './previewWorker';

const workerScript = () => workerFile(__dirname, 'web/previewWorker.js');

export class PreviewRenderer {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (png: Buffer) => void; reject: (e: Error) => void; done: Promise<Buffer> }>();
  private closed = false;

  render(file: string, maxWidth: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error('the preview renderer is closed'));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    let settle!: { resolve: (png: Buffer) => void; reject: (e: Error) => void };
    const done = new Promise<Buffer>((resolve, reject) => (settle = { resolve, reject }));
    this.pending.set(id, { ...settle, done });
    worker.ref(); // a request in flight keeps the process up until it is answered
    worker.postMessage({ id, file, maxWidth } satisfies PreviewRequest);
    return done;
  }

  /** the worker's thread id, or null before the first request (for tests) */
  get threadId(): number | null {
    return this.worker?.threadId ?? null;
  }

  /**
   * Lets renders in flight finish (at most `graceMs`) before the thread is terminated: ending a
   * worker while a native module (sharp, a codec) is mid-call in it can abort the whole process.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.closed = true;
    const inFlight = [...this.pending.values()].map((p) => p.done);
    if (inFlight.length) await Promise.race([Promise.allSettled(inFlight), new Promise((r) => setTimeout(r, graceMs).unref())]);
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
    this.failAll('the preview renderer is closed');
  }

  private start(): Worker {
    const w = new Worker(workerScript());
    w.unref();
    w.on('message', (m: PreviewReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (!this.pending.size) w.unref();
      if ('png' in m) p.resolve(Buffer.from(m.png.buffer, m.png.byteOffset, m.png.byteLength));
      else p.reject(m.notRenderable ? new NotRenderable(m.error) : new Error(m.error));
    });
    const lost = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.failAll(`the preview worker stopped: ${why}`);
    };
    w.on('error', (e) => lost(e.message));
    w.on('exit', (code) => lost(`exit code ${code}`));
    this.worker = w;
    return w;
  }

  private failAll(why: string): void {
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
  }
}
