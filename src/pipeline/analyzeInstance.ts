/**
 * One source instance through the analysis: decoded frames → model → lesions → one result.
 *
 * Multi-frame policy (cine): every frame is analysed (batched); each frame gets its own mask
 * (the SEG keeps one frame per source frame, empty ones included); the instance reports the
 * most suspicious frame — the frame with the highest malignancy probability among frames with
 * a lesion, or among all frames when none has one.
 */
import { DecodedInstance, FrameSource, GrayFrame, InstanceResult, Label, Lesion, NetworkAgreement } from '../types/domain';
import { FrameMasks } from '../postprocess/frameMasks';
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
 * Decodes, predicts, then finds lesions, one batch of frames at a time: a batch's gray frames and
 * probability maps (4 bytes a pixel) are dropped as soon as its lesions and masks are found, so a
 * long cine holds its masks (one bit a pixel), its lesions and class probabilities, and the gray
 * of at most two frames (the most suspicious so far with a lesion and without), not its frames.
 */
export async function analyzeFrames(source: FrameSource, predictor: FramePredictor, opts: AnalyzeOptions): Promise<InstanceResult> {
  const t0 = performance.now();
  const idx = (l: Label) => opts.labels.indexOf(l);
  const pm = (probs: number[]) => probs[idx('malignant')];
  const masks = new FrameMasks(source.columns * source.rows, source.frameCount);
  const lesions: Lesion[] = [];
  const timings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
  let lesionMs = 0;
  let decodeMs = 0;
  /** the reported frame is the first most suspicious one among frames with a lesion, or among all when none has one */
  interface Candidate {
    frame: number;
    gray: GrayFrame;
    probs: number[];
    label: Label;
    spread: number | undefined;
  }
  let withLesion: Candidate | null = null;
  let any: Candidate | null = null;
  const batchSize = Math.max(1, opts.batchSize);
  for (let b = 0; b < source.frameCount; b += batchSize) {
    const td = performance.now();
    const frames = await source.read(b, Math.min(source.frameCount, b + batchSize));
    decodeMs += performance.now() - td;
    const batch = await predictor.predict(frames, source.region.rect, batchSize);
    timings.preprocessMs += batch.timings.preprocessMs;
    timings.inferenceMs += batch.timings.inferenceMs;
    timings.postprocessMs += batch.timings.postprocessMs;
    const t = performance.now();
    for (const [i, p] of batch.predictions.entries()) {
      const f = b + i;
      const probs = p.classProbabilities;
      const label = (['normal', 'benign', 'malignant'] as Label[]).reduce((x, y) => (probs[idx(y)] > probs[idx(x)] ? y : x));
      const r = extractLesions(p, f, source.region, source.columns, source.rows, {
        threshold: opts.threshold,
        minAreaPixels: opts.minLesionAreaPixels,
        minRelativeArea: opts.minRelativeLesionArea,
        maxBlackFraction: opts.maxBlackLesionFraction,
        fillHoles: opts.fillLesionHoles,
        gray: frames[i].data,
      });
      const suppressed = suppressedAsNormal({ normal: probs[idx('normal')], benign: probs[idx('benign')], malignant: probs[idx('malignant')] }, opts);
      masks.push(suppressed ? null : r.mask);
      if (!suppressed) lesions.push(...r.lesions);
      const candidate = (): Candidate => ({ frame: f, gray: frames[i], probs, label, spread: p.classSpread });
      if (!any || pm(probs) > pm(any.probs)) any = candidate();
      if (!suppressed && r.lesions.length > 0 && (!withLesion || pm(probs) > pm(withLesion.probs))) withLesion = candidate();
    }
    lesionMs += performance.now() - t;
  }
  const reported: Candidate | null = withLesion ?? any;
  if (!reported) throw new Error('the instance has no frames');
  const { probs: cp, spread } = reported;
  const agreement: NetworkAgreement | undefined =
    opts.lowAgreementAbove !== undefined && spread !== undefined ? { spread, lowAbove: opts.lowAgreementAbove, low: spread > opts.lowAgreementAbove } : undefined;
  if (agreement?.low && opts.classFromMostSuspiciousNetwork) agreement.fromMostSuspicious = true;
  const { read: _read, ...info } = source;
  return {
    source: info,
    masks,
    lesions,
    classProbabilities: { normal: cp[idx('normal')], benign: cp[idx('benign')], malignant: cp[idx('malignant')] },
    label: reported.label,
    malignancyProbability: cp[idx('malignant')],
    reportedFrameIndex: reported.frame,
    reportedFrame: reported.gray,
    ...(agreement ? { agreement } : {}),
    timingsMs: {
      decode: decodeMs,
      preprocess: timings.preprocessMs,
      inference: timings.inferenceMs,
      upsample: timings.postprocessMs,
      postprocess: lesionMs,
      predictTotal: performance.now() - t0 - lesionMs - decodeMs,
    },
  };
}

/** Frames already decoded, as a FrameSource. */
export function framesInMemory(decoded: DecodedInstance): FrameSource {
  const { frames, ...info } = decoded;
  return { ...info, frameCount: frames.length, read: async (first, end) => frames.slice(first, end) };
}

/** analyzeFrames over frames already decoded (the offline evaluation, tests). */
export function analyzeDecoded(decoded: DecodedInstance, predictor: FramePredictor, opts: AnalyzeOptions): Promise<InstanceResult> {
  return analyzeFrames(framesInMemory(decoded), predictor, opts);
}
