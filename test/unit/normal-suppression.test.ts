/**
 * Dropping a frame's lesions when the classifier is sure it is normal: model.json's
 * outputs.mask.suppressWhenNormalAbove (a bound on P(normal), chosen on val) and the config's
 * inference.suppressLesionsWhenNormal (argmax). Pure postprocessing: the predictor below returns
 * fixed probabilities so that each rule's edge can be checked.
 */
import path from 'node:path';
import { analyzeDecoded, AnalyzeOptions, FramePredictor, suppressedAsNormal } from '../../src/pipeline/analyzeInstance';
import { configSchema } from '../../src/config/schema';
import { FrameMasks } from '../../src/postprocess/frameMasks';
import { loadModelSpec } from '../../src/inference/modelSpec';
import { analyzeOptions } from '../../src/runtime';
import { FramePrediction } from '../../src/types/domain';
import { blankDecoded } from '../helpers/blankDecoded';

const W = 40;
const H = 30;

/** a frame with one 10 × 10 blob of lesion probability 0.9 and the given class probabilities */
function prediction(classProbabilities: number[]): FramePrediction {
  const probability = new Float32Array(W * H);
  for (let y = 10; y < 20; y++) for (let x = 10; x < 20; x++) probability[y * W + x] = 0.9;
  return { probability, width: W, height: H, classProbabilities };
}

/** answers each batch of frames with the next ones of `perFrame` */
function fixed(perFrame: number[][]): FramePredictor {
  let next = 0;
  return {
    predict: async (frames) => {
      const predictions = perFrame.slice(next, next + frames.length).map(prediction);
      next += frames.length;
      return { predictions, timings: { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 } };
    },
  };
}

const decoded = (frames: number) => blankDecoded(frames, W, H);

const base: AnalyzeOptions = {
  labels: ['normal', 'benign', 'malignant'],
  threshold: 0.5,
  minLesionAreaPixels: 1,
  minRelativeLesionArea: 0,
  batchSize: 4,
  suppressLesionsWhenNormal: false,
};

const lesionFrames = (r: { masks: FrameMasks }) => Array.from({ length: r.masks.length }, (_, f) => r.masks.frame(f).reduce((a, b) => a + b, 0));

describe('suppressing lesions on frames the classifier calls normal', () => {
  test('the bound on P(normal) is strict, and absent means never', () => {
    const p = { normal: 0.7, benign: 0.2, malignant: 0.1 };
    expect(suppressedAsNormal(p, { suppressLesionsWhenNormal: false, suppressWhenNormalAbove: 0.7 })).toBe(false);
    expect(suppressedAsNormal({ ...p, normal: 0.7001 }, { suppressLesionsWhenNormal: false, suppressWhenNormalAbove: 0.7 })).toBe(true);
    expect(suppressedAsNormal({ normal: 0.99, benign: 0, malignant: 0.01 }, { suppressLesionsWhenNormal: false })).toBe(false);
  });

  test('the config switch drops on the argmax, ties going to normal as the label does', () => {
    const opts = { suppressLesionsWhenNormal: true };
    expect(suppressedAsNormal({ normal: 0.4, benign: 0.4, malignant: 0.2 }, opts)).toBe(true);
    expect(suppressedAsNormal({ normal: 0.4, benign: 0.41, malignant: 0.19 }, opts)).toBe(false);
  });

  test('each frame of a cine is judged on its own; the kept frame keeps its lesion', async () => {
    const r = await analyzeDecoded(decoded(3), fixed([[0.8, 0.15, 0.05], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]]), { ...base, suppressWhenNormalAbove: 0.7 });
    expect(lesionFrames(r)).toEqual([0, 100, 100]);
    expect(r.lesions.map((l) => l.frameIndex)).toEqual([1, 2]);
    const off = await analyzeDecoded(decoded(3), fixed([[0.8, 0.15, 0.05], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]]), base);
    expect(lesionFrames(off)).toEqual([100, 100, 100]);
  });

  test('a suppressed single frame reports no lesion but keeps its classification', async () => {
    const r = await analyzeDecoded(decoded(1), fixed([[0.9, 0.05, 0.05]]), { ...base, suppressWhenNormalAbove: 0.7 });
    expect(r.lesions).toHaveLength(0);
    expect(r.label).toBe('normal');
    expect(r.classProbabilities.normal).toBeCloseTo(0.9);
  });

  test("the gateway's and evaluate's options take the bound from model.json", () => {
    const model = loadModelSpec(path.join(__dirname, '..', '..', 'model', 'model.json'), { verifySha256: false });
    const config = configSchema.parse({});
    const opts = analyzeOptions(config, model);
    expect(opts.suppressWhenNormalAbove).toBe(model.spec.outputs.mask.suppressWhenNormalAbove);
    const bound = 0.65;
    const withBound = { ...model, spec: { ...model.spec, outputs: { ...model.spec.outputs, mask: { ...model.spec.outputs.mask, suppressWhenNormalAbove: bound } } } };
    expect(analyzeOptions(config, withBound).suppressWhenNormalAbove).toBe(bound);
  });
});

test('a cine is analysed a batch of frames at a time; lesions keep their frame numbers across batches', async () => {
  const perFrame = [0.1, 0.2, 0.3, 0.4, 0.9, 0.5].map((m) => [0.05, 0.95 - m, m]);
  const calls: number[] = [];
  const inner = fixed(perFrame);
  const counting: FramePredictor = { predict: (frames, rect, n) => (calls.push(frames.length), inner.predict(frames, rect, n)) };
  const r = await analyzeDecoded(decoded(6), counting, base); // batchSize 4
  expect(calls).toEqual([4, 2]);
  expect(r.masks).toHaveLength(6);
  expect(r.lesions.map((l) => l.frameIndex)).toEqual([0, 1, 2, 3, 4, 5]);
  expect(r.reportedFrameIndex).toBe(4);
  expect(r.malignancyProbability).toBeCloseTo(0.9);
});
