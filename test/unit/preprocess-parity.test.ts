/**
 * The gateway's preprocessing (TypeScript) must give the training preprocessing's tensor
 * (training/preprocess.py) within 1/255 on the same image files.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { readGrayImage } from '../../src/evaluate/images';
import { loadModelSpec } from '../../src/inference/modelSpec';
import { toInputTensor } from '../../src/inference/preprocess';
import { phantomPixels } from '../helpers/phantom';

const ROOT = path.resolve(__dirname, '..', '..');
const BUSI = path.resolve(ROOT, '..', 'shared', 'datasets', 'busi');
// the shipped model's own input contract: the size and scaling the gateway really uses
const input = loadModelSpec(path.join(ROOT, 'model', 'model.json')).spec.input;

function pythonTensors(files: string[]): Float32Array[] {
  const script = `
import sys, json, base64, numpy as np
sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'training'))})
from preprocess import gray_from_file, to_input
spec = json.loads(sys.argv[1])
for f in sys.argv[2:]:
    print(base64.b64encode(to_input(gray_from_file(f), spec).astype('<f4').tobytes()).decode())
`;
  const out = execFileSync('/usr/bin/python3', ['-c', script, JSON.stringify(input), ...files], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return out
    .trim()
    .split('\n')
    .map((l) => {
      const b = Buffer.from(l, 'base64');
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    });
}

const havePython = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import numpy, PIL'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

(havePython ? describe : describe.skip)('preprocessing parity with training', () => {
  const files: string[] = [];
  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-parity-'));
    const [px] = phantomPixels({ rows: 251, columns: 333 });
    const phantom = path.join(dir, 'phantom.png');
    await sharp(Buffer.from(px), { raw: { width: 333, height: 251, channels: 1 } }).png().toFile(phantom);
    // an RGB image with colour, as BUSI's Doppler images are
    const rgb = Buffer.alloc(120 * 90 * 3);
    for (let i = 0; i < 120 * 90; i++) rgb.set([(i * 7) % 256, (i * 3) % 256, (i * 11) % 256], i * 3);
    const colour = path.join(dir, 'colour.png');
    await sharp(rgb, { raw: { width: 120, height: 90, channels: 3 } }).png().toFile(colour);
    files.push(phantom, colour);
    if (fs.existsSync(BUSI)) {
      for (const f of ['benign/benign (1).png', 'benign/benign (6).png', 'malignant/malignant (65).png', 'normal/normal (113).png', 'malignant/malignant (10).png']) {
        files.push(path.join(BUSI, f));
      }
    }
  });

  test('TypeScript and Python tensors differ by at most 1/255 (after scaling)', async () => {
    const expected = pythonTensors(files);
    expect(expected).toHaveLength(files.length);
    for (let k = 0; k < files.length; k++) {
      const g = await readGrayImage(files[k]);
      const t = toInputTensor(g.data, g.width, g.height, input);
      expect(t.length).toBe(expected[k].length);
      let max = 0;
      for (let i = 0; i < t.length; i++) max = Math.max(max, Math.abs(t[i] - expected[k][i]));
      expect({ file: path.basename(files[k]), max: max <= 1 / 255 }).toEqual({ file: path.basename(files[k]), max: true });
    }
  });
});
