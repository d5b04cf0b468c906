/**
 * The inference pool keeps working when a worker process dies: the request it was running fails
 * with a reason, queued requests run on the replacement, and nothing hangs (nor does the gateway
 * process abort with it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferencePool } from '../../src/inference/workerPool';
import { phantomFile, phantomPixels } from '../helpers/phantom';

const SPEC = path.resolve(__dirname, '..', 'fixtures', 'dark-lesion-model', 'model.json');
const built = fs.existsSync(path.resolve(__dirname, '..', '..', 'dist', 'inference', 'worker.js'));

(built ? describe : describe.skip)('inference worker pool', () => {
  const frame = () => ({ width: 120, height: 90, data: phantomPixels({ rows: 90, columns: 120 })[0] });
  const rect = { x0: 0, y0: 0, x1: 120, y1: 90 };

  test('requests run one per worker, in order, and all complete', async () => {
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1);
    try {
      const all = await Promise.all([1, 2, 3].map(() => pool.predict([frame()], rect)));
      expect(all.map((r) => r.predictions[0].width)).toEqual([120, 120, 120]);
      expect(pool.queued).toBe(0);
    } finally {
      await pool.close();
    }
  });

  test('a worker that dies mid-request fails only that request; the queue runs on its replacement', async () => {
    const lost: string[] = [];
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1, { onWorkerLost: (r) => lost.push(r) });
    try {
      expect((await pool.predict([frame()], rect)).predictions).toHaveLength(1);
      // the worker is held (SIGSTOP) so that its request is certainly still in flight when it
      // aborts natively (SIGABRT, delivered on SIGCONT)
      const worker = (pool as any).slots[0].worker;
      worker.kill('SIGSTOP');
      const first = pool.predict([frame()], rect);
      const second = pool.predict([frame()], rect);
      worker.kill('SIGABRT');
      worker.kill('SIGCONT');
      await expect(first).rejects.toThrow(/exited \(SIGABRT\)/);
      expect((await second).predictions).toHaveLength(1);
      expect(lost).toEqual(['inference worker exited (SIGABRT)']);
    } finally {
      await pool.close();
    }
  });

  test('a request over its time limit is abandoned with a reason and its worker killed', async () => {
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1, { requestTimeoutMs: 100 });
    try {
      const worker = (pool as any).slots[0].worker;
      worker.kill('SIGSTOP'); // a hung model call: the worker never answers
      await expect(pool.predict([frame()], rect)).rejects.toThrow(/made no progress for 0 s/);
      expect((await pool.predict([frame()], rect)).predictions).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 200));
      expect(worker.signalCode).toBe('SIGKILL');
    } finally {
      await pool.close();
    }
  });

  test('a long cine says it is alive after each batch of frames, so the time limit bounds a hung call, not a long study', async () => {
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1, { requestTimeoutMs: 60_000 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-pool-cine-'));
    try {
      const file = path.join(dir, 'cine.dcm');
      fs.writeFileSync(file, phantomFile({ seed: 5, frames: 24, rows: 60, columns: 80 }));
      const worker = (pool as any).slots[0].worker;
      const progress: number[] = [];
      worker.on('message', (m: { type: string }) => m.type === 'progress' && progress.push(Date.now()));
      const options = {
        labels: ['normal', 'benign', 'malignant'] as const,
        threshold: 0.5,
        minLesionAreaPixels: 1,
        minRelativeLesionArea: 0,
        batchSize: 8,
        suppressLesionsWhenNormal: false,
        outputs: { seg: false, sr: false, overlay: false },
        model: { name: 'dark-lesion', version: '0' },
      };
      const r = await pool.processFile(file, dir, options as never);
      expect(r.outcome).toMatchObject({ status: 'analysed', frames: 24 });
      expect(progress).toHaveLength(3); // 24 frames in batches of 8
    } finally {
      await pool.close();
    }
  });

  test('when no worker can load the model, requests fail with the reason instead of waiting; it recovers', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-pool-'));
    fs.cpSync(path.dirname(SPEC), dir, { recursive: true });
    const onnx = fs.readdirSync(dir).find((f) => f.endsWith('.onnx'))!;
    const pool = await InferencePool.start({ specPath: path.join(dir, 'model.json'), providers: ['cpu'] }, 1);
    try {
      // the model file goes away under a running gateway, then its only worker dies
      fs.renameSync(path.join(dir, onnx), path.join(dir, `${onnx}.moved`));
      const worker = (pool as any).slots[0].worker;
      const exited = new Promise((r) => worker.once('exit', r));
      worker.kill('SIGKILL');
      await exited;
      await expect(pool.predict([frame()], rect)).rejects.toThrow(/could not start/);
      await expect(pool.predict([frame()], rect)).rejects.toThrow(/could not start/);
      // the file is back: the next request starts a worker that loads it
      fs.renameSync(path.join(dir, `${onnx}.moved`), path.join(dir, onnx));
      expect((await pool.predict([frame()], rect)).predictions).toHaveLength(1);
    } finally {
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a pool that lost a worker whose replacement could not load gets back to its size once the model loads again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-pool-size-'));
    fs.cpSync(path.dirname(SPEC), dir, { recursive: true });
    const onnx = fs.readdirSync(dir).find((f) => f.endsWith('.onnx'))!;
    const lost: string[] = [];
    const pool = await InferencePool.start({ specPath: path.join(dir, 'model.json'), providers: ['cpu'] }, 2, { onWorkerLost: (r) => lost.push(r) });
    const slots = () => (pool as any).slots as { ready: boolean }[];
    try {
      fs.renameSync(path.join(dir, onnx), path.join(dir, `${onnx}.moved`));
      const worker = (pool as any).slots[0].worker;
      worker.kill('SIGKILL');
      // its replacement cannot load the model: one worker left
      for (let i = 0; i < 200 && !lost.some((l) => /could not start/.test(l)); i++) await new Promise((r) => setTimeout(r, 25));
      expect(slots()).toHaveLength(1);
      fs.renameSync(path.join(dir, `${onnx}.moved`), path.join(dir, onnx));
      expect((await pool.predict([frame()], rect)).predictions).toHaveLength(1);
      for (let i = 0; i < 200 && !(slots().length === 2 && slots().every((s) => s.ready)); i++) await new Promise((r) => setTimeout(r, 25));
      expect(slots().map((s) => s.ready)).toEqual([true, true]);
    } finally {
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a worker above inference.workerRecycleRssMB is replaced once its request is answered; queued requests wait for the fresh one and get the same results', async () => {
    const recycled: number[] = [];
    const lost: string[] = [];
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1, {
      recycleRssBytes: 2 ** 20, // 1 MB: every worker is above it after any request
      onWorkerRecycled: (rss) => recycled.push(rss),
      onWorkerLost: (r) => lost.push(r),
    });
    const workerOf = () => (pool as any).slots[0].worker as { pid: number };
    try {
      const first = workerOf();
      const a = await pool.predict([frame()], rect);
      expect(pool.recycled).toBe(1);
      expect(workerOf()).not.toBe(first);
      // one per request, after it, never a loop: three queued requests, three fresh workers, all answered
      const more = await Promise.all([1, 2, 3].map(() => pool.predict([frame()], rect)));
      expect(pool.recycled).toBe(4);
      for (const r of more) expect(r.predictions).toEqual(a.predictions);
      expect(recycled.every((rss) => rss > 2 ** 20)).toBe(true);
      expect(lost).toEqual([]);
      await new Promise((r) => setTimeout(r, 300));
      expect(pool.recycled).toBe(4); // an idle pool recycles nothing
    } finally {
      await pool.close();
    }
  });

  test('with workerRecycleRssMB 0 the worker is never replaced', async () => {
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1, { recycleRssBytes: 0 });
    try {
      const worker = (pool as any).slots[0].worker;
      for (let i = 0; i < 3; i++) await pool.predict([frame()], rect);
      expect(pool.recycled).toBe(0);
      expect((pool as any).slots[0].worker).toBe(worker);
    } finally {
      await pool.close();
    }
  });

  test('closing lets the request in a worker finish and fails what is still queued', async () => {
    const pool = await InferencePool.start({ specPath: SPEC, providers: ['cpu'] }, 1);
    const settled = [pool.predict([frame()], rect), pool.predict([frame()], rect)].map((p) => p.then(() => 'resolved', (e: Error) => e.message));
    await pool.close();
    expect(await Promise.all(settled)).toEqual(['resolved', 'inference pool is closed']);
  });
});
