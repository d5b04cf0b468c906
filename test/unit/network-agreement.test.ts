/**
 * The networks' agreement (model/EXPERIMENTS.md, rule 29): model.json's outputs.spread names a graph output,
 * the spread of the ensemble's P(malignant) per frame, and a cut above which the report says the
 * networks disagree. Here: the contract's validation, the reported frame's spread becoming the
 * result's agreement, and evaluate's summary of the flag. The shipped graph's own class_spread is
 * held to PyTorch's in onnx-parity.test.ts; the report texts in the report tests.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agreementSummary, PerImage } from '../../src/evaluate/evaluate';
import { loadModelSpec } from '../../src/inference/modelSpec';
import { analyzeDecoded, AnalyzeOptions, FramePredictor } from '../../src/pipeline/analyzeInstance';
import { PipelineOptions, processInstanceFile } from '../../src/pipeline/processStudy';
import { FramePrediction } from '../../src/types/domain';
import { blankDecoded } from '../helpers/blankDecoded';
import { tempDir, writeTemp } from '../helpers/gatewayHarness';
import { phantomFile } from '../helpers/phantom';
import { phantomPipelineOptions, phantomPredictor } from '../helpers/phantomPredictor';

const W = 40;
const H = 30;

/** frames with the given P(malignant) and spread each, no lesion */
function predictor(frames: { pm: number; spread?: number }[]): FramePredictor {
  let next = 0;
  return {
    predict: async (batch) => {
      const predictions: FramePrediction[] = frames.slice(next, next + batch.length).map(({ pm, spread }) => ({
        probability: new Float32Array(W * H),
        width: W,
        height: H,
        classProbabilities: [(1 - pm) / 2, (1 - pm) / 2, pm],
        classSpread: spread,
      }));
      next += batch.length;
      return { predictions, timings: { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 } };
    },
  };
}

const decoded = (frames: number) => blankDecoded(frames, W, H);

const opts: AnalyzeOptions = {
  labels: ['normal', 'benign', 'malignant'],
  threshold: 0.5,
  minLesionAreaPixels: 1,
  minRelativeLesionArea: 0,
  fillLesionHoles: true,
  batchSize: 2,
  suppressLesionsWhenNormal: false,
  lowAgreementAbove: 0.0667,
};

describe("the networks' agreement", () => {
  test('is the reported frame\'s spread against the cut, strictly above it counting as low', async () => {
    // a cine: frame 2 is the most suspicious, so its spread is the one reported, not frame 1's larger one
    const r = await analyzeDecoded(decoded(3), predictor([{ pm: 0.2, spread: 0.3 }, { pm: 0.7, spread: 0.05 }, { pm: 0.1, spread: 0.2 }]), opts);
    expect(r.reportedFrameIndex).toBe(1);
    expect(r.agreement).toEqual({ spread: 0.05, lowAbove: 0.0667, low: false });
    const edge = await analyzeDecoded(decoded(1), predictor([{ pm: 0.3, spread: 0.0667 }]), opts);
    expect(edge.agreement?.low).toBe(false);
    const low = await analyzeDecoded(decoded(1), predictor([{ pm: 0.3, spread: 0.0668 }]), opts);
    expect(low.agreement).toEqual({ spread: 0.0668, lowAbove: 0.0667, low: true });
    // a graph that calls with its most suspicious network where they disagree: said where low only
    const most = { ...opts, classFromMostSuspiciousNetwork: true };
    expect((await analyzeDecoded(decoded(1), predictor([{ pm: 0.3, spread: 0.0668 }]), most)).agreement?.fromMostSuspicious).toBe(true);
    expect((await analyzeDecoded(decoded(1), predictor([{ pm: 0.3, spread: 0.05 }]), most)).agreement).toEqual({ spread: 0.05, lowAbove: 0.0667, low: false });
  });

  test('a model without outputs.spread reports none (and the result has no agreement key)', async () => {
    const r = await analyzeDecoded(decoded(1), predictor([{ pm: 0.3 }]), { ...opts, lowAgreementAbove: undefined });
    expect('agreement' in r).toBe(false);
    const noSpread = await analyzeDecoded(decoded(1), predictor([{ pm: 0.3 }]), opts);
    expect(noSpread.agreement).toBeUndefined();
  });

  test("an instance's outcome carries it to the store and the dashboard; without the output it carries nothing", async () => {
    const dir = tempDir('agreement-outcome');
    try {
      const file = writeTemp(dir, 'us.dcm', phantomFile({ seed: 3 }));
      const pipeline: PipelineOptions = { ...phantomPipelineOptions({ seg: false, sr: false, overlay: false }), lowAgreementAbove: 0.0667 };
      const run = (spread: { classSpread?: number }, o = pipeline) => processInstanceFile(file, dir, phantomPredictor(251, 333, [0], spread), o);
      expect((await run({ classSpread: 0.3 })).outcome).toMatchObject({ status: 'analysed', networkSpread: 0.3, lowAgreement: true });
      expect((await run({ classSpread: 0.05 })).outcome).toMatchObject({ status: 'analysed', networkSpread: 0.05, lowAgreement: false });
      const none = (await run({}, { ...pipeline, lowAgreementAbove: undefined })).outcome;
      expect(['networkSpread' in none, 'lowAgreement' in none]).toEqual([false, false]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('model.json: outputs.spread must name one of the class labels and a positive cut', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-spread-'));
    try {
      const fixture = path.resolve(__dirname, '..', 'fixtures', 'tiny-model');
      const spec = JSON.parse(fs.readFileSync(path.join(fixture, 'model.json'), 'utf8'));
      fs.copyFileSync(path.join(fixture, spec.file), path.join(dir, spec.file));
      const write = (spread: unknown) => {
        fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({ ...spec, outputs: { ...spec.outputs, spread } }));
        return () => loadModelSpec(path.join(dir, 'model.json'));
      };
      expect(write({ name: 'class_spread', label: 'malignant', lowAgreementAbove: 0.07 })().spec.outputs.spread?.lowAgreementAbove).toBe(0.07);
      expect(write({ name: 'class_spread', label: 'cancer', lowAgreementAbove: 0.07 })).toThrow(/outputs.spread.label "cancer" is not one of outputs.class.labels/);
      expect(write({ name: 'class_spread', label: 'malignant', lowAgreementAbove: 0 })).toThrow(/outputs.spread.lowAgreementAbove/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("evaluate's summary: how many calls are flagged, and how often the flagged and the others are wrong", () => {
    const img = (truth: PerImage['truth'], predicted: PerImage['predicted'], spread: number): PerImage => ({
      file: `${truth}-${predicted}-${spread}`,
      truth,
      predicted,
      probabilities: { normal: 0, benign: 0, malignant: 0 },
      dice: null,
      iou: null,
      lesionPixels: 0,
      spread,
      lowAgreement: spread > 0.1,
      ms: 1,
    });
    const per = [
      img('malignant', 'benign', 0.3), // wrong, flagged
      img('benign', 'benign', 0.2), // right, flagged
      img('benign', 'malignant', 0.01), // wrong, not flagged
      img('normal', 'normal', 0.02),
      img('malignant', 'malignant', 0.03),
    ];
    expect(agreementSummary(per)).toEqual({
      flagged: 2,
      flagged_share: 0.4,
      wrong_calls: 2,
      wrong_calls_flagged: 1,
      wrong_rate_flagged: 0.5,
      wrong_rate_not_flagged: 1 / 3,
      auroc_spread_for_wrong: 0.5,
    });
    expect(agreementSummary(per.map(({ spread: _s, lowAgreement: _l, ...p }) => p))).toBeNull();
  });
});
