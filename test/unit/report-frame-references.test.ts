/**
 * Frame references in the results, through the real pipeline (processInstanceFile and the study's
 * key object selection) with a predictor that outlines the phantom's lesion:
 * - a US Image Storage file that carries NumberOfFrames 1 (as some scanners write it) is a
 *   single-frame image: no result may reference a frame of it (dciodvfy: "Shall not be present for
 *   Referenced SOP Class that is not multi-frame");
 * - a cine's reported frame is the one the SR's SCOORDs, the KOS's image item, the overlay and the
 *   SEG's lesion all point at.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { createStudyProcessor, processInstanceFile } from '../../src/pipeline/processStudy';
import { Dataset } from '../../src/types/domain';
import { dciodvfy, tempDir } from '../helpers/dicomTools';
import { phantomPipelineOptions, phantomPredictor as predictorFor } from '../helpers/phantomPredictor';
import { US_IMAGE_STORAGE, US_MULTIFRAME_STORAGE, phantomDataset } from '../helpers/phantom';

const ROWS = 251;
const COLUMNS = 333;
const STUDY = '2.25.4400771';
const model = { name: 'attention-unet-busi', version: '1.0.0' };

const phantomPredictor = (lesionFrames: number[]) => predictorFor(ROWS, COLUMNS, lesionFrames);

const OPTIONS = phantomPipelineOptions({ seg: true, sr: true, overlay: true, keyImages: true }, model);

/** Every Referenced Frame Number anywhere in the dataset, with the path to it. */
function frameNumbers(node: unknown, at = ''): { at: string; frame: number }[] {
  if (Array.isArray(node)) return node.flatMap((n, i) => frameNumbers(n, `${at}[${i}]`));
  if (!node || typeof node !== 'object') return [];
  return Object.entries(node as Dataset).flatMap(([k, v]) =>
    k === 'ReferencedFrameNumber' ? [{ at: `${at}.${k}`, frame: Number(Array.isArray(v) ? v[0] : v) }] : frameNumbers(v, `${at}.${k}`),
  );
}

let dir: string;
beforeAll(() => (dir = tempDir('sonogate-frames-')));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function runStudy(name: string, files: { ds: Dataset; lesionFrames: number[] }[]) {
  const out = path.join(dir, `${name}-out`);
  fs.mkdirSync(out);
  const stored = files.map(({ ds }, i) => {
    const p = path.join(dir, `${name}-${i}.dcm`);
    fs.writeFileSync(p, writePart10(ds));
    return { sopInstanceUid: String(ds.SOPInstanceUID), path: p };
  });
  const byFile = new Map(stored.map((s, i) => [s.path, files[i].lesionFrames]));
  const processor = createStudyProcessor((file, outDir) => processInstanceFile(file, outDir, phantomPredictor(byFile.get(file)!), OPTIONS), { model, enabled: true });
  const r = await processor({ studyInstanceUid: STUDY, instances: stored, outDir: out });
  const read = (kind: string, source?: string) => {
    const o = r.outputs.find((x) => x.kind === kind && (source === undefined || x.sourceSopInstanceUid === source));
    expect([kind, o !== undefined]).toEqual([kind, true]);
    const v = dciodvfy(o!.path);
    expect([kind, v.errors]).toEqual([kind, []]);
    return readPart10(fs.readFileSync(o!.path)).dataset;
  };
  return { r, read };
}

test('a US Image Storage file with NumberOfFrames 1: no result references a frame, all pass dciodvfy', async () => {
  const ds = phantomDataset({ rows: ROWS, columns: COLUMNS, seed: 21, studyInstanceUid: STUDY });
  expect(ds.SOPClassUID).toBe(US_IMAGE_STORAGE);
  ds.NumberOfFrames = 1;
  const { r, read } = await runStudy('single', [{ ds, lesionFrames: [0] }]);
  expect(r.instances[0]).toMatchObject({ status: 'analysed', lesionCount: 1 });
  for (const kind of ['seg', 'sr', 'overlay', 'kos']) expect([kind, frameNumbers(read(kind))]).toEqual([kind, []]);
  // nor is it called a frame of a cine in the SR
  const sr = JSON.stringify(read('sr'));
  expect(sr).toContain('"Lesion 1"');
  expect(sr).not.toMatch(/frame 1 of 1/);
});

test("a cine: the SR's SCOORDs, the KOS and the overlay all point at the reported frame, where the SEG has the lesion", async () => {
  const cine = phantomDataset({ rows: ROWS, columns: COLUMNS, frames: 4, seed: 22, studyInstanceUid: STUDY });
  expect(cine.SOPClassUID).toBe(US_MULTIFRAME_STORAGE);
  // the lesion on the third frame only: frame number 3
  const { r, read } = await runStudy('cine', [{ ds: cine, lesionFrames: [2] }]);
  expect(r.instances[0]).toMatchObject({ status: 'analysed', lesionCount: 1 });
  const sr = read('sr');
  // the source image for segmentation and the three SCOORDs' SELECTED FROM images
  expect(frameNumbers(sr).map((f) => f.frame)).toEqual([3, 3, 3, 3]);
  expect(frameNumbers(read('kos')).map((f) => f.frame)).toEqual([3]);
  expect(read('overlay').SourceImageSequence[0].ReferencedFrameNumber).toBe(3);
  const seg = read('seg');
  expect(seg.NumberOfFrames).toBe(4);
});
