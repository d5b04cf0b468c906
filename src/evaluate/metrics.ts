/** Scoring functions for `sonogate evaluate` (pure). */

export function diceIou(pred: Uint8Array, truth: Uint8Array): { dice: number; iou: number; tp: number; fp: number; fn: number } {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i] > 0;
    const t = truth[i] > 0;
    if (p && t) tp++;
    else if (p) fp++;
    else if (t) fn++;
  }
  const dice = tp + fp + fn === 0 ? 1 : (2 * tp) / (2 * tp + fp + fn);
  const iou = tp + fp + fn === 0 ? 1 : tp / (tp + fp + fn);
  return { dice, iou, tp, fp, fn };
}

/** ROC AUC by the Mann–Whitney rank sum, ties counted half. NaN without both classes. */
export function auc(positive: boolean[], score: number[]): number {
  const idx = score.map((s, i) => [s, i] as [number, number]).sort((a, b) => a[0] - b[0]);
  const ranks = new Float64Array(score.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
    for (let k = i; k <= j; k++) ranks[idx[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  let nPos = 0;
  let sum = 0;
  positive.forEach((p, i) => {
    if (p) {
      nPos++;
      sum += ranks[i];
    }
  });
  const nNeg = positive.length - nPos;
  if (nPos === 0 || nNeg === 0) return NaN;
  return (sum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export function binaryStats(truth: boolean[], pred: boolean[]) {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  truth.forEach((t, i) => {
    if (t && pred[i]) tp++;
    else if (!t && pred[i]) fp++;
    else if (t) fn++;
    else tn++;
  });
  return {
    f1: tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn),
    sensitivity: tp + fn ? tp / (tp + fn) : NaN,
    specificity: tn + fp ? tn / (tn + fp) : NaN,
    tp,
    fp,
    fn,
    tn,
  };
}

/** Mean squared difference between a predicted probability and the 0/1 outcome (lower is better). */
export function brier(positive: boolean[], prob: number[]): number {
  return mean(prob.map((p, i) => (p - (positive[i] ? 1 : 0)) ** 2));
}

export interface ReliabilityBin {
  from: number;
  to: number;
  n: number;
  /** mean predicted probability of the images in the bin */
  predicted: number;
  /** share of them that are positive */
  observed: number;
}

/**
 * Reliability of a probability: images binned by it (equal widths over [0, 1], the last bin
 * closed), each bin's mean prediction against its observed rate; empty bins left out. The expected
 * calibration error is their gap, weighted by the bins' shares of the images.
 */
export function calibration(positive: boolean[], prob: number[], bins = 10): { ece: number; bins: ReliabilityBin[] } {
  const out: ReliabilityBin[] = [];
  for (let b = 0; b < bins; b++) {
    const idx = prob.map((_, i) => i).filter((i) => Math.min(bins - 1, Math.floor(prob[i] * bins)) === b);
    if (!idx.length) continue;
    out.push({ from: b / bins, to: (b + 1) / bins, n: idx.length, predicted: mean(idx.map((i) => prob[i])), observed: mean(idx.map((i) => (positive[i] ? 1 : 0))) });
  }
  const ece = out.reduce((e, r) => e + (r.n / prob.length) * Math.abs(r.predicted - r.observed), 0);
  return { ece, bins: out };
}

/** Mean negative log-likelihood of the true class (natural log; probabilities floored at 1e-12). */
export function logLoss(probOfTruth: number[]): number {
  return mean(probOfTruth.map((p) => -Math.log(Math.max(p, 1e-12))));
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Percentile bootstrap 95 % interval of statistic(sample indices), seeded. */
export function bootstrapCi(n: number, statistic: (idx: number[]) => number, resamples = 1000, seed = 1): [number, number] {
  const rnd = mulberry32(seed);
  const values: number[] = [];
  for (let r = 0; r < resamples; r++) {
    const idx = Array.from({ length: n }, () => Math.floor(rnd() * n));
    const v = statistic(idx);
    if (Number.isFinite(v)) values.push(v);
  }
  values.sort((a, b) => a - b);
  const q = (p: number) => values[Math.min(values.length - 1, Math.max(0, Math.round(p * (values.length - 1))))];
  return [q(0.025), q(0.975)];
}

export function mean(v: number[]): number {
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
}
