/**
 * model.json — the contract between training and every program that runs the model
 * (SPEC.md "The model contract"). Validated on load; the ONNX file's SHA-256 must match.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const modelSpecSchema = z.object({
  name: z.string().min(1),
  version: z.string().min(1),
  file: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  input: z.object({
    name: z.string().min(1),
    size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
    channels: z.literal(1),
    layout: z.literal('NCHW'),
    resize: z.enum(['stretch', 'letterbox']),
    scale: z.number(),
    mean: z.number(),
    std: z.number().positive(),
  }),
  outputs: z.object({
    mask: z.object({
      name: z.string(),
      activation: z.literal('sigmoid'),
      threshold: z.number().gt(0).lt(1),
      /** beyond SPEC: a frame whose softmax P(normal) is above this reports no lesion (chosen on val) */
      suppressWhenNormalAbove: z.number().gt(0).lt(1).optional(),
    }),
    class: z.object({ name: z.string(), activation: z.literal('softmax'), labels: z.array(z.string()).min(2) }),
    /**
     * beyond SPEC: one value per frame, the standard deviation of the ensemble's networks'
     * P(label); above lowAgreementAbove (chosen on val) the report says the networks disagree
     */
    spread: z
      .object({
        name: z.string(),
        label: z.string(),
        lowAgreementAbove: z.number().gt(0),
        /** above the cut, the graph's class logits are the most suspicious network's, not the average's (model/EXPERIMENTS.md, rule 30) */
        classFromMostSuspiciousNetwork: z.boolean().optional(),
      })
      .strict()
      .optional(),
  }),
  training: z.record(z.string(), z.unknown()).optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
});

export type ModelSpec = z.infer<typeof modelSpecSchema>;

export interface LoadedModel {
  spec: ModelSpec;
  onnxPath: string;
  specPath: string;
}

export class ModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelError';
  }
}

export function loadModelSpec(specPath: string, opts: { verifySha256?: boolean } = {}): LoadedModel {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  } catch (e) {
    throw new ModelError(`cannot read model description ${specPath}: ${(e as Error).message}`);
  }
  const r = modelSpecSchema.safeParse(raw);
  if (!r.success) {
    throw new ModelError(`${specPath}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const spec = r.data;
  if (spec.input.resize !== 'stretch') throw new ModelError(`${specPath}: input.resize "${spec.input.resize}" is not supported (stretch only)`);
  for (const l of ['normal', 'benign', 'malignant']) {
    if (!spec.outputs.class.labels.includes(l)) throw new ModelError(`${specPath}: outputs.class.labels must include "${l}"`);
  }
  if (spec.outputs.spread && !spec.outputs.class.labels.includes(spec.outputs.spread.label)) {
    throw new ModelError(`${specPath}: outputs.spread.label "${spec.outputs.spread.label}" is not one of outputs.class.labels`);
  }
  const onnxPath = path.resolve(path.dirname(specPath), spec.file);
  if (!fs.existsSync(onnxPath)) throw new ModelError(`${specPath} names ${spec.file}, which is missing`);
  if (opts.verifySha256 !== false) {
    const sha = crypto.createHash('sha256').update(fs.readFileSync(onnxPath)).digest('hex');
    if (sha !== spec.sha256) throw new ModelError(`${onnxPath}: sha256 ${sha} does not match model.json (${spec.sha256})`);
  }
  return { spec, onnxPath, specPath };
}
