/**
 * Runs test/helpers/reference_gray.py (DCMTK or pydicom, then Pillow convert('L')) and compares
 * its frames with ours. Used by the decode integration tests.
 */
import { spawnSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { GrayFrame } from '../../src/types/domain';

export const PYTHON = '/usr/bin/python3';
const SCRIPT = join(__dirname, 'reference_gray.py');

/** Why the reference decoder cannot run here, or null when it can. */
export function referenceUnavailable(): string | null {
  const py = spawnSync(PYTHON, ['-c', 'import pydicom, numpy, PIL'], { encoding: 'utf8' });
  if (py.error || py.status !== 0) return `${PYTHON} with pydicom, numpy and PIL is not available`;
  for (const tool of ['dcm2pnm', 'dcmj2pnm', 'dcml2pnm']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.error) return `DCMTK ${tool} is not installed`;
  }
  return null;
}

export interface Reference {
  decoder: string;
  width: number;
  height: number;
  frames: Uint8Array[];
}

export function referenceGray(path: string, options: string[] = []): Reference {
  const dir = mkdtempSync(join(tmpdir(), 'sonogate-ref-'));
  try {
    const out = join(dir, 'gray.raw');
    const r = spawnSync(PYTHON, [SCRIPT, path, out, ...options], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`reference decoder failed on ${path}: ${r.stderr || r.error}`);
    const info = JSON.parse(r.stdout.trim().split('\n').pop() as string);
    const raw = readFileSync(out);
    const size = info.width * info.height;
    const frames = Array.from({ length: info.frames }, (_, i) => new Uint8Array(raw.subarray(i * size, (i + 1) * size)));
    return { decoder: info.decoder, width: info.width, height: info.height, frames };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface Difference {
  mean: number;
  max: number;
}

/** Mean and max absolute difference over all frames; the frame lists must match in count and size. */
export function difference(ours: GrayFrame[], theirs: Uint8Array[]): Difference {
  if (ours.length !== theirs.length) throw new Error(`${ours.length} frames vs ${theirs.length} in the reference`);
  let sum = 0;
  let max = 0;
  let n = 0;
  ours.forEach((frame, f) => {
    const ref = theirs[f];
    if (ref.length !== frame.data.length) throw new Error(`frame ${f}: ${frame.data.length} pixels vs ${ref.length}`);
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(frame.data[i] - ref[i]);
      sum += d;
      if (d > max) max = d;
    }
    n += ref.length;
  });
  return { mean: sum / n, max };
}
