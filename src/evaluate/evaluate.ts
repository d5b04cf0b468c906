/**
 * `sonogate evaluate`: scores the model on a folder in the BUSI layout through the gateway's own
 * code path — the same preprocessing, inference worker, upsampling and postprocessing
 * (threshold, minimum area, normal suppression) as a study coming in over DICOM. Masks are
 * compared at each image's original resolution.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AnalyzeOptions, analyzeDecoded, FramePredictor } from '../pipeline/analyzeInstance';
import { DecodedInstance, Label } from '../types/domain';
import { readGrayImage, readMask } from './images';
import { auc, binaryStats, bootstrapCi, brier, calibration, diceIou, logLoss, mean } from './metrics';
import { Perturbation } from './perturb';

export interface SplitRow {
  file: string;
  class: Label;
  split: string;
  masks: string[];
}

export function readSplit(file: string): SplitRow[] {
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/).filter((l) => l.trim());
  const header = lines[0].split(',');
  const col = (n: string) => {
    const i = header.indexOf(n);
    if (i < 0) throw new Error(`${file}: no "${n}" column`);
    return i;
  };
  const [fi, ci, si, mi] = [col('file'), col('class'), col('split'), col('masks')];
  return lines.slice(1).map((l) => {
    const c = l.split(',');
    return { file: c[fi], class: c[ci] as Label, split: c[si], masks: c[mi] ? c[mi].split('|').filter(Boolean) : [] };
  });
}

export interface PerImage {
  file: string;
  truth: Label;
  predicted: Label;
  probabilities: Record<Label, number>;
  dice: number | null;
  iou: number | null;
  lesionPixels: number;
  /** the networks' spread of P(malignant) and whether it is above the model's cut (outputs.spread) */
  spread?: number;
  lowAgreement?: boolean;
  ms: number;
}

export async function evaluateImages(
  dataDir: string,
  rows: SplitRow[],
  predictor: FramePredictor,
  opts: AnalyzeOptions,
  progress?: (done: number, total: number) => void,
  perturb?: Perturbation,
) {
  const per: PerImage[] = [];
  let tpAll = 0;
  let fpAll = 0;
  let fnAll = 0;
  let tnAll = 0;
  for (const row of rows) {
    let t0 = performance.now();
    let img = await readGrayImage(path.join(dataDir, row.file));
    if (perturb) {
      const tp = performance.now();
      img = await perturb.image(img);
      t0 += performance.now() - tp; // the time per image is the gateway's, not the perturbation's
    }
    const decoded: DecodedInstance = {
      sopInstanceUid: row.file,
      sopClassUid: '',
      rows: img.height,
      columns: img.width,
      frames: [img],
      region: { rect: { x0: 0, y0: 0, x1: img.width, y1: img.height }, calibration: null, source: 'whole-frame' },
    };
    const r = await analyzeDecoded(decoded, predictor, opts);
    const ms = performance.now() - t0;
    let truth: Uint8Array = new Uint8Array(img.width * img.height);
    for (const m of row.masks) {
      const mk = await readMask(path.join(dataDir, path.dirname(row.file), m));
      if (mk.width !== img.width || mk.height !== img.height) throw new Error(`${m}: mask size differs from its image`);
      for (let i = 0; i < truth.length; i++) truth[i] |= mk.data[i];
    }
    if (perturb) truth = (await perturb.mask({ width: img.width, height: img.height, data: truth })).data;
    const s = diceIou(r.masks.frame(0), truth);
    tpAll += s.tp;
    fpAll += s.fp;
    fnAll += s.fn;
    tnAll += truth.length - s.tp - s.fp - s.fn;
    per.push({
      file: row.file,
      truth: row.class,
      predicted: r.label,
      probabilities: r.classProbabilities,
      dice: row.class === 'normal' ? null : s.dice,
      iou: row.class === 'normal' ? null : s.iou,
      lesionPixels: s.tp + s.fp,
      ...(r.agreement ? { spread: r.agreement.spread, lowAgreement: r.agreement.low } : {}),
      ms,
    });
    progress?.(per.length, rows.length);
  }
  return { ...summarize(per, { tp: tpAll, fp: fpAll, fn: fnAll, tn: tnAll }), perImage: per };
}

export function summarize(per: PerImage[], px: { tp: number; fp: number; fn: number; tn: number }) {
  const lesion = per.filter((p) => p.truth !== 'normal');
  const normals = per.filter((p) => p.truth === 'normal');
  const isMal = per.map((p) => p.truth === 'malignant');
  const pMal = per.map((p) => p.probabilities.malignant);
  const mal = binaryStats(isMal, per.map((p) => p.predicted === 'malignant'));
  const ben = binaryStats(per.map((p) => p.truth === 'benign'), per.map((p) => p.predicted === 'benign'));
  const iouLesionPx = px.tp / (px.tp + px.fp + px.fn);
  const iouBackgroundPx = px.tn / (px.tn + px.fp + px.fn);
  const dices = lesion.map((p) => p.dice!);
  const reliability = calibration(isMal, pMal);
  return {
    n: per.length,
    n_lesion: lesion.length,
    n_normal: normals.length,
    dice: mean(dices),
    dice_ci95: bootstrapCi(dices.length, (idx) => mean(idx.map((i) => dices[i]))),
    iou: mean(lesion.map((p) => p.iou!)),
    iou_ci95: bootstrapCi(lesion.length, (idx) => mean(idx.map((i) => lesion[i].iou!)), 1000, 4),
    pixel_f1: (2 * px.tp) / (2 * px.tp + px.fp + px.fn),
    mean_iou_keras: (iouLesionPx + iouBackgroundPx) / 2,
    // over every image, normal ones among the negatives (score: P(malignant)); the same on lesion
    // images only (benign against malignant) follows, for a scorer that reads it that way
    auc_malignant: auc(isMal, pMal),
    auc_malignant_ci95: bootstrapCi(per.length, (idx) => auc(idx.map((i) => isMal[i]), idx.map((i) => pMal[i])), 1000, 2),
    auc_malignant_vs_benign: auc(lesion.map((p) => p.truth === 'malignant'), lesion.map((p) => p.probabilities.malignant)),
    // a normal image called malignant is a false positive here; lesion images only just after
    f1_malignant: mal.f1,
    // how far the F1 could move with another draw of test images of the same kind
    f1_malignant_ci95: bootstrapCi(per.length, (idx) => binaryStats(idx.map((i) => isMal[i]), idx.map((i) => per[i].predicted === 'malignant')).f1, 1000, 3),
    f1_malignant_lesion_images: binaryStats(lesion.map((p) => p.truth === 'malignant'), lesion.map((p) => p.predicted === 'malignant')).f1,
    f1_benign: ben.f1,
    sensitivity_malignant: mal.sensitivity,
    specificity_malignant: mal.specificity,
    accuracy_3class: mean(per.map((p) => (p.predicted === p.truth ? 1 : 0))),
    // whether the probabilities the report shows can be read as such (reliability of P(malignant))
    brier_malignant: brier(isMal, pMal),
    ece_malignant: reliability.ece,
    log_loss_3class: logLoss(per.map((p) => p.probabilities[p.truth])),
    reliability_malignant: reliability.bins,
    normal_with_false_lesion: normals.length ? mean(normals.map((p) => (p.lesionPixels > 0 ? 1 : 0))) : NaN,
    low_agreement: agreementSummary(per),
    ms_per_image: mean(per.map((p) => p.ms)),
  };
}

/**
 * Whether the "networks disagree" flag marks the wrong malignant calls (model/EXPERIMENTS.md, rule 29): a call
 * is wrong when "malignant" and the truth disagree. Null for a model without outputs.spread.
 */
export function agreementSummary(per: PerImage[]) {
  if (!per.length || per.some((p) => p.spread === undefined)) return null;
  const wrong = per.map((p) => (p.predicted === 'malignant') !== (p.truth === 'malignant'));
  const flagged = per.map((p) => p.lowAgreement === true);
  const rate = (sel: boolean) => {
    const idx = per.map((_, i) => i).filter((i) => flagged[i] === sel);
    return idx.length ? mean(idx.map((i) => (wrong[i] ? 1 : 0))) : null;
  };
  return {
    flagged: flagged.filter(Boolean).length,
    flagged_share: mean(flagged.map((f) => (f ? 1 : 0))),
    wrong_calls: wrong.filter(Boolean).length,
    wrong_calls_flagged: wrong.filter((w, i) => w && flagged[i]).length,
    wrong_rate_flagged: rate(true),
    wrong_rate_not_flagged: rate(false),
    // how well the spread itself ranks the wrong calls above the right ones (any cut)
    auroc_spread_for_wrong: auc(wrong, per.map((p) => p.spread!)),
  };
}

export type EvaluationSummary = ReturnType<typeof summarize>;
