/**
 * Image perturbations for robustness checks (`sonogate evaluate --perturb ...`): how the model
 * holds up when another scanner or operator changes gain, contrast or speckle.
 */
import { mulberry32 } from './metrics';

export type Perturbation = (gray: Uint8Array) => void;

const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** Parses "gain:0.7", "gamma:1.5" or "noise:0.2" (multiplicative speckle, seeded). */
export function parsePerturbation(spec: string): Perturbation {
  const m = /^(gain|gamma|noise):([0-9.]+)$/.exec(spec);
  if (!m) throw new Error(`--perturb: expected gain:X, gamma:X or noise:X, got "${spec}"`);
  const x = Number(m[2]);
  switch (m[1]) {
    case 'gain':
      return (g) => g.forEach((v, i) => (g[i] = clamp(v * x)));
    case 'gamma':
      return (g) => g.forEach((v, i) => (g[i] = clamp(255 * (v / 255) ** x)));
    default:
      return (g) => {
        const rnd = mulberry32(g.length);
        g.forEach((v, i) => {
          const n = Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-9))) * Math.cos(2 * Math.PI * rnd());
          g[i] = clamp(v * (1 + x * n));
        });
      };
  }
}
