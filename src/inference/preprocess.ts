/** Grayscale frame (region of it) → model input tensor, exactly as model.json's `input` says. */
import { GrayFrame, Rect } from '../types/domain';
import { ModelSpec } from './modelSpec';
import { resizeAntialiased } from './resize';

/** Copies the rect out of a frame as a tight width×height byte array. */
export function cropFrame(frame: GrayFrame, rect: Rect): Uint8Array {
  const w = rect.x1 - rect.x0;
  const h = rect.y1 - rect.y0;
  if (rect.x0 === 0 && rect.y0 === 0 && w === frame.width && h === frame.height) return frame.data;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    const s = (rect.y0 + y) * frame.width + rect.x0;
    out.set(frame.data.subarray(s, s + w), y * w);
  }
  return out;
}

/** Writes the (H×W) input tensor of one image into `out` at `offset` (for batching). */
export function toInputTensor(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  input: ModelSpec['input'],
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const [oh, ow] = input.size;
  const r = resizeAntialiased(pixels, width, height, ow, oh);
  const t = out ?? new Float32Array(oh * ow);
  const { scale, mean, std } = input;
  for (let i = 0; i < r.length; i++) t[offset + i] = (r[i] * scale - mean) / std;
  return t;
}
