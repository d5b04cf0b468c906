import { auc, binaryStats, bootstrapCi, diceIou, mean } from '../../src/evaluate/metrics';
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

  test('bootstrap interval is seeded and brackets the mean', () => {
    const v = Array.from({ length: 50 }, (_, i) => i / 50);
    const stat = (idx: number[]) => mean(idx.map((i) => v[i]));
    const a = bootstrapCi(v.length, stat, 500, 7);
    expect(bootstrapCi(v.length, stat, 500, 7)).toEqual(a);
    expect(a[0]).toBeLessThan(mean(v));
    expect(a[1]).toBeGreaterThan(mean(v));
  });

  test('perturbations change pixels as named, and bad specs are refused', () => {
    const g = Uint8Array.from([0, 100, 200, 255]);
    parsePerturbation('gain:0.5')(g);
    expect([...g]).toEqual([0, 50, 100, 128]);
    const h = Uint8Array.from([64, 128]);
    parsePerturbation('gamma:2')(h);
    expect([...h]).toEqual([16, 64]);
    expect(() => parsePerturbation('contrast:2')).toThrow(/expected gain/);
  });
});
