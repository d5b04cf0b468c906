/** `sonogate evaluate --data DIR [--split FILE] [--subset test]`: JSON metrics on stdout. */
import fs from 'node:fs';
import path from 'node:path';
import { Config } from '../config/schema';
import { loadModelSpec } from '../inference/modelSpec';
import { InferencePool } from '../inference/workerPool';
import { evaluateImages, readSplit } from '../evaluate/evaluate';
import { parsePerturbation } from '../evaluate/perturb';
import { analyzeOptions } from '../runtime';

function progressBar(done: number, total: number): void {
  if (!process.stderr.isTTY) return;
  const w = 30;
  const f = Math.round((done / total) * w);
  process.stderr.write(`\r[${'#'.repeat(f)}${'.'.repeat(w - f)}] ${done}/${total}${done === total ? '\n' : ''}`);
}

export interface EvaluateArgs {
  data: string;
  split?: string;
  subset: string;
  updateModelJson?: boolean;
  perturb?: string;
  /** write one JSON line per image (file, truth, prediction, probabilities, Dice) here */
  details?: string;
}

export async function runEvaluate(args: EvaluateArgs, config: Config): Promise<number> {
  const splitFile = args.split ?? path.join(args.data, 'split.csv');
  if (!fs.existsSync(splitFile)) {
    process.stderr.write(`sonogate evaluate: split file ${splitFile} not found\n`);
    return 2;
  }
  const rows = readSplit(splitFile).filter((r) => args.subset === 'all' || r.split === args.subset);
  if (!rows.length) {
    process.stderr.write(`sonogate evaluate: no rows with split "${args.subset}" in ${splitFile}\n`);
    return 2;
  }
  const perturb = args.perturb ? parsePerturbation(args.perturb) : undefined;
  const model = loadModelSpec(config.inference.model);
  const pool = await InferencePool.start({ specPath: model.specPath, providers: config.inference.providers }, 1);
  try {
    const options = analyzeOptions(config, model);
    const { perImage, ...metrics } = await evaluateImages(args.data, rows, pool, options, progressBar, perturb);
    if (args.details) fs.writeFileSync(args.details, perImage.map((p) => JSON.stringify(p)).join('\n') + '\n');
    const result = {
      model: `${model.spec.name} ${model.spec.version}`,
      provider: pool.provider,
      subset: args.subset,
      perturb: args.perturb ?? null,
      threshold: model.spec.outputs.mask.threshold,
      suppress_when_normal_above: model.spec.outputs.mask.suppressWhenNormalAbove ?? null,
      // the gateway's own outline rules from the config (not in model.json): they change the scores
      postprocessing: {
        minLesionAreaPixels: options.minLesionAreaPixels,
        minRelativeLesionArea: options.minRelativeLesionArea,
        maxBlackLesionFraction: options.maxBlackLesionFraction ?? 1,
        fillLesionHoles: options.fillLesionHoles,
        suppressLesionsWhenNormal: options.suppressLesionsWhenNormal,
      },
      ...metrics,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    if (args.updateModelJson) {
      const spec = JSON.parse(fs.readFileSync(model.specPath, 'utf8'));
      spec.metrics = spec.metrics ?? {};
      spec.metrics[args.subset] = {
        dice: metrics.dice, iou: metrics.iou, auc_malignant: metrics.auc_malignant, f1_malignant: metrics.f1_malignant,
        dice_ci95: metrics.dice_ci95, auc_malignant_ci95: metrics.auc_malignant_ci95, mean_iou_keras: metrics.mean_iou_keras,
        pixel_f1: metrics.pixel_f1, f1_benign: metrics.f1_benign, sensitivity_malignant: metrics.sensitivity_malignant,
        specificity_malignant: metrics.specificity_malignant, accuracy_3class: metrics.accuracy_3class,
        normal_with_false_lesion: metrics.normal_with_false_lesion, brier_malignant: metrics.brier_malignant,
        ece_malignant: metrics.ece_malignant, log_loss_3class: metrics.log_loss_3class, n: metrics.n,
      };
      spec.metrics[`${args.subset}_scorer`] = 'sonogate evaluate (gateway code path)';
      fs.writeFileSync(model.specPath, JSON.stringify(spec, null, 2) + '\n');
    }
  } finally {
    await pool.close();
  }
  return 0;
}
