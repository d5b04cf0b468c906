/**
 * One source instance through the analysis: decoded frames → model → lesions → one result.
 *
 * Multi-frame policy (cine): every frame is analysed (batched); each frame gets its own mask
 * (the SEG keeps one frame per source frame, empty ones included); the instance reports the
 * most suspicious frame — the frame with the highest malignancy probability among frames with
 * a lesion, or among all frames when none has one.
 */
import { DecodedInstance, InstanceResult, Label, Lesion, NetworkAgreement } from '../types/domain';
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
  /** lesions mostly on black picture (outside the scan sector) are dropped above this fraction; undefined keeps all */
  maxBlackLesionFraction?: number;
  /** holes in an outline are filled (config inference.fillLesionHoles) */
  fillLesionHoles: boolean;
  batchSize: number;
  /** drop a frame's lesions when the classifier calls the frame normal (argmax; config) */
  suppressLesionsWhenNormal: boolean;
  /** drop a frame's lesions when its P(normal) is above this (model.json's outputs.mask.suppressWhenNormalAbove) */
  suppressWhenNormalAbove?: number;
  /** the networks disagree above this spread (model.json's outputs.spread.lowAgreementAbove); undefined: no such output */
  lowAgreementAbove?: number;
  /** where they disagree the graph calls with its most suspicious network (outputs.spread.classFromMostSuspiciousNetwork) */
  classFromMostSuspiciousNetwork?: boolean;
}

/** Whether a frame's lesions are dropped because the classifier is sure enough it is normal. */
export function suppressedAsNormal(probabilities: Record<Label, number>, opts: Pick<AnalyzeOptions, 'suppressLesionsWhenNormal' | 'suppressWhenNormalAbove'>): boolean {
  const { normal, benign, malignant } = probabilities;
  if (opts.suppressLesionsWhenNormal && normal >= benign && normal >= malignant) return true;
  return opts.suppressWhenNormalAbove !== undefined && normal > opts.suppressWhenNormalAbove;
}

/**
 * Predicts, then finds lesions, one batch of frames at a time: a batch's probability maps (4 bytes
 * a pixel) are dropped as soon as its lesions and masks are found, so a long cine holds only its
 * masks and class probabilities, not a float map per frame.
 */
export async function analyzeDecoded(decoded: DecodedInstance, predictor: FramePredictor, opts: AnalyzeOptions): Promise<InstanceResult> {
  const t0 = performance.now();
  const idx = (l: Label) => opts.labels.indexOf(l);
  const masks: Uint8Array[] = [];
  const lesions: Lesion[] = [];
  const frameLabels: Label[] = [];
  const frameProbabilities: number[][] = [];
  const frameSpreads: (number | undefined)[] = [];
  const timings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
  let lesionMs = 0;
  const batchSize = Math.max(1, opts.batchSize);
  for (let b = 0; b < decoded.frames.length; b += batchSize) {
    const batch = await predictor.predict(decoded.frames.slice(b, b + batchSize), decoded.region.rect, batchSize);
    timings.preprocessMs += batch.timings.preprocessMs;
    timings.inferenceMs += batch.timings.inferenceMs;
    timings.postprocessMs += batch.timings.postprocessMs;
    const t = performance.now();
    batch.predictions.forEach((p, i) => {
      const f = b + i;
      const probs = p.classProbabilities;
      frameProbabilities.push(probs);
      frameSpreads.push(p.classSpread);
      const label = (['normal', 'benign', 'malignant'] as Label[]).reduce((x, y) => (probs[idx(y)] > probs[idx(x)] ? y : x));
      frameLabels.push(label);
      const r = extractLesions(p, f, decoded.region, decoded.columns, decoded.rows, {
        threshold: opts.threshold,
        minAreaPixels: opts.minLesionAreaPixels,
        minRelativeArea: opts.minRelativeLesionArea,
        maxBlackFraction: opts.maxBlackLesionFraction,
        fillHoles: opts.fillLesionHoles,
        gray: decoded.frames[f].data,
      });
      if (suppressedAsNormal({ normal: probs[idx('normal')], benign: probs[idx('benign')], malignant: probs[idx('malignant')] }, opts)) {
        masks.push(new Uint8Array(decoded.columns * decoded.rows));
      } else {
        masks.push(r.mask);
        lesions.push(...r.lesions);
      }
    });
    lesionMs += performance.now() - t;
  }
  const pm = (f: number) => frameProbabilities[f][idx('malignant')];
  const withLesion = new Set(lesions.map((l) => l.frameIndex));
  const candidates = withLesion.size ? [...withLesion] : frameProbabilities.map((_, f) => f);
  const reported = candidates.reduce((a, b) => (pm(b) > pm(a) ? b : a));
  const cp = frameProbabilities[reported];
  const spread = frameSpreads[reported];
  const agreement: NetworkAgreement | undefined =
    opts.lowAgreementAbove !== undefined && spread !== undefined ? { spread, lowAbove: opts.lowAgreementAbove, low: spread > opts.lowAgreementAbove } : undefined;
  if (agreement?.low && opts.classFromMostSuspiciousNetwork) agreement.fromMostSuspicious = true;
  return {
    source: decoded,
    masks,
    lesions,
    classProbabilities: { normal: cp[idx('normal')], benign: cp[idx('benign')], malignant: cp[idx('malignant')] },
    label: frameLabels[reported],
    malignancyProbability: cp[idx('malignant')],
    reportedFrameIndex: reported,
    ...(agreement ? { agreement } : {}),
    timingsMs: {
      preprocess: timings.preprocessMs,
      inference: timings.inferenceMs,
      upsample: timings.postprocessMs,
      postprocess: lesionMs,
      predictTotal: performance.now() - t0 - lesionMs,
    },
  };
}
