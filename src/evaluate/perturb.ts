/**
 * Image perturbations for robustness checks (`sonogate evaluate --perturb ...`): how the model
 * holds up when another scanner or operator changes gain, contrast, speckle or depth.
 */
import sharp from 'sharp';
import { GrayFrame } from '../types/domain';
import { mulberry32 } from './metrics';

export interface Perturbation {
  /** The picture as the other scanner or setting would show it (may change the frame in place). */
  image(frame: GrayFrame): Promise<GrayFrame>;
  /** The truth mask, moved as the picture was (only geometric perturbations move it). */
  mask(frame: GrayFrame): Promise<GrayFrame>;
}

const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

function pointwise(f: (g: Uint8Array) => void): Perturbation {
  return {
    image: async (frame) => {
      f(frame.data);
      return frame;
    },
    mask: async (frame) => frame,
  };
}

/**
 * The content scaled by `factor` about the frame's centre, the frame size kept: below 1 the
 * picture shrinks inside a black border (lesions look as they do at a greater depth), above 1 its
 * centre is cropped. The picture is resampled bilinearly, the mask by nearest neighbour.
 */
async function zoomAboutCentre(frame: GrayFrame, factor: number, kernel: 'linear' | 'nearest'): Promise<GrayFrame> {
  const { width: w, height: h } = frame;
  const zw = Math.max(1, Math.round(w * factor));
  const zh = Math.max(1, Math.round(h * factor));
  const scaled = await sharp(Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.length), { raw: { width: w, height: h, channels: 1 } })
    .resize(zw, zh, { fit: 'fill', kernel })
    .extractChannel(0)
    .raw()
    .toBuffer();
  const out = new Uint8Array(w * h);
  // offsets of the scaled picture in the frame (negative: the scaled picture is cropped)
  const dx = Math.floor((w - zw) / 2);
  const dy = Math.floor((h - zh) / 2);
  for (let y = Math.max(0, dy); y < Math.min(h, dy + zh); y++) {
    const from = (y - dy) * zw - Math.min(0, dx);
    const x0 = Math.max(0, dx);
    const n = Math.min(w, dx + zw) - x0;
    out.set(scaled.subarray(from, from + n), y * w + x0);
  }
  return { width: w, height: h, data: out };
}

/** Parses "gain:0.7", "gamma:1.5", "noise:0.2" (multiplicative speckle, seeded) or "zoom:0.75". */
export function parsePerturbation(spec: string): Perturbation {
  const m = /^(gain|gamma|noise|zoom):([0-9.]+)$/.exec(spec);
  if (!m) throw new Error(`--perturb: expected gain:X, gamma:X, noise:X or zoom:X, got "${spec}"`);
  const x = Number(m[2]);
  switch (m[1]) {
    case 'gain':
      return pointwise((g) => g.forEach((v, i) => (g[i] = clamp(v * x))));
    case 'gamma':
      return pointwise((g) => g.forEach((v, i) => (g[i] = clamp(255 * (v / 255) ** x))));
    case 'zoom':
      if (!(x >= 0.25 && x <= 4)) throw new Error(`--perturb: zoom must be between 0.25 and 4, got "${spec}"`);
      return {
        image: (frame) => zoomAboutCentre(frame, x, 'linear'),
        mask: (frame) => zoomAboutCentre(frame, x, 'nearest'),
      };
    default:
      return pointwise((g) => {
        const rnd = mulberry32(g.length);
        g.forEach((v, i) => {
          const n = Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-9))) * Math.cos(2 * Math.PI * rnd());
          g[i] = clamp(v * (1 + x * n));
        });
      });
  }
}
