/**
 * A cine's results do not depend on how its frames are decoded and analysed a batch at a time:
 * through the real pipeline (processInstanceFile, onnxruntime with the deterministic dark-lesion
 * fixture), with 11 frames of 101 × 77 (batches of 4 leave a short last one; 7,777 pixels a frame,
 * so the SEG's frames do not start on a byte boundary) and lesions on some frames only:
 * - each frame's SEG mask, and the reported frame's call, sizes and overlay, are what the same
 *   frame gives as an instance of its own;
 * - the result files of a native, an RLE (encapsulated) and a Deflated cine are in content those
 *   computed before the worker analysed cines a batch at a time (commit b2e8b81; creation date and
 *   time fixed; result UIDs aside, as they carry the results revision: src/report/uids.ts). These
 *   hashes rest on the fixture's onnxruntime outputs: a CPU whose float kernels round differently
 *   could move a mask's edge and change them without a change here.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { loadModelSpec } from '../../src/inference/modelSpec';
import { Predictor } from '../../src/inference/predictor';
import { PipelineOptions, processInstanceFile } from '../../src/pipeline/processStudy';
import { analyzeOptions } from '../../src/runtime';
import { Dataset } from '../../src/types/domain';
import { deflatedFile, encapsulatedFile, rleFrame } from '../helpers/dicomBuild';
import { atFixedTime } from '../helpers/fixedTime';
import { contentDigests } from '../helpers/resultDigest';
import { tempDir } from '../helpers/dicomTools';
import { phantomDataset } from '../helpers/phantom';

const MODEL = path.join(__dirname, '..', 'fixtures', 'dark-lesion-model', 'model.json');
const ROWS = 77;
const COLUMNS = 101;
const FRAMES = 11;
const PIXELS = ROWS * COLUMNS;
/** frames 1, 4, 7 and 10 show no lesion */
const withoutLesion = (f: number) => f % 3 === 1;
const RLE_LOSSLESS = '1.2.840.10008.1.2.5';

let dir: string;
let predictor: Predictor;
let options: PipelineOptions;

beforeAll(async () => {
  dir = tempDir('sonogate-cine-');
  const model = loadModelSpec(MODEL);
  predictor = await Predictor.create(model.spec, model.onnxPath, ['cpu']);
  const config = parseConfig({ inference: { model: MODEL, providers: ['cpu'], batchSize: 4 } });
  options = { ...analyzeOptions(config, model), outputs: { seg: true, sr: true, overlay: true }, model: { name: model.spec.name, version: model.spec.version } };
});
afterAll(async () => {
  await predictor.release();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A cine whose frames show the phantom's lesion except where withoutLesion says. */
function cine(photometric: 'RGB' | 'MONOCHROME2', seed: number): { ds: Dataset; frames: Uint8Array[] } {
  const opts = { rows: ROWS, columns: COLUMNS, frames: FRAMES, photometric, seed };
  const ds = phantomDataset(opts);
  const plain = new Uint8Array(phantomDataset({ ...opts, lesion: false }).PixelData[0]);
  const lesion = new Uint8Array(ds.PixelData[0]);
  const size = lesion.length / FRAMES;
  const frames = Array.from({ length: FRAMES }, (_, f) => (withoutLesion(f) ? plain : lesion).slice(f * size, (f + 1) * size));
  const all = new Uint8Array(lesion.length);
  frames.forEach((b, f) => all.set(b, f * size));
  return { ds: { ...ds, PixelData: [all.buffer] }, frames };
}

async function run(name: string, bytes: Buffer) {
  const file = path.join(dir, `${name}.dcm`);
  fs.writeFileSync(file, bytes);
  const out = path.join(dir, `${name}-out`);
  fs.mkdirSync(out);
  const r = await processInstanceFile(file, out, predictor, options);
  const read = (kind: string) => {
    const o = r.outputs.find((x) => x.kind === kind);
    return o ? { bytes: fs.readFileSync(o.path), ds: readPart10(fs.readFileSync(o.path)).dataset } : null;
  };
  return { outcome: r.outcome, outputs: r.outputs, read };
}

/** The bits of SEG frame f (PS3.5 8.1.1: one LSB-first stream over all frames). */
function segFrame(ds: Dataset, f: number): Uint8Array {
  const bits = new Uint8Array(ds.PixelData[0]);
  const mask = new Uint8Array(PIXELS);
  for (let i = 0, bit = f * PIXELS; i < PIXELS; i++, bit++) mask[i] = (bits[bit >> 3] >> (bit & 7)) & 1;
  return mask;
}

/** The overlay's picture above its caption band, which says which frame of how many it shows. */
const picture = (ds: Dataset) => Buffer.from(new Uint8Array(ds.PixelData[0]).subarray(0, PIXELS * 3));

const call = (o: Awaited<ReturnType<typeof run>>['outcome']) => ({
  label: o.label,
  probability: o.probability,
  malignancyProbability: o.malignancyProbability,
  lesionCount: o.lesionCount,
  largestLesion: o.largestLesion,
});

test.each([
  ['RGB', 3],
  ['MONOCHROME2', 4],
] as const)("a %s cine's frames give what each gives as an instance of its own", async (photometric, seed) => {
  const { ds, frames } = cine(photometric, seed);
  const whole = await run(`cine-${photometric}`, writePart10(ds));
  expect(whole.outcome.status).toBe('analysed');
  expect(whole.outcome.frames).toBe(FRAMES);
  const seg = whole.read('seg')!.ds;

  const singles: Awaited<ReturnType<typeof run>>[] = [];
  for (let f = 0; f < FRAMES; f++) {
    const one: Dataset = { ...ds, NumberOfFrames: 1, PixelData: [frames[f].slice().buffer] };
    const r = await run(`single-${photometric}-${f}`, writePart10(one));
    expect(r.outcome.status).toBe('analysed');
    const mask = r.read('seg') ? segFrame(r.read('seg')!.ds, 0) : new Uint8Array(PIXELS);
    expect({ frame: f, same: Buffer.compare(segFrame(seg, f), mask) }).toEqual({ frame: f, same: 0 });
    singles.push(r);
  }
  // the test means something only if frames differ: some with a lesion, some without
  const lesionFrames = singles.flatMap((s, f) => (s.outcome.lesionCount! > 0 ? [f] : []));
  expect(lesionFrames.length).toBeGreaterThan(0);
  expect(lesionFrames.length).toBeLessThan(FRAMES);

  // the reported frame: the most suspicious of the frames with a lesion, the first of equals
  const reported = lesionFrames.reduce((a, b) => (singles[b].outcome.malignancyProbability! > singles[a].outcome.malignancyProbability! ? b : a));
  expect(whole.outcome.keyImage?.frameNumber).toBe(reported + 1);
  expect(call(whole.outcome)).toEqual(call(singles[reported].outcome));
  expect(picture(whole.read('overlay')!.ds).equals(picture(singles[reported].read('overlay')!.ds))).toBe(true);
}, 120_000);

/** sha256 (first 16 hex digits) of each result file, its result UIDs aside, and the outcome without its timings. */
async function digest(name: string, bytes: Buffer) {
  const r = await atFixedTime(() => run(name, bytes));
  const { timingsMs: _timings, ...outcome } = r.outcome;
  return { outcome, files: contentDigests(r.outputs) };
}

describe('result files of a cine, the same content as before batches', () => {
  const rgb = () => cine('RGB', 3).ds;

  test('native RGB (Explicit VR Little Endian)', async () => {
    const d = await digest('golden-native', writePart10(rgb()));
    expect(d.files).toEqual(GOLDEN.native.files);
    expect(d.outcome).toEqual(GOLDEN.native.outcome);
  }, 60_000);

  test('RLE Lossless grayscale, one fragment a frame', async () => {
    const { ds, frames } = cine('MONOCHROME2', 4);
    const fragments = frames.map((f) => new Uint8Array(rleFrame([f])));
    const d = await digest('golden-rle', encapsulatedFile(ds, RLE_LOSSLESS, fragments));
    expect(d.files).toEqual(GOLDEN.rle.files);
    expect(d.outcome).toEqual(GOLDEN.rle.outcome);
  }, 60_000);

  test('Deflated RGB (read whole: a deflate stream cannot be read in part)', async () => {
    const d = await digest('golden-deflated', deflatedFile(rgb()));
    expect(d.files).toEqual(GOLDEN.deflated.files);
    expect(d.outcome).toEqual(GOLDEN.deflated.outcome);
  }, 60_000);
});

const outcome = (o: { sop: string; series: string; instance: number; frame: number; malignancy: number; probability: number; longAxis: number; shortAxis: number }) => ({
  sopInstanceUid: o.sop,
  status: 'analysed',
  label: 'benign',
  probability: o.probability,
  malignancyProbability: o.malignancy,
  lesionCount: 1,
  largestLesion: { longAxis: o.longAxis, shortAxis: o.shortAxis, area: 3.59, unit: 'mm' },
  frames: FRAMES,
  keyImage: {
    sopClassUid: '1.2.840.10008.5.1.4.1.1.3.1',
    sopInstanceUid: o.sop,
    seriesInstanceUid: o.series,
    frameNumber: o.frame,
    seriesNumber: 1,
    instanceNumber: o.instance,
    label: 'benign',
    malignancyProbability: o.malignancy,
    lesionCount: 1,
  },
});

/**
 * The content of the files computed with commit b2e8b81, which decoded every frame before analysing
 * any: their bytes' hashes held up to commit c239ea5, whose files give these content digests.
 */
const RGB_GOLDEN = {
  files: { overlay: '61b14e72623dea70', seg: 'ef3146923be86bc0', sr: 'de9884fac733a1da' },
  outcome: outcome({ sop: '2.25.10003.1.3', series: '2.25.10003.1', instance: 3, frame: 6, malignancy: 0.10247135561446578, probability: 0.8872296203765508, longAxis: 2.8442925306655784, shortAxis: 1.627821312358668 }),
};
const GOLDEN = {
  native: RGB_GOLDEN,
  // the same data set: the results do not carry the source's transfer syntax
  deflated: RGB_GOLDEN,
  rle: {
    files: { overlay: '07f5bb89ed2e999d', seg: '85eecdd4d892b865', sr: 'fffb4b4057e8a647' },
    outcome: outcome({ sop: '2.25.10004.1.4', series: '2.25.10004.1', instance: 4, frame: 4, malignancy: 0.10411413966873131, probability: 0.8850974633338958, longAxis: 2.82842712474619, shortAxis: 1.6122034611053282 }),
  },
};
