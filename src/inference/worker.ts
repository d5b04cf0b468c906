/**
 * Worker process: owns one onnxruntime session and answers requests from the pool (workerPool.ts)
 * over the IPC channel. It exits when the gateway goes away (src/workerProcess.ts).
 */
import { processInstanceFile } from '../pipeline/processStudy';
import { loadModelSpec } from './modelSpec';
import { Predictor } from './predictor';
import { parentChannel } from '../workerProcess';
import { WORKER_INIT_ENV, type WorkerInit, type WorkerReply, type WorkerRequest } from './workerPool';

async function main(): Promise<void> {
  const reply: (m: WorkerReply) => void = parentChannel();
  const init = JSON.parse(process.env[WORKER_INIT_ENV] ?? 'null') as WorkerInit;
  let predictor: Predictor;
  try {
    const model = loadModelSpec(init.specPath, { verifySha256: false });
    predictor = await Predictor.create(model.spec, model.onnxPath, init.providers, init.threads);
    reply({ type: 'ready', provider: predictor.provider, skipped: predictor.skippedProviders });
  } catch (e) {
    reply({ type: 'init-error', message: (e as Error).message });
    return;
  }
  process.on('message', async (req: WorkerRequest) => {
    try {
      if (req.type === 'process') {
        // the whole per-instance pipeline (decode, inference, postprocess, reports, file writes)
        // runs here, so the listener's event loop never waits on pixels
        const { outcome, outputs } = await processInstanceFile(req.file, req.outDir, predictor, req.options);
        reply({ type: 'processed', id: req.id, outcome, outputs });
        return;
      }
      const { predictions, timings } = await predictor.predict(req.frames, req.rect, req.batchSize);
      reply({ type: 'result', id: req.id, predictions, timings });
    } catch (e) {
      reply({ type: 'error', id: req.id, message: (e as Error).message });
    }
  });
}

void main();
