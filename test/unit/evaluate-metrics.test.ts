import { auc, binaryStats, bootstrapCi, brier, calibration, diceIou, logLoss, mean } from '../../src/evaluate/metrics';
import { parsePerturbation } from '../../src/evaluate/perturb';

describe('evaluation metrics', () => {
  test('Dice and IoU of overlapping masks', () => {
    const p = Uint8Array.from([1, 1, 1, 0, 0, 0]);
    const t = Uint8Array.from([0, 1, 1, 1, 0, 0]);
    const r = diceIou(p, t);
    expect(r.dice).toBeCloseTo(4 / 6);
    expect(r.iou).toBeCloseTo(2 / 4);
    expect(diceIou(new Uint8Array(4), new Uint8Array(4)).dice).toBe(1); // both empty: perfect
  });

  test('AUC: perfect, reversed, ties and one class only', () => {
    expect(auc([true, true, false, false], [0.9, 0.8, 0.2, 0.1])).toBe(1);
    expect(auc([true, true, false, false], [0.1, 0.2, 0.8, 0.9])).toBe(0);
    expect(auc([true, false], [0.5, 0.5])).toBe(0.5);
    expect(auc([true, false, true, false], [0.9, 0.7, 0.6, 0.1])).toBeCloseTo(0.75);
    expect(auc([true, true], [0.1, 0.2])).toBeNaN();
  });

  test('F1, sensitivity and specificity', () => {
    const s = binaryStats([true, true, false, false, false], [true, false, true, false, false]);
    expect(s).toMatchObject({ tp: 1, fn: 1, fp: 1, tn: 2 });
    expect(s.f1).toBeCloseTo(0.5);
    expect(s.sensitivity).toBeCloseTo(0.5);
    expect(s.specificity).toBeCloseTo(2 / 3);
  });

  test('calibration: Brier score, reliability bins and their expected error, log-loss', () => {
    expect(brier([true, false], [1, 0])).toBe(0);
    expect(brier([true, false], [0.5, 0.5])).toBeCloseTo(0.25);
    // five images at P 0.05 of which one is positive (observed 0.2), two at P 0.95 both positive, P 1 in the last bin
    const pos = [true, false, false, false, false, true, true, true];
    const p = [0.05, 0.05, 0.05, 0.05, 0.05, 0.95, 0.95, 1];
    const c = calibration(pos, p);
    expect(c.bins.map((b) => [b.from, b.n])).toEqual([[0, 5], [0.9, 3]]);
    expect(c.bins[0].predicted).toBeCloseTo(0.05);
    expect(c.bins[0].observed).toBeCloseTo(0.2);
    expect(c.bins[1].predicted).toBeCloseTo((0.95 + 0.95 + 1) / 3);
    expect(c.ece).toBeCloseTo((5 / 8) * 0.15 + (3 / 8) * (1 - 2.9 / 3));
    expect(calibration([true, false], [1, 0]).ece).toBe(0);
    expect(logLoss([1, Math.exp(-2)])).toBeCloseTo(1);
    expect(Number.isFinite(logLoss([0]))).toBe(true); // a confident miss is large, not infinite
  });

  test('bootstrap interval is seeded and brackets the mean', () => {
    const v = Array.from({ length: 50 }, (_, i) => i / 50);
    const stat = (idx: number[]) => mean(idx.map((i) => v[i]));
    const a = bootstrapCi(v.length, stat, 500, 7);
    expect(bootstrapCi(v.length, stat, 500, 7)).toEqual(a);
    expect(a[0]).toBeLessThan(mean(v));
    expect(a[1]).toBeGreaterThan(mean(v));
  });

  test('perturbations change pixels as named, and bad specs are refused', async () => {
    const frame = (data: number[], width = data.length, height = 1) => ({ width, height, data: Uint8Array.from(data) });
    expect([...(await parsePerturbation('gain:0.5').image(frame([0, 100, 200, 255]))).data]).toEqual([0, 50, 100, 128]);
    expect([...(await parsePerturbation('gamma:2').image(frame([64, 128]))).data]).toEqual([16, 64]);
    // appearance changes leave the truth mask where it is
    expect([...(await parsePerturbation('gain:0.5').mask(frame([0, 1, 1, 0]))).data]).toEqual([0, 1, 1, 0]);
    expect(() => parsePerturbation('contrast:2')).toThrow(/expected gain/);
    expect(() => parsePerturbation('zoom:0.1')).toThrow(/zoom must be between/);
  });

  test('zoom scales the picture and its mask about the centre, keeping the frame size', async () => {
    // a 40x20 frame with a 20x10 lesion in the middle (rows 5-14, columns 10-29)
    const w = 40;
    const h = 20;
    const square = () => {
      const d = new Uint8Array(w * h);
      for (let y = 5; y < 15; y++) d.fill(1, y * w + 10, y * w + 30);
      return { width: w, height: h, data: d };
    };
    const at = (f: { data: Uint8Array }, x: number, y: number) => f.data[y * w + x];
    const area = (f: { data: Uint8Array }) => f.data.reduce((s, v) => s + v, 0);

    const half = await parsePerturbation('zoom:0.5').mask(square());
    expect([half.width, half.height]).toEqual([w, h]);
    expect(area(half)).toBe(50); // a quarter of 200
    expect(at(half, 20, 10)).toBe(1); // still centred
    expect(at(half, 12, 6)).toBe(0); // the old corner is now background
    const twice = await parsePerturbation('zoom:2').mask(square());
    expect(area(twice)).toBe(w * h); // the lesion fills the cropped centre

    // the picture: shrunk inside a black border
    const pic = square();
    pic.data.forEach((v, i) => (pic.data[i] = v ? 200 : 100));
    const small = await parsePerturbation('zoom:0.5').image(pic);
    expect(at(small, 0, 0)).toBe(0);
    expect(at(small, 20, 10)).toBe(200);
    expect(at(small, 12, 6)).toBe(100);
  });
});

describe('which images each class metric counts', () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { summarize } = require('../../src/evaluate/evaluate');
  const image = (truth: string, pMal: number, predicted: string) => ({
    file: `${truth}-${pMal}`,
    truth,
    predicted,
    probabilities: { normal: truth === 'normal' ? 1 - pMal : 0, benign: truth === 'normal' ? 0 : 1 - pMal, malignant: pMal },
    dice: truth === 'normal' ? null : 0.8,
    iou: truth === 'normal' ? null : 0.7,
    lesionPixels: 10,
    ms: 1,
  });
  test('AUC and F1 over every image (a normal image called malignant is a false positive), and over lesion images only', () => {
    const per = [image('malignant', 0.9, 'malignant'), image('malignant', 0.4, 'benign'), image('benign', 0.3, 'benign'), image('benign', 0.5, 'malignant'), image('normal', 0.95, 'malignant'), image('normal', 0.1, 'normal')];
    const m = summarize(per, { tp: 1, fp: 0, fn: 0, tn: 1 });
    // malignant 0.9 and 0.4 against benign 0.3, 0.5 and normal 0.95, 0.1: 5 of 8 pairs ordered right
    expect(m.auc_malignant).toBeCloseTo(5 / 8);
    // against benign only: 0.9 > both, 0.4 > 0.3 only: 3 of 4
    expect(m.auc_malignant_vs_benign).toBeCloseTo(3 / 4);
    // tp 1, fp 2 (a benign and a normal image), fn 1 / without the normal image: fp 1
    expect(m.f1_malignant).toBeCloseTo(2 / 5);
    expect(m.f1_malignant_lesion_images).toBeCloseTo(2 / 4);
  });
  test('the F1 interval holds the F1 and is narrower for more images of the same mix', () => {
    const mix = [image('malignant', 0.9, 'malignant'), image('malignant', 0.4, 'benign'), image('benign', 0.3, 'benign'), image('benign', 0.5, 'malignant'), image('benign', 0.2, 'benign'), image('normal', 0.1, 'normal')];
    const few = summarize(mix, { tp: 1, fp: 0, fn: 0, tn: 1 });
    const many = summarize(Array.from({ length: 20 }, () => mix).flat(), { tp: 1, fp: 0, fn: 0, tn: 1 });
    expect(many.f1_malignant).toBeCloseTo(few.f1_malignant);
    for (const m of [few, many]) {
      expect(m.f1_malignant_ci95[0]).toBeLessThanOrEqual(m.f1_malignant);
      expect(m.f1_malignant_ci95[1]).toBeGreaterThanOrEqual(m.f1_malignant);
      expect(m.iou_ci95[0]).toBeLessThanOrEqual(m.iou);
    }
    const width = (m: { f1_malignant_ci95: [number, number] }) => m.f1_malignant_ci95[1] - m.f1_malignant_ci95[0];
    expect(width(many)).toBeLessThan(width(few) / 2);
    expect(width(many)).toBeGreaterThan(0);
  });
});
