/**
 * `sonogate evaluate` end to end on a small folder in the BUSI layout that the test writes itself
 * (phantom images + ellipse masks), scored with the deterministic dark-region fixture model.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { tempDir } from '../helpers/gatewayHarness';
import { phantomLesion, phantomPixels, phantomRegion } from '../helpers/phantom';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const MODEL = path.join(ROOT, 'test', 'fixtures', 'dark-lesion-model', 'model.json');

(fs.existsSync(CLI) ? describe : describe.skip)('sonogate evaluate', () => {
  let data: string;
  beforeAll(async () => {
    data = tempDir('busi');
    const rows = ['file,class,split,masks'];
    const W = 333;
    const H = 251;
    for (const [cls, n, lesion] of [['benign', 3, true], ['normal', 2, false]] as const) {
      fs.mkdirSync(path.join(data, cls), { recursive: true });
      for (let i = 1; i <= n; i++) {
        const [px] = phantomPixels({ rows: H, columns: W, seed: i * 7 + (lesion ? 0 : 100), lesion });
        const name = `${cls} (${i}).png`;
        // BUSI images are the ultrasound picture alone: crop the phantom to its ultrasound region
        const r = phantomRegion(H, W);
        const crop = { left: r.x0, top: r.y0, width: r.x1 - r.x0, height: r.y1 - r.y0 };
        await sharp(Buffer.from(px), { raw: { width: W, height: H, channels: 1 } }).extract(crop).png().toFile(path.join(data, cls, name));
        const mask = Buffer.alloc(W * H);
        if (lesion) {
          const e = phantomLesion(H, W);
          for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (((x - e.cx) / e.ax) ** 2 + ((y - e.cy) / e.ay) ** 2 < 1) mask[y * W + x] = 255;
        }
        const maskName = `${cls} (${i})_mask.png`;
        await sharp(mask, { raw: { width: W, height: H, channels: 1 } }).extract(crop).png().toFile(path.join(data, cls, maskName));
        rows.push(`${cls}/${name},${cls},test,${maskName}`);
      }
    }
    fs.writeFileSync(path.join(data, 'split.csv'), rows.join('\n') + '\n');
  });

  test('prints the metrics as JSON, scored through the gateway code path', () => {
    const details = path.join(data, 'details.jsonl');
    const r = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--subset', 'test', '--model', MODEL, '--details', details], { encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.status).toBe(0);
    const m = JSON.parse(r.stdout);
    expect(m).toMatchObject({ n: 5, n_lesion: 3, n_normal: 2, subset: 'test', model: 'dark-lesion-fixture 0.0.1' });
    // the config's outline rules, which model.json does not carry, are stated with the scores
    expect(m.postprocessing).toEqual({ minLesionAreaPixels: 100, minRelativeLesionArea: 0, maxBlackLesionFraction: 0.5, fillLesionHoles: true, suppressLesionsWhenNormal: false });
    expect(m).toHaveProperty('auc_malignant_vs_benign');
    expect(m).toHaveProperty('f1_malignant_lesion_images');
    for (const k of ['dice', 'iou', 'pixel_f1', 'mean_iou_keras', 'auc_malignant', 'f1_malignant', 'f1_benign', 'sensitivity_malignant', 'specificity_malignant', 'accuracy_3class', 'normal_with_false_lesion', 'ms_per_image', 'brier_malignant', 'ece_malignant', 'log_loss_3class']) {
      expect(m).toHaveProperty(k);
    }
    expect(m.dice).toBeGreaterThan(0.7); // the fixture finds the phantom's dark ellipse
    expect(m.dice_ci95[0]).toBeLessThanOrEqual(m.dice);
    expect(m.normal_with_false_lesion).toBe(0);
    expect(m.accuracy_3class).toBe(1);
    // the reliability table covers every image once, and the Brier score matches the per-image probabilities
    expect(m.reliability_malignant.reduce((n: number, b: { n: number }) => n + b.n, 0)).toBe(5);
    const per = fs.readFileSync(details, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(per).toHaveLength(5);
    expect(per.filter((p) => p.truth === 'normal').every((p) => p.dice === null && p.lesionPixels === 0)).toBe(true);
    const brier = per.reduce((s, p) => s + (p.probabilities.malignant - (p.truth === 'malignant' ? 1 : 0)) ** 2, 0) / per.length;
    expect(m.brier_malignant).toBeCloseTo(brier, 10);
    // the fixture has no outputs.spread: no agreement flag to summarise
    expect(m.low_agreement).toBeNull();
    expect(per.every((p) => p.spread === undefined)).toBe(true);
  }, 120_000);

  test("the shipped model's networks' spread comes through the inference worker: per image, and summarised as the flag", () => {
    const shipped = path.join(ROOT, 'model', 'model.json');
    const cut = JSON.parse(fs.readFileSync(shipped, 'utf8')).outputs.spread.lowAgreementAbove;
    const details = path.join(data, 'details-shipped.jsonl');
    const r = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--subset', 'test', '--model', shipped, '--details', details], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const m = JSON.parse(r.stdout);
    const per = fs.readFileSync(details, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(per).toHaveLength(5);
    for (const p of per) {
      expect(p.spread).toBeGreaterThanOrEqual(0);
      expect(p.spread).toBeLessThanOrEqual(0.5); // a standard deviation of probabilities
      expect(p.lowAgreement).toBe(p.spread > cut);
    }
    expect(new Set(per.map((p) => p.spread)).size).toBeGreaterThan(1); // not a constant
    expect(m.low_agreement.flagged).toBe(per.filter((p) => p.lowAgreement).length);
  }, 120_000);

  test('--update-model-json writes the scores, calibration included, into that model.json under the subset', () => {
    const copy = tempDir('model');
    for (const f of fs.readdirSync(path.dirname(MODEL))) fs.copyFileSync(path.join(path.dirname(MODEL), f), path.join(copy, f));
    const r = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--subset', 'test', '--model', path.join(copy, 'model.json'), '--update-model-json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const printed = JSON.parse(r.stdout);
    const written = JSON.parse(fs.readFileSync(path.join(copy, 'model.json'), 'utf8'));
    expect(written.metrics.test_scorer).toBe('sonogate evaluate (gateway code path)');
    for (const k of ['dice', 'iou', 'auc_malignant', 'f1_malignant', 'normal_with_false_lesion', 'brier_malignant', 'ece_malignant', 'log_loss_3class', 'n']) {
      expect(written.metrics.test[k]).toEqual(printed[k]);
    }
    expect(written.sha256).toBe(JSON.parse(fs.readFileSync(MODEL, 'utf8')).sha256); // the rest of the file as it was
  }, 120_000);

  test('--perturb is applied and reported, and a bad one is a usage error', () => {
    const ok = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--model', MODEL, '--perturb', 'gain:0.9'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout).perturb).toBe('gain:0.9');
    // a geometric one moves the truth masks with the pictures: the lesions stay found (1.25: a crop, so no black border for the fixture's dark-pixel model to call lesion)
    const zoomed = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--model', MODEL, '--perturb', 'zoom:1.25'], { encoding: 'utf8' });
    expect(zoomed.status).toBe(0);
    const z = JSON.parse(zoomed.stdout);
    expect(z.perturb).toBe('zoom:1.25');
    expect(z.dice).toBeGreaterThan(0.89); // 0.909 here; 0.868 if the masks stayed unscaled
    const bad = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--model', MODEL, '--perturb', 'sharpen:2'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/perturb/);
  }, 120_000);

  test("model.json's suppressWhenNormalAbove drops the outline of images the class head calls normal", () => {
    const spec = JSON.parse(fs.readFileSync(MODEL, 'utf8'));
    const run = (bound: number, details?: string) => {
      const dir = tempDir('bound');
      const file = path.join(dir, 'model.json');
      const mask = { ...spec.outputs.mask, suppressWhenNormalAbove: bound };
      fs.writeFileSync(file, JSON.stringify({ ...spec, file: path.resolve(path.dirname(MODEL), spec.file), outputs: { ...spec.outputs, mask } }));
      const r = spawnSync(process.execPath, [CLI, 'evaluate', '--data', data, '--model', file, ...(details ? ['--details', details] : [])], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout);
    };
    const details = path.join(tempDir('bound'), 'details.jsonl');
    const high = run(0.99, details);
    expect(high.suppress_when_normal_above).toBe(0.99);
    expect(high.dice).toBeGreaterThan(0.7); // the fixture's lesion images are sure they are not normal
    const pNormal = fs.readFileSync(details, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((p) => p.truth !== 'normal').map((p) => p.probabilities.normal);
    // a bound below every lesion image's P(normal) drops every outline; the class stays as it was
    const low = run(Math.min(...pNormal) / 2);
    expect(low.dice).toBe(0);
    expect(low.accuracy_3class).toBe(1);
  }, 120_000);

  test('a missing split file is a usage error', () => {
    const r = spawnSync(process.execPath, [CLI, 'evaluate', '--data', path.join(data, 'nowhere'), '--model', MODEL], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/split file/);
  });
});
