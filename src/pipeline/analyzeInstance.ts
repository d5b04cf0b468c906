/**
 * One source instance through the analysis: decoded frames → model → lesions → one result.
 *
 * Multi-frame policy (cine): every frame is analysed (batched); each frame gets its own mask
 * (the SEG keeps one frame per source frame, empty ones included); the instance reports the
 * most suspicious frame — the frame with the highest malignancy probability among frames with
 * a lesion, or among all frames when none has one.
 */
import { DecodedInstance, InstanceResult, Label, Lesion } from '../types/domain';
import { extractLesions } from '../postprocess/lesions';

export interface FramePredictor {
  predict(
    frames: DecodedInstance['frames'],
    rect: DecodedInstance['region']['rect'],
    batchSize?: number,
  ): Promise<{ predictions: import('../types/domain').FramePrediction[]; timings: { preprocessMs: number; inferenceMs: number; postprocessMs: number } }>;
}

export interface AnalyzeOptions {
  labels: string[];
  threshold: number;
  minLesionAreaPixels: number;
  /** lesions smaller than this fraction of the frame's largest are dropped */
  minRelativeLesionArea: number;
  batchSize: number;
  /** drop a frame's lesions when the classifier calls the frame normal (argmax; config) */
  suppressLesionsWhenNormal: boolean;
  /** drop a frame's lesions when its P(normal) is above this (model.json's outputs.mask.suppressWhenNormalAbove) */
  suppressWhenNormalAbove?: number;
}

/** Whether a frame's lesions are dropped because the classifier is sure enough it is normal. */
export function suppressedAsNormal(probabilities: Record<Label, number>, opts: Pick<AnalyzeOptions, 'suppressLesionsWhenNormal' | 'suppressWhenNormalAbove'>): boolean {
  const { normal, benign, malignant } = probabilities;
  if (opts.suppressLesionsWhenNormal && normal >= benign && normal >= malignant) return true;
  return opts.suppressWhenNormalAbove !== undefined && normal > opts.suppressWhenNormalAbove;
}

export async function analyzeDecoded(decoded: DecodedInstance, predictor: FramePredictor, opts: AnalyzeOptions): Promise<InstanceResult> {
  const t0 = performance.now();
  const { predictions, timings } = await predictor.predict(decoded.frames, decoded.region.rect, opts.batchSize);
  const t1 = performance.now();
  const idx = (l: Label) => opts.labels.indexOf(l);
  const masks: Uint8Array[] = [];
  const lesions: Lesion[] = [];
  const frameLabels: Label[] = [];
  predictions.forEach((p, f) => {
    const probs = p.classProbabilities;
    const label = (['normal', 'benign', 'malignant'] as Label[]).reduce((a, b) => (probs[idx(b)] > probs[idx(a)] ? b : a));
    frameLabels.push(label);
    const r = extractLesions(p, f, decoded.region, decoded.columns, decoded.rows, {
      threshold: opts.threshold,
      minAreaPixels: opts.minLesionAreaPixels,
      minRelativeArea: opts.minRelativeLesionArea,
    });
    if (suppressedAsNormal({ normal: probs[idx('normal')], benign: probs[idx('benign')], malignant: probs[idx('malignant')] }, opts)) {
      masks.push(new Uint8Array(decoded.columns * decoded.rows));
    } else {
      masks.push(r.mask);
      lesions.push(...r.lesions);
    }
  });
  const pm = (f: number) => predictions[f].classProbabilities[idx('malignant')];
  const withLesion = new Set(lesions.map((l) => l.frameIndex));
  const candidates = withLesion.size ? [...withLesion] : predictions.map((_, f) => f);
  const reported = candidates.reduce((a, b) => (pm(b) > pm(a) ? b : a));
  const cp = predictions[reported].classProbabilities;
  return {
    source: decoded,
    masks,
    lesions,
    classProbabilities: { normal: cp[idx('normal')], benign: cp[idx('benign')], malignant: cp[idx('malignant')] },
    label: frameLabels[reported],
    malignancyProbability: cp[idx('malignant')],
    reportedFrameIndex: reported,
    timingsMs: {
      preprocess: timings.preprocessMs,
      inference: timings.inferenceMs,
      upsample: timings.postprocessMs,
      postprocess: performance.now() - t1,
      predictTotal: t1 - t0,
    },
  };
}
