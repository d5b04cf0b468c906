/**
 * A FramePredictor without a model, for pipeline tests: it outlines the phantom's lesion
 * (test/helpers/phantom.ts) where it lies in each frame of `lesionFrames` (counted over every
 * frame it is asked for, from 0) and calls those frames malignant, the others normal. Given
 * `classSpread`, every frame reports it as the networks' spread (a model with outputs.spread).
 */
import { FramePredictor } from '../../src/pipeline/analyzeInstance';
import { PipelineOptions } from '../../src/pipeline/processStudy';
import { FramePrediction } from '../../src/types/domain';
import { phantomLesion } from './phantom';

export function phantomPredictor(rows: number, columns: number, lesionFrames: number[], opts: { classSpread?: number } = {}): FramePredictor {
  let next = 0;
  return {
    predict: async (frames, rect) => {
      const width = rect.x1 - rect.x0;
      const height = rect.y1 - rect.y0;
      const predictions = frames.map((): FramePrediction => {
        const f = next++;
        const probability = new Float32Array(width * height);
        const lesion = lesionFrames.includes(f);
        if (lesion) {
          const { cx, cy, ax, ay } = phantomLesion(rows, columns, f);
          for (let y = 0; y < height; y++) {
            for (let x = 0; x < width; x++) {
              const dx = (x + rect.x0 + 0.5 - cx) / ax;
              const dy = (y + rect.y0 + 0.5 - cy) / ay;
              if (dx * dx + dy * dy < 1) probability[y * width + x] = 0.95;
            }
          }
        }
        const classProbabilities = lesion ? [0.05, 0.15, 0.8] : [0.8, 0.15, 0.05];
        return { probability, width, height, classProbabilities, ...(opts.classSpread !== undefined ? { classSpread: opts.classSpread } : {}) };
      });
      return { predictions, timings: { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 } };
    },
  };
}

/** Pipeline options for phantomPredictor: its outlines kept (threshold 0.5, 20 pixels), the given outputs. */
export function phantomPipelineOptions(outputs: PipelineOptions['outputs'], model = { name: 'attention-unet-busi', version: '1.0.0' }): PipelineOptions {
  return {
    labels: ['normal', 'benign', 'malignant'],
    threshold: 0.5,
    minLesionAreaPixels: 20,
    minRelativeLesionArea: 0,
    batchSize: 8,
    suppressLesionsWhenNormal: true,
    outputs,
    model,
  };
}
