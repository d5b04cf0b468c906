/**
 * onnxruntime-node must give PyTorch's numbers (≤ 1e-4) for the same input: the reference
 * outputs were computed by PyTorch at export time (training/reference.py) for a deterministic
 * input pattern regenerated here with the same formula (test/helpers/onnxParity.ts). Where the
 * model adds lesion descriptors to its class logits (training/descriptors.py), the reference holds
 * the descriptor branch's log-odds, and the test requires the pattern's blob to have switched that
 * branch on. Where it reports its networks' spread (model.json outputs.spread, training/spread.py),
 * that output is held to the same bound, and must not be zero throughout (a spread of networks
 * that always agree would flag nothing).
 */
import fs from 'node:fs';
import path from 'node:path';
import { onnxParity } from '../helpers/onnxParity';

const ROOT = path.resolve(__dirname, '..', '..');
const candidates = [
  ['test fixture (untrained)', path.join(ROOT, 'test', 'fixtures', 'tiny-model')],
  ['shipped model', path.join(ROOT, 'model')],
];

for (const [name, dir] of candidates) {
  const run = fs.existsSync(path.join(dir, 'reference-outputs.json')) ? test : test.skip;
  run(`${name}: onnxruntime-node matches PyTorch within 1e-4`, async () => {
    const r = await onnxParity(dir);
    expect(r.maxDiff).toBeLessThanOrEqual(1e-4);
    expect(r.maskSpread).toBeGreaterThan(1e-3);
    if (r.descriptorLogOdds) expect(Math.max(...r.descriptorLogOdds.map(Math.abs))).toBeGreaterThan(0.1);
    if (r.spread) expect(Math.max(...r.spread)).toBeGreaterThan(1e-3);
  });
}
