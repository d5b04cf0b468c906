/**
 * Frames → per-frame lesion probability maps and class probabilities, following model.json.
 * Used inside the worker processes (see workerPool.ts), and directly by tests.
 */
import * as ort from 'onnxruntime-node';
import { FramePrediction, GrayFrame, Rect } from '../types/domain';
import { ModelError, ModelSpec } from './modelSpec';
import { cropFrame, toInputTensor } from './preprocess';
import { upsampleBilinear } from './resize';
import { createSession, ModelSession, Provider } from './session';

export interface PredictTimings {
  preprocessMs: number;
  inferenceMs: number;
  postprocessMs: number;
}

function softmax(v: ArrayLike<number>, from: number, n: number): number[] {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, v[from + i]);
  const e: number[] = [];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    e.push(Math.exp(v[from + i] - max));
    sum += e[i];
  }
  return e.map((x) => x / sum);
}

export class Predictor {
  private constructor(
    readonly spec: ModelSpec,
    private readonly ms: ModelSession,
  ) {}

  /** Loads the graph and checks it against model.json (ModelError on a mismatch). */
  static async create(spec: ModelSpec, onnxPath: string, providers: Provider[], threads?: number): Promise<Predictor> {
    const predictor = new Predictor(spec, await createSession(onnxPath, providers, threads));
    await predictor.checkContract(onnxPath);
    return predictor;
  }

  /**
   * The graph against model.json before any study: the input and output names, and what one
   * blank frame comes back as. A mismatch would otherwise fail every study, or worse pass with
   * shifted or NaN class probabilities (more labels than the class head has).
   */
  private async checkContract(onnxPath: string): Promise<void> {
    const { input, outputs } = this.spec;
    const { session } = this.ms;
    const where = `${onnxPath} does not match model.json`;
    if (!session.inputNames.includes(input.name)) throw new ModelError(`${where}: input.name "${input.name}" is not an input of the graph (${session.inputNames.join(', ')})`);
    for (const name of [outputs.mask.name, outputs.class.name, ...(outputs.spread ? [outputs.spread.name] : [])]) {
      if (!session.outputNames.includes(name)) throw new ModelError(`${where}: output "${name}" is not an output of the graph (${session.outputNames.join(', ')})`);
    }
    const [h, w] = input.size;
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await session.run({ [input.name]: new ort.Tensor('float32', new Float32Array(h * w), [1, 1, h, w]) });
    } catch (e) {
      throw new ModelError(`${where}: a 1×1×${h}×${w} input (input.size) fails: ${(e as Error).message.split('\n')[0]}`);
    }
    const dims = (name: string) => (out[name] as ort.Tensor).dims.join('×');
    if (dims(outputs.mask.name) !== `1×1×${h}×${w}`) throw new ModelError(`${where}: ${outputs.mask.name} is ${dims(outputs.mask.name)} for one frame, not 1×1×${h}×${w}`);
    const n = outputs.class.labels.length;
    if (dims(outputs.class.name) !== `1×${n}`) throw new ModelError(`${where}: ${outputs.class.name} is ${dims(outputs.class.name)} for one frame, not 1×${n} (${n} labels)`);
    if (outputs.spread && dims(outputs.spread.name) !== '1') throw new ModelError(`${where}: ${outputs.spread.name} is ${dims(outputs.spread.name)} for one frame, not 1 (one value per frame)`);
  }

  get provider(): Provider {
    return this.ms.provider;
  }

  get skippedProviders(): string[] {
    return this.ms.skipped;
  }

  /** Runs the model on raw input tensors (N×1×H×W) and returns the raw output tensors. */
  async runTensors(input: Float32Array, n: number): Promise<{ mask: Float32Array; cls: Float32Array; spread?: Float32Array }> {
    const [h, w] = this.spec.input.size;
    const feeds = { [this.spec.input.name]: new ort.Tensor('float32', input, [n, 1, h, w]) };
    const out = await this.ms.session.run(feeds);
    const { outputs } = this.spec;
    const mask = out[outputs.mask.name];
    const cls = out[outputs.class.name];
    const spread = outputs.spread ? out[outputs.spread.name] : undefined;
    if (!mask || !cls || (outputs.spread && !spread)) throw new Error(`model outputs ${Object.keys(out).join(', ')} lack the names in model.json`);
    return { mask: mask.data as Float32Array, cls: cls.data as Float32Array, spread: spread?.data as Float32Array | undefined };
  }

  /**
   * Predicts each frame's `rect` region; batches of `batchSize` frames per run (cine frames).
   * Probability maps come back at the region's own size.
   */
  async predict(frames: GrayFrame[], rect: Rect, batchSize = 8): Promise<{ predictions: FramePrediction[]; timings: PredictTimings }> {
    const [h, w] = this.spec.input.size;
    const rw = rect.x1 - rect.x0;
    const rh = rect.y1 - rect.y0;
    const nLabels = this.spec.outputs.class.labels.length;
    const timings: PredictTimings = { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 };
    const predictions: FramePrediction[] = [];
    for (let b = 0; b < frames.length; b += batchSize) {
      const batch = frames.slice(b, b + batchSize);
      let t = performance.now();
      const input = new Float32Array(batch.length * h * w);
      batch.forEach((f, i) => toInputTensor(cropFrame(f, rect), rw, rh, this.spec.input, input, i * h * w));
      timings.preprocessMs += performance.now() - t;
      t = performance.now();
      const { mask, cls, spread } = await this.runTensors(input, batch.length);
      timings.inferenceMs += performance.now() - t;
      t = performance.now();
      for (let i = 0; i < batch.length; i++) {
        const logits = upsampleBilinear(mask.subarray(i * h * w, (i + 1) * h * w), w, h, rw, rh);
        for (let k = 0; k < logits.length; k++) logits[k] = 1 / (1 + Math.exp(-logits[k]));
        predictions.push({ probability: logits, width: rw, height: rh, classProbabilities: softmax(cls, i * nLabels, nLabels), classSpread: spread?.[i] });
      }
      timings.postprocessMs += performance.now() - t;
    }
    return { predictions, timings };
  }

  async release(): Promise<void> {
    await this.ms.session.release();
  }
}
