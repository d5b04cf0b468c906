/**
 * Worker process: owns one onnxruntime session and answers requests from the pool (workerPool.ts)
 * over the IPC channel. It exits when the gateway goes away (src/workerProcess.ts).
 */
import { quietDicomLibraries } from '../dicom/libraryLogs';
import type { FramePredictor } from '../pipeline/analyzeInstance';
import { processInstanceFile } from '../pipeline/processStudy';
import { loadModelSpec, ModelError } from './modelSpec';
import { Predictor } from './predictor';
import { parentChannel } from '../workerProcess';
import { WORKER_INIT_ENV, type WorkerInit, type WorkerReply, type WorkerRequest } from './workerPool';

/**
 * The predictor, a batch at a time, saying after each batch that the request is alive: the pool's
 * time limit then bounds a hung call, not a long cine (3,600 frames take some ten minutes on CPU).
 */
function reportingProgress(predictor: Predictor, progress: () => void): FramePredictor {
  return {
    async predict(frames, rect, batchSize = 8) {
      const predictions: Awaited<ReturnType<FramePredictor['predict']>>['predictions'] = [];
      const timings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
      for (let b = 0; b < frames.length; b += batchSize) {
        const r = await predictor.predict(frames.slice(b, b + batchSize), rect, batchSize);
        predictions.push(...r.predictions);
        timings.preprocessMs += r.timings.preprocessMs;
        timings.inferenceMs += r.timings.inferenceMs;
        timings.postprocessMs += r.timings.postprocessMs;
        progress();
      }
      return { predictions, timings };
    },
  };
}

async function main(): Promise<void> {
  quietDicomLibraries(); // their console messages are not the gateway's JSON log
  const reply: (m: WorkerReply) => void = parentChannel();
  const init = JSON.parse(process.env[WORKER_INIT_ENV] ?? 'null') as WorkerInit;
  let predictor: Predictor;
  try {
    // checked again here: a replacement worker must not load a file that changed on disk meanwhile
    const model = loadModelSpec(init.specPath);
    predictor = await Predictor.create(model.spec, model.onnxPath, init.providers, init.threads);
    reply({ type: 'ready', provider: predictor.provider, skipped: predictor.skippedProviders });
  } catch (e) {
    reply({ type: 'init-error', message: (e as Error).message, model: e instanceof ModelError });
    return;
  }
  process.on('message', async (req: WorkerRequest) => {
    try {
      if (req.type === 'process') {
        // the whole per-instance pipeline (decode, inference, postprocess, reports, file writes)
        // runs here, so the listener's event loop never waits on pixels
        const { outcome, outputs } = await processInstanceFile(req.file, req.outDir, reportingProgress(predictor, () => reply({ type: 'progress', id: req.id })), req.options);
        reply({ type: 'processed', id: req.id, outcome, outputs, rssBytes: process.memoryUsage.rss() });
        return;
      }
      const { predictions, timings } = await predictor.predict(req.frames, req.rect, req.batchSize);
      reply({ type: 'result', id: req.id, predictions, timings, rssBytes: process.memoryUsage.rss() });
    } catch (e) {
      reply({ type: 'error', id: req.id, message: (e as Error).message, rssBytes: process.memoryUsage.rss() });
    }
  });
}

void main();
