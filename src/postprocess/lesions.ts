/**
 * Probability map → lesions: threshold, 8-connected components above a minimum area, and per
 * lesion its bounding box, outline, area, long axis (largest diameter) and short axis (largest
 * diameter perpendicular to it), in mm / mm² when the region is calibrated, in pixels otherwise.
 * Pure: no I/O, no model.
 */
import { AnalysisRegion, FramePrediction, Lesion } from '../types/domain';
import { reachedFromEdge } from './edgeFill';
import { traceOutline } from './outline';

export interface LesionOptions {
  threshold: number;
  minAreaPixels: number;
  /** components smaller than this fraction of the frame's largest one are dropped (0 keeps all) */
  minRelativeArea?: number;
  /**
   * components with more than this fraction of their pixels on the black around the scan sector
   * (backgroundMask) are dropped: they outline the background, or the scanner's burned-in text on
   * it. Needs `gray` (the full frame); undefined keeps all.
   */
  maxBlackFraction?: number;
  /** the frame's gray pixels (frameWidth × frameHeight), for maxBlackFraction */
  gray?: Uint8Array;
  /**
   * holes inside an outline (pixels below the threshold that the edge of the analysed region cannot
   * reach through 4-neighbours) become part of the lesion, so that its SEG, area and SCOORD outline
   * describe the same region
   */
  fillHoles?: boolean;
}

/** at or below this a pixel may be the black around the scan sector */
export const BLACK_LEVEL = 4;

/**
 * The black around the scan sector: pixels at or below BLACK_LEVEL joined to the frame's edge
 * through such pixels. A cyst is black too, but enclosed by tissue, so it is not part of it.
 */
export function backgroundMask(gray: Uint8Array, width: number, height: number): Uint8Array {
  return reachedFromEdge(width, height, (i) => gray[i] <= BLACK_LEVEL);
}

/**
 * Sets the pixels of `binary` that its edge cannot reach through 4-neighbours over 0-pixels: the
 * holes of its 8-connected components. The flood fill covers only the foreground's bounding box and
 * a one-pixel margin: everything outside the box is background joined to the edge.
 */
export function fillHoles(binary: Uint8Array, w: number, h: number): void {
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    const row = y * w;
    for (let x = 0; x < w; x++) {
      if (!binary[row + x]) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      y1 = y;
    }
  }
  if (x1 < 0) return;
  x0 = Math.max(0, x0 - 1);
  y0 = Math.max(0, y0 - 1);
  const bw = Math.min(w - 1, x1 + 1) - x0 + 1;
  const bh = Math.min(h - 1, y1 + 1) - y0 + 1;
  const at = (i: number) => (Math.floor(i / bw) + y0) * w + (i % bw) + x0;
  const outside = reachedFromEdge(bw, bh, (i) => !binary[at(i)]);
  for (let i = 0; i < outside.length; i++) if (!outside[i]) binary[at(i)] = 1;
}

interface Component {
  pixels: Int32Array; // indices into the region map
  meanProbability: number;
}

function components(binary: Uint8Array, prob: Float32Array, w: number, h: number): Component[] {
  const label = new Int32Array(w * h);
  const stack = new Int32Array(w * h);
  const out: Component[] = [];
  let next = 0;
  for (let start = 0; start < binary.length; start++) {
    if (!binary[start] || label[start]) continue;
    next++;
    let sp = 0;
    let n = 0;
    const members: number[] = [];
    stack[sp++] = start;
    label[start] = next;
    let psum = 0;
    while (sp > 0) {
      const p = stack[--sp];
      members.push(p);
      psum += prob[p];
      n++;
      const x = p % w;
      const y = (p - x) / w;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if ((dx === 0 && dy === 0) || xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (binary[q] && !label[q]) {
            label[q] = next;
            stack[sp++] = q;
          }
        }
      }
    }
    out.push({ pixels: Int32Array.from(members), meanProbability: psum / n });
  }
  return out;
}

/** Monotone-chain convex hull of points given as [x, y] pairs. */
function convexHull(pts: [number, number][]): [number, number][] {
  const p = pts.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length <= 2) return p;
  const cross = (o: number[], a: number[], b: number[]) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: [number, number][] = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper: [number, number][] = [];
  for (let i = p.length - 1; i >= 0; i--) {
    const q = p[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

interface Axes {
  long: number;
  short: number;
  longLine: [number, number, number, number];
  shortLine: [number, number, number, number];
}

/** Axes of a set of points (pixel index coordinates), measured in physical units (ux, uy per pixel). */
export function measureAxes(points: [number, number][], ux: number, uy: number): Axes {
  const phys = points.map(([x, y]) => [x * ux, y * uy] as [number, number]);
  const hull = convexHull(phys);
  let best = -1;
  let a = hull[0];
  let b = hull[0];
  for (let i = 0; i < hull.length; i++) {
    for (let j = i + 1; j < hull.length; j++) {
      const d = (hull[i][0] - hull[j][0]) ** 2 + (hull[i][1] - hull[j][1]) ** 2;
      if (d > best) {
        best = d;
        a = hull[i];
        b = hull[j];
      }
    }
  }
  const long = Math.sqrt(Math.max(best, 0));
  if (long === 0) {
    const [x, y] = points[0];
    return { long: 0, short: 0, longLine: [x, y, x, y], shortLine: [x, y, x, y] };
  }
  const ex = (b[0] - a[0]) / long;
  const ey = (b[1] - a[1]) / long;
  // largest extent perpendicular to the long axis, per unit-wide slice along it
  const binW = Math.max(ux, uy);
  const slices = new Map<number, { min: number; max: number }>();
  for (const [x, y] of phys) {
    const t = (x - a[0]) * ex + (y - a[1]) * ey;
    const s = -(x - a[0]) * ey + (y - a[1]) * ex;
    const k = Math.round(t / binW);
    const sl = slices.get(k);
    if (!sl) slices.set(k, { min: s, max: s });
    else {
      sl.min = Math.min(sl.min, s);
      sl.max = Math.max(sl.max, s);
    }
  }
  let short = 0;
  let sk = 0;
  let smin = 0;
  let smax = 0;
  for (const [k, sl] of slices) {
    if (sl.max - sl.min > short) {
      short = sl.max - sl.min;
      sk = k;
      smin = sl.min;
      smax = sl.max;
    }
  }
  const t = sk * binW;
  const toPix = (tt: number, ss: number): [number, number] => [(a[0] + tt * ex - ss * ey) / ux, (a[1] + tt * ey + ss * ex) / uy];
  const [s0x, s0y] = toPix(t, smin);
  const [s1x, s1y] = toPix(t, smax);
  return { long, short, longLine: [a[0] / ux, a[1] / uy, b[0] / ux, b[1] / uy], shortLine: [s0x, s0y, s1x, s1y] };
}

/**
 * Lesions of one frame. `pred` covers `region.rect`; the returned mask is full-frame
 * (frameWidth × frameHeight) and lesion coordinates are full-frame pixels.
 */
export function extractLesions(
  pred: FramePrediction,
  frameIndex: number,
  region: AnalysisRegion,
  frameWidth: number,
  frameHeight: number,
  opts: LesionOptions,
): { mask: Uint8Array; lesions: Lesion[] } {
  const { width: w, height: h, probability } = pred;
  const binary = new Uint8Array(w * h);
  for (let i = 0; i < binary.length; i++) binary[i] = probability[i] > opts.threshold ? 1 : 0;
  if (opts.fillHoles) fillHoles(binary, w, h);
  const { x0, y0 } = region.rect;
  // the flood fill covers the whole frame: only for a frame that has a component to judge
  let background: Uint8Array | null = null;
  const outsideSector = (c: Component): boolean => {
    if (!opts.gray || opts.maxBlackFraction === undefined) return false;
    background ??= backgroundMask(opts.gray, frameWidth, frameHeight);
    let out = 0;
    for (const p of c.pixels) {
      const x = p % w;
      out += background[((p - x) / w + y0) * frameWidth + x + x0];
    }
    return out > opts.maxBlackFraction! * c.pixels.length;
  };
  const sized = components(binary, probability, w, h)
    .filter((c) => c.pixels.length >= Math.max(opts.minAreaPixels, 1) && !outsideSector(c))
    .sort((p, q) => q.pixels.length - p.pixels.length);
  const floor = sized.length ? sized[0].pixels.length * (opts.minRelativeArea ?? 0) : 0;
  const comps = sized.filter((c) => c.pixels.length >= floor);
  const mask = new Uint8Array(frameWidth * frameHeight);
  const cal = region.calibration;
  const ux = cal ? cal.mmPerPixelX : 1;
  const uy = cal ? cal.mmPerPixelY : 1;
  const lesions: Lesion[] = comps.map((c, i) => {
    let bx0 = Infinity;
    let by0 = Infinity;
    let bx1 = -Infinity;
    let by1 = -Infinity;
    const boundary: [number, number][] = [];
    for (const p of c.pixels) {
      const x = p % w;
      const y = (p - x) / w;
      mask[(y + y0) * frameWidth + (x + x0)] = 1;
      bx0 = Math.min(bx0, x);
      by0 = Math.min(by0, y);
      bx1 = Math.max(bx1, x);
      by1 = Math.max(by1, y);
      const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !binary[p - 1] || !binary[p + 1] || !binary[p - w] || !binary[p + w];
      // the corners of the edge pixels: the axes run from edge to edge of the lesion, as calipers
      // are placed on its outer margins, not between the centres of its outermost pixels
      if (edge) {
        const fx = x + x0;
        const fy = y + y0;
        boundary.push([fx - 0.5, fy - 0.5], [fx + 0.5, fy - 0.5], [fx - 0.5, fy + 0.5], [fx + 0.5, fy + 0.5]);
      }
    }
    const axes = measureAxes(boundary, ux, uy);
    const pixAxes = cal ? measureAxes(boundary, 1, 1) : axes;
    return {
      frameIndex,
      index: i + 1,
      bbox: { x0: bx0 + x0, y0: by0 + y0, x1: bx1 + x0 + 1, y1: by1 + y0 + 1 },
      areaPixels: c.pixels.length,
      longAxisPixels: pixAxes.long,
      shortAxisPixels: pixAxes.short,
      longAxisMm: cal ? axes.long : null,
      shortAxisMm: cal ? axes.short : null,
      areaMm2: cal ? c.pixels.length * ux * uy : null,
      longAxisLine: axes.longLine,
      shortAxisLine: axes.shortLine,
      outline: traceOutline(c.pixels, w, x0, y0),
      meanProbability: c.meanProbability,
    };
  });
  return { mask, lesions };
}
