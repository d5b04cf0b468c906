/**
 * Builds the analysis engine from the configuration: model description (checksum verified),
 * inference worker pool (CUDA first when configured, else CPU, one log line saying which),
 * and the study processor that the gateway and `sonogate analyze` share.
 */
import { Config } from './config/schema';
import { loadModelSpec, LoadedModel } from './inference/modelSpec';
import { InferencePool } from './inference/workerPool';
import { Logger } from './log';
import { AnalyzeOptions } from './pipeline/analyzeInstance';
import { createStudyProcessor, PipelineOptions } from './pipeline/processStudy';
import { StudyProcessor } from './types/pipeline';

export interface AnalysisEngine {
  model: LoadedModel;
  pool: InferencePool;
  processor: StudyProcessor;
  options: PipelineOptions;
  close(): Promise<void>;
}

export function analyzeOptions(config: Config, model: LoadedModel): AnalyzeOptions {
  return {
    labels: model.spec.outputs.class.labels,
    threshold: model.spec.outputs.mask.threshold,
    minLesionAreaPixels: config.inference.minLesionAreaPixels,
    minRelativeLesionArea: config.inference.minRelativeLesionArea,
    maxBlackLesionFraction: config.inference.maxBlackLesionFraction < 1 ? config.inference.maxBlackLesionFraction : undefined,
    fillLesionHoles: config.inference.fillLesionHoles,
    batchSize: config.inference.batchSize,
    suppressLesionsWhenNormal: config.inference.suppressLesionsWhenNormal,
    suppressWhenNormalAbove: model.spec.outputs.mask.suppressWhenNormalAbove,
    lowAgreementAbove: model.spec.outputs.spread?.lowAgreementAbove,
    classFromMostSuspiciousNetwork: model.spec.outputs.spread?.classFromMostSuspiciousNetwork,
  };
}

export async function startAnalysisEngine(config: Config, logger: Logger): Promise<AnalysisEngine> {
  const model = loadModelSpec(config.inference.model);
  const pool = await InferencePool.start({ specPath: model.specPath, providers: config.inference.providers }, config.inference.workers, {
    // counted from the request's start or its last batch of frames done: only a hung call
    // (decoder, model) trips it, not a long cine
    requestTimeoutMs: 10 * 60_000,
    onWorkerLost: (reason) => logger.error({ reason }, 'inference worker lost; its instance failed, a new worker is starting'),
    recycleRssBytes: config.inference.workerRecycleRssMB * 2 ** 20,
    onWorkerRecycled: (rssBytes) =>
      logger.info(
        { rssMB: Math.round(rssBytes / 2 ** 20), workerRecycleRssMB: config.inference.workerRecycleRssMB },
        'inference worker recycled: its memory after the last instance was above inference.workerRecycleRssMB; a fresh worker is loading the model',
      ),
  });
  logger.info(
    { provider: pool.provider, skipped: pool.skippedProviders, model: model.spec.name, version: model.spec.version, workers: config.inference.workers },
    `inference runs on ${pool.provider.toUpperCase()}${pool.skippedProviders.length ? ` (${pool.skippedProviders.join('; ')})` : ''}`,
  );
  if (model.spec.training && (model.spec.training as Record<string, unknown>).note === 'untrained test fixture') {
    logger.warn({ model: model.spec.name }, 'the configured model is an UNTRAINED test fixture: its results are not meaningful');
  }
  const options: PipelineOptions = {
    ...analyzeOptions(config, model),
    outputs: config.outputs,
    model: { name: model.spec.name, version: model.spec.version },
    routing: config.routing.analyze,
  };
  // a job may carry the analyse rules in force now (dashboard overrides): they go with each request
  const processor = createStudyProcessor((file, outDir, analyze) => pool.processFile(file, outDir, analyze ? { ...options, routing: analyze } : options), {
    model: options.model,
    enabled: config.outputs.keyImages,
  });
  return { model, pool, options, processor, close: () => pool.close() };
}
