/** Worker thread: owns one onnxruntime session and answers predict requests (see workerPool.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { processInstanceFile } from '../pipeline/processStudy';
import { loadModelSpec } from './modelSpec';
import { Predictor } from './predictor';
import type { WorkerInit, WorkerReply, WorkerRequest } from './workerPool';

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  let predictor: Predictor;
  try {
    const model = loadModelSpec(init.specPath, { verifySha256: false });
    predictor = await Predictor.create(model.spec, model.onnxPath, init.providers, init.threads);
    port.postMessage({ type: 'ready', provider: predictor.provider, skipped: predictor.skippedProviders } satisfies WorkerReply);
  } catch (e) {
    port.postMessage({ type: 'init-error', message: (e as Error).message } satisfies WorkerReply);
    return;
  }
  port.on('message', async (req: WorkerRequest) => {
    try {
      if (req.type === 'process') {
        // the whole per-instance pipeline (decode, inference, postprocess, reports, file writes)
        // runs here, so the listener's event loop never waits on pixels
        const { outcome, outputs } = await processInstanceFile(req.file, req.outDir, predictor, req.options);
        port.postMessage({ type: 'processed', id: req.id, outcome, outputs } satisfies WorkerReply);
        return;
      }
      const frames = req.frames.map((f) => ({ width: f.width, height: f.height, data: new Uint8Array(f.data) }));
      const { predictions, timings } = await predictor.predict(frames, req.rect, req.batchSize);
      const reply: WorkerReply = { type: 'result', id: req.id, predictions, timings };
      port.postMessage(reply, predictions.map((p) => p.probability.buffer as ArrayBuffer));
    } catch (e) {
      port.postMessage({ type: 'error', id: req.id, message: (e as Error).message } satisfies WorkerReply);
    }
  });
}

void main();
