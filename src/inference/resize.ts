/**
 * The two resampling steps of the model contract, written to match training/preprocess.py and
 * PyTorch exactly (the parity test checks both):
 *  - resizeAntialiased: the "stretch" input resize — separable triangle filter, half-pixel
 *    centres, support widened by the downscale factor (PIL BILINEAR), float64, no rounding.
 *  - upsampleBilinear: logits back to the analysed region — torch.nn.functional.interpolate
 *    (mode "bilinear", align_corners=False, no antialias).
 */

interface Weights {
  start: Int32Array;
  count: Int32Array;
  w: Float64Array;
  stride: number;
}

function triangleWeights(inSize: number, outSize: number): Weights {
  const scale = inSize / outSize;
  const support = Math.max(scale, 1);
  const stride = Math.ceil(support) * 2 + 2;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float64Array(outSize * stride);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.floor(center - support), 0);
    const hi = Math.min(Math.ceil(center + support), inSize);
    let sum = 0;
    for (let j = lo; j < hi; j++) {
      const t = Math.max(1 - Math.abs((j + 0.5 - center) / support), 0);
      w[i * stride + (j - lo)] = t;
      sum += t;
    }
    for (let j = lo; j < hi; j++) w[i * stride + (j - lo)] = sum > 0 ? w[i * stride + (j - lo)] / sum : 0;
    start[i] = lo;
    count[i] = hi - lo;
  }
  return { start, count, w, stride };
}

/** Resizes a w×h single-channel image (any numeric array) to ow×oh. Output float64. */
export function resizeAntialiased(src: ArrayLike<number>, w: number, h: number, ow: number, oh: number): Float64Array {
  const wx = triangleWeights(w, ow);
  const wy = triangleWeights(h, oh);
  // rows first (wy @ a), then columns (... @ wx.T) — same order as the numpy reference
  const tmp = new Float64Array(oh * w);
  for (let i = 0; i < oh; i++) {
    const s = wy.start[i];
    const n = wy.count[i];
    const off = i * wy.stride;
    const row = i * w;
    for (let k = 0; k < n; k++) {
      const wk = wy.w[off + k];
      if (wk === 0) continue;
      const srow = (s + k) * w;
      for (let x = 0; x < w; x++) tmp[row + x] += wk * src[srow + x];
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    const trow = y * w;
    const orow = y * ow;
    for (let j = 0; j < ow; j++) {
      const s = wx.start[j];
      const n = wx.count[j];
      const off = j * wx.stride;
      let acc = 0;
      for (let k = 0; k < n; k++) acc += wx.w[off + k] * tmp[trow + s + k];
      out[orow + j] = acc;
    }
  }
  return out;
}

/** Bilinear upsampling as torch's interpolate(align_corners=False): out w×h → ow×oh. */
export function upsampleBilinear(src: ArrayLike<number>, w: number, h: number, ow: number, oh: number): Float32Array {
  const out = new Float32Array(ow * oh);
  const sx = w / ow;
  const sy = h / oh;
  const x0s = new Int32Array(ow);
  const x1s = new Int32Array(ow);
  const fx = new Float64Array(ow);
  for (let j = 0; j < ow; j++) {
    const x = Math.max((j + 0.5) * sx - 0.5, 0);
    const x0 = Math.min(Math.floor(x), w - 1);
    x0s[j] = x0;
    x1s[j] = Math.min(x0 + 1, w - 1);
    fx[j] = x - x0;
  }
  for (let i = 0; i < oh; i++) {
    const y = Math.max((i + 0.5) * sy - 0.5, 0);
    const y0 = Math.min(Math.floor(y), h - 1);
    const y1 = Math.min(y0 + 1, h - 1);
    const fy = y - y0;
    const r0 = y0 * w;
    const r1 = y1 * w;
    for (let j = 0; j < ow; j++) {
      const a = src[r0 + x0s[j]] * (1 - fx[j]) + src[r0 + x1s[j]] * fx[j];
      const b = src[r1 + x0s[j]] * (1 - fx[j]) + src[r1 + x1s[j]] * fx[j];
      out[i * ow + j] = a * (1 - fy) + b * fy;
    }
  }
  return out;
}
