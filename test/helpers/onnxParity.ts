/**
 * onnxruntime-node against PyTorch on the same input: training/reference.py writes PyTorch's outputs
 * for a deterministic pattern at export time (reference-outputs.json beside model.json), and this
 * regenerates the pattern with the same formula and runs the exported graph through the gateway's
 * Predictor. Used by the parity test for the shipped model and by the training recipe's export test.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadModelSpec } from '../../src/inference/modelSpec';
import { Predictor } from '../../src/inference/predictor';

/** training/reference.py's pattern: a texture; from image 2 on, a dark ellipse (a lesion-like blob). */
export function referencePattern(n: number, h: number, w: number): Float32Array {
  const out = new Float32Array(n * h * w);
  for (let k = 0; k < n; k++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < w; j++) {
        const x = 0.5 + 0.4 * Math.sin(0.11 * i + 0.07 * j + k) * Math.cos(0.05 * j - 0.13 * i);
        const inEllipse = ((i - 0.45 * h) / (0.18 * h)) ** 2 + ((j - 0.5 * w) / (0.25 * w)) ** 2 <= 1;
        out[(k * h + i) * w + j] = k >= 2 && inEllipse ? x * 0.15 : x;
      }
  return out;
}

/** A base64 string of little-endian float32 values (as training/reference.py writes them). */
export function f32(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export interface ParityResult {
  maxDiff: number;
  /** spread of the reference mask logits (a parity check on constant outputs would prove nothing) */
  maskSpread: number;
  /** the descriptor branch's log-odds on the pattern, where the model has one (training/descriptors.py) */
  descriptorLogOdds?: number[];
  /** onnxruntime-node's class_spread on the pattern, where model.json has outputs.spread (training/spread.py) */
  spread?: number[];
}

/** The largest difference between onnxruntime-node's outputs and the PyTorch reference in dir. */
export async function onnxParity(dir: string): Promise<ParityResult> {
  const model = loadModelSpec(path.join(dir, 'model.json'));
  const ref = JSON.parse(fs.readFileSync(path.join(dir, 'reference-outputs.json'), 'utf8'));
  if (model.spec.input.size[0] !== ref.size || model.spec.input.size[1] !== ref.size) throw new Error(`reference is ${ref.size}², the model takes ${model.spec.input.size.join('x')}`);
  const p = await Predictor.create(model.spec, model.onnxPath, ['cpu']);
  try {
    const { mask, cls, spread } = await p.runTensors(referencePattern(ref.n, ref.size, ref.size), ref.n);
    const eMask = f32(ref.mask_logits);
    const eCls = f32(ref.class_logits);
    if (mask.length !== eMask.length || cls.length !== eCls.length) throw new Error('output sizes differ from the reference');
    let maxDiff = 0;
    for (let i = 0; i < mask.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mask[i] - eMask[i]));
    for (let i = 0; i < cls.length; i++) maxDiff = Math.max(maxDiff, Math.abs(cls[i] - eCls[i]));
    if (model.spec.outputs.spread) {
      if (!spread || ref.class_spread === undefined) throw new Error('model.json has outputs.spread but the graph or the reference lacks it');
      const eSpread = f32(ref.class_spread);
      if (spread.length !== eSpread.length) throw new Error('class_spread size differs from the reference');
      for (let i = 0; i < spread.length; i++) maxDiff = Math.max(maxDiff, Math.abs(spread[i] - eSpread[i]));
    }
    const maskSpread = eMask.reduce((a, b) => Math.max(a, b), -Infinity) - eMask.reduce((a, b) => Math.min(a, b), Infinity);
    return { maxDiff, maskSpread, descriptorLogOdds: ref.descriptor_log_odds, spread: spread ? [...spread] : undefined };
  } finally {
    await p.release();
  }
}
