import { reachedFromEdge } from '../../src/postprocess/edgeFill';
import { backgroundMask, extractLesions, fillHoles } from '../../src/postprocess/lesions';
import { polygonArea } from '../../src/postprocess/outline';
import { AnalysisRegion, FramePrediction } from '../../src/types/domain';

function ellipseMap(w: number, h: number, shapes: { cx: number; cy: number; ax: number; ay: number }[]): FramePrediction {
  const p = new Float32Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (const s of shapes) if (((x - s.cx) / s.ax) ** 2 + ((y - s.cy) / s.ay) ** 2 <= 1) p[y * w + x] = 0.9;
  return { probability: p, width: w, height: h, classProbabilities: [0.1, 0.6, 0.3] };
}

const whole = (w: number, h: number, mm: number | null): AnalysisRegion => ({
  rect: { x0: 0, y0: 0, x1: w, y1: h },
  calibration: mm ? { mmPerPixelX: mm, mmPerPixelY: mm } : null,
  source: mm ? 'ultrasound-region' : 'whole-frame',
});

describe('lesion measurement', () => {
  test('axes run from edge to edge of the pixels, as calipers on the outer margins: a bar of 10 × 1 pixels is 10 long', () => {
    const w = 20;
    const p = new Float32Array(w * 5);
    for (let x = 5; x < 15; x++) p[2 * w + x] = 0.9; // pixels 5..14 of row 2
    const { lesions } = extractLesions({ probability: p, width: w, height: 5, classProbabilities: [0.1, 0.6, 0.3] }, 0, whole(w, 5, null), w, 5, { threshold: 0.5, minAreaPixels: 1 });
    const l = lesions[0];
    // the diagonal of the 10 × 1 box of pixels (centre to centre it would be 9)
    expect(l.longAxisPixels).toBeCloseTo(Math.hypot(10, 1), 6);
    // its ends are pixel corners: the left edge of pixel 5 and the right edge of pixel 14
    expect([Math.min(l.longAxisLine[0], l.longAxisLine[2]), Math.max(l.longAxisLine[0], l.longAxisLine[2])]).toEqual([4.5, 14.5]);
    expect(l.shortAxisPixels).toBeGreaterThan(0.9);
    expect(l.shortAxisPixels).toBeLessThan(1.2);
  });

  test('an ellipse of semi-axes 60 × 25 px measures about 120 × 50 px and its area', () => {
    const { lesions, mask } = extractLesions(ellipseMap(200, 120, [{ cx: 100, cy: 60, ax: 60, ay: 25 }]), 0, whole(200, 120, null), 200, 120, {
      threshold: 0.5,
      minAreaPixels: 10,
    });
    expect(lesions).toHaveLength(1);
    const l = lesions[0];
    // its pixels span columns 40-160 and rows 35-85: 121 × 51 pixels, edge to edge
    expect(l.longAxisPixels).toBeGreaterThan(120.5);
    expect(l.longAxisPixels).toBeLessThan(122);
    expect(l.shortAxisPixels).toBeGreaterThan(50.5);
    expect(l.shortAxisPixels).toBeLessThan(52);
    expect(l.areaPixels).toBeGreaterThan(Math.PI * 60 * 25 * 0.97);
    expect(l.areaPixels).toBeLessThan(Math.PI * 60 * 25 * 1.03);
    expect(l.longAxisMm).toBeNull();
    expect(l.areaMm2).toBeNull();
    expect(mask.reduce((a, b) => a + b, 0)).toBe(l.areaPixels);
  });

  test('calibration converts sizes to mm and mm², and region offsets map back to the full frame', () => {
    const region: AnalysisRegion = { rect: { x0: 30, y0: 20, x1: 230, y1: 140 }, calibration: { mmPerPixelX: 0.1, mmPerPixelY: 0.1 }, source: 'ultrasound-region' };
    const { lesions, mask } = extractLesions(ellipseMap(200, 120, [{ cx: 100, cy: 60, ax: 60, ay: 25 }]), 0, region, 300, 200, {
      threshold: 0.5,
      minAreaPixels: 10,
    });
    const l = lesions[0];
    expect(l.longAxisMm!).toBeCloseTo(l.longAxisPixels * 0.1, 5);
    expect(l.areaMm2!).toBeCloseTo(l.areaPixels * 0.01, 5);
    expect(l.bbox.x0).toBe(30 + 40);
    expect(l.bbox.y0).toBe(20 + 35);
    expect(mask[(20 + 60) * 300 + (30 + 100)]).toBe(1);
    expect(mask[(20 + 60) * 300 + 100 - 35]).toBe(0); // left of the shifted lesion
  });

  test('anisotropic pixels: a circle in pixels is an ellipse in mm', () => {
    const region: AnalysisRegion = { rect: { x0: 0, y0: 0, x1: 200, y1: 200 }, calibration: { mmPerPixelX: 0.2, mmPerPixelY: 0.1 }, source: 'ultrasound-region' };
    const { lesions } = extractLesions(ellipseMap(200, 200, [{ cx: 100, cy: 100, ax: 40, ay: 40 }]), 0, region, 200, 200, { threshold: 0.5, minAreaPixels: 1 });
    expect(lesions[0].longAxisMm!).toBeGreaterThan(15.5); // 80 px × 0.2 mm
    expect(lesions[0].shortAxisMm!).toBeLessThan(8.5); // 80 px × 0.1 mm
  });

  test('components below the minimum area are dropped; lesions are ordered by size', () => {
    const map = ellipseMap(300, 100, [
      { cx: 50, cy: 50, ax: 10, ay: 10 },
      { cx: 150, cy: 50, ax: 30, ay: 20 },
      { cx: 260, cy: 50, ax: 2, ay: 2 },
    ]);
    const { lesions } = extractLesions(map, 0, whole(300, 100, null), 300, 100, { threshold: 0.5, minAreaPixels: 50 });
    expect(lesions.map((l) => l.index)).toEqual([1, 2]);
    expect(lesions[0].areaPixels).toBeGreaterThan(lesions[1].areaPixels);
    expect(lesions[0].bbox.x0).toBeGreaterThan(100);
  });

  test('components much smaller than the largest are dropped when minRelativeArea is set', () => {
    const map = ellipseMap(300, 100, [
      { cx: 60, cy: 50, ax: 40, ay: 30 },
      { cx: 160, cy: 50, ax: 20, ay: 15 },
      { cx: 250, cy: 50, ax: 8, ay: 8 },
    ]);
    const all = extractLesions(map, 0, whole(300, 100, null), 300, 100, { threshold: 0.5, minAreaPixels: 10 });
    expect(all.lesions).toHaveLength(3);
    const big = extractLesions(map, 0, whole(300, 100, null), 300, 100, { threshold: 0.5, minAreaPixels: 10, minRelativeArea: 0.2 });
    expect(big.lesions).toHaveLength(2); // 20 × 15 is 25 % of 40 × 30; 8 × 8 is 5 %
    expect(big.mask.reduce((a, b) => a + b, 0)).toBe(big.lesions.reduce((a, l) => a + l.areaPixels, 0));
  });

  test('fillHoles: a hole becomes part of its lesion, so the mask, the area and the outline agree; a gap open to the edge does not', () => {
    const w = 120;
    const h = 80;
    // a ring (outer ellipse minus an inner one) and, beside it, a C open to the frame's right edge
    const map = ellipseMap(w, h, [{ cx: 40, cy: 40, ax: 30, ay: 25 }]);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        if (((x - 40) / 10) ** 2 + ((y - 40) / 8) ** 2 <= 1) map.probability[y * w + x] = 0.1;
        if (x >= 90 && y >= 20 && y < 60 && !(x >= 100 && y >= 30 && y < 50)) map.probability[y * w + x] = 0.9;
      }
    const opts = { threshold: 0.5, minAreaPixels: 1 };
    const open = extractLesions(map, 0, whole(w, h, null), w, h, opts);
    const filled = extractLesions(map, 0, whole(w, h, null), w, h, { ...opts, fillHoles: true });
    const ring = (r: typeof open) => r.lesions.find((l) => l.bbox.x0 < 60)!;
    const c = (r: typeof open) => r.lesions.find((l) => l.bbox.x0 >= 90)!;
    const hole = open.mask.length - open.mask.reduce((a, b) => a + b, 0) - (filled.mask.length - filled.mask.reduce((a, b) => a + b, 0));
    expect(hole).toBeGreaterThan(200);
    expect(ring(filled).areaPixels).toBe(ring(open).areaPixels + hole);
    // the outline encloses the hole either way; only with fillHoles does it enclose the area counted
    expect(polygonArea(ring(open).outline)).toBe(ring(filled).areaPixels);
    expect(polygonArea(ring(filled).outline)).toBe(ring(filled).areaPixels);
    // the C's gap reaches the frame's edge: not a hole
    expect(c(filled).areaPixels).toBe(c(open).areaPixels);
    expect(filled.mask.reduce((a, b) => a + b, 0)).toBe(filled.lesions.reduce((a, l) => a + l.areaPixels, 0));
  });

  test('fillHoles within the foreground\'s bounding box equals a flood fill of the whole frame (random blobs, touching edges too)', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let k = 0; k < 200; k++) {
      const w = 5 + Math.floor(rnd() * 40);
      const h = 5 + Math.floor(rnd() * 40);
      const density = rnd();
      const bin = new Uint8Array(w * h);
      const cx = rnd() * w;
      const cy = rnd() * h;
      const r = 2 + rnd() * 15;
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < r * r && rnd() < density + 0.3) bin[y * w + x] = 1;
      const whole = bin.slice();
      const outside = reachedFromEdge(w, h, (i) => !whole[i]);
      for (let i = 0; i < whole.length; i++) if (!outside[i]) whole[i] = 1;
      const boxed = bin.slice();
      fillHoles(boxed, w, h);
      expect(Buffer.from(boxed).equals(Buffer.from(whole))).toBe(true);
    }
  });

  test('nothing above threshold gives no lesion and an empty mask', () => {
    const p = ellipseMap(50, 50, []);
    const { lesions, mask } = extractLesions(p, 0, whole(50, 50, null), 50, 50, { threshold: 0.5, minAreaPixels: 1 });
    expect(lesions).toHaveLength(0);
    expect(mask.some((v) => v)).toBe(false);
  });
});

describe('outlines outside the scan sector', () => {
  // a 200 x 120 frame: black all round (the background, with a white "burned-in" text block on it
  // at the top left), a grey sector in the middle holding a black cyst (enclosed by tissue)
  const w = 200;
  const h = 120;
  const gray = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const inSector = x >= 60 && x < 190 && y >= 20 && y < 115;
      const cyst = ((x - 120) / 25) ** 2 + ((y - 65) / 18) ** 2 <= 1;
      const letter = x >= 8 && x < 50 && y >= 8 && y < 30 && (x + y) % 5 === 0; // strokes of text
      gray[y * w + x] = letter ? 255 : inSector && !cyst ? 90 + ((x * 7 + y * 13) % 40) : 0;
    }
  }
  const map = ellipseMap(w, h, [
    { cx: 29, cy: 19, ax: 20, ay: 10 }, // on the text block
    { cx: 120, cy: 65, ax: 25, ay: 18 }, // the cyst
  ]);
  const run = (maxBlackFraction?: number) => extractLesions(map, 0, whole(w, h, null), w, h, { threshold: 0.5, minAreaPixels: 10, maxBlackFraction, gray }).lesions;

  test('the background is the black joined to the edge; a cyst is black but enclosed, so it is not', () => {
    const bg = backgroundMask(gray, w, h);
    expect(bg[0]).toBe(1);
    expect(bg[65 * w + 120]).toBe(0); // the cyst's centre
    expect(bg[65 * w + 100]).toBe(0); // tissue
  });

  test('an outline mostly on the background (and its text) is dropped; the cyst is kept', () => {
    expect(run().map((l) => l.bbox.x0 < 60)).toEqual(expect.arrayContaining([true, false])); // both without the rule
    const kept = run(0.5);
    expect(kept).toHaveLength(1);
    expect(kept[0].bbox.x0).toBeGreaterThanOrEqual(90);
  });
});
