/**
 * The results revision (src/report/uids.ts) keeps "one UID, one content": result UIDs derive from
 * it, so a Sonogate whose results differ sends them under new UIDs, and one whose results are the
 * same sends the same UIDs (an upgrade alone duplicates nothing in the PACS).
 *
 * The guard: one phantom image through the real pipeline (processInstanceFile with the
 * deterministic dark-lesion fixture, clock fixed) and the study's key object selection; the hashes
 * of the result files, UIDs aside (test/helpers/resultDigest.ts), must be those recorded for the
 * current revision. A change to what Sonogate writes fails here until the revision is bumped and
 * the new content recorded under it. Like test/unit/cine-batches.test.ts, the hashes rest on the
 * fixture's onnxruntime outputs on this kind of CPU.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { loadModelSpec } from '../../src/inference/modelSpec';
import { Predictor } from '../../src/inference/predictor';
import { PipelineOptions, processInstanceFile } from '../../src/pipeline/processStudy';
import { resultUids } from '../../src/report/common';
import { buildKeyImages } from '../../src/report/keyImages';
import { RESULT_REVISION } from '../../src/report/uids';
import { analyzeOptions } from '../../src/runtime';
import { tempDir } from '../helpers/dicomTools';
import { atFixedTime } from '../helpers/fixedTime';
import { contentDigests } from '../helpers/resultDigest';
import { phantomDataset } from '../helpers/phantom';

const MODEL = path.join(__dirname, '..', 'fixtures', 'dark-lesion-model', 'model.json');

/**
 * The content of each revision's results for the image below. Bump RESULT_REVISION with any change
 * to what Sonogate writes and add the new content here under the new number; never edit a
 * recorded revision (its UIDs are already in PACSs).
 */
const CONTENT_BY_REVISION: Record<number, Record<string, string>> = {
  1: { kos: '4f002558a52148f0', overlay: '9ff87cda2e238297', seg: 'df668de74f720727', sr: '2319a19b90070290' },
};

let dir: string;
let predictor: Predictor;
let options: PipelineOptions;

beforeAll(async () => {
  dir = tempDir('sonogate-revision-');
  const model = loadModelSpec(MODEL);
  predictor = await Predictor.create(model.spec, model.onnxPath, ['cpu']);
  const config = parseConfig({ inference: { model: MODEL, providers: ['cpu'] } });
  options = { ...analyzeOptions(config, model), outputs: { seg: true, sr: true, overlay: true }, model: { name: model.spec.name, version: model.spec.version } };
});
afterAll(async () => {
  await predictor.release();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The results of one phantom image with a lesion, and the study's key object selection. */
async function results() {
  const source = phantomDataset({ rows: 96, columns: 128, photometric: 'RGB', seed: 7 });
  const file = path.join(dir, 'source.dcm');
  fs.writeFileSync(file, writePart10(source));
  const out = fs.mkdtempSync(path.join(dir, 'out-'));
  const r = await processInstanceFile(file, out, predictor, options);
  expect(r.outcome.status).toBe('analysed');
  expect(r.outcome.lesionCount).toBeGreaterThan(0); // so the SEG and the SR's measurements are there
  const kos = buildKeyImages(source, [r.outcome.keyImage!], [source.SOPInstanceUID], options.model);
  expect(kos).not.toBeNull();
  const kosFile = path.join(out, 'kos.dcm');
  fs.writeFileSync(kosFile, writePart10(kos!));
  return { source, outputs: [...r.outputs, { kind: 'kos', path: kosFile }] };
}

test('the results are the content recorded for the current revision (a change to them needs a new revision)', async () => {
  const { outputs } = await atFixedTime(results);
  expect(outputs.map((o) => o.kind).sort()).toEqual(['kos', 'overlay', 'seg', 'sr']);
  const digests = contentDigests(outputs);
  const content = Object.fromEntries(Object.keys(digests).sort().map((k) => [k, digests[k]]));
  const recorded = CONTENT_BY_REVISION[RESULT_REVISION];
  if (JSON.stringify(recorded) !== JSON.stringify(content)) {
    throw new Error(
      `What Sonogate writes has changed under results revision ${RESULT_REVISION}: ${JSON.stringify(content)} ` +
        `instead of ${JSON.stringify(recorded)}. If the change is meant, set RESULT_REVISION in src/report/uids.ts ` +
        `to ${RESULT_REVISION + 1} and record this content under ${RESULT_REVISION + 1} in CONTENT_BY_REVISION.`,
    );
  }
  // each revision records different content: a revision is bumped for a change, not without one
  const recordedContents = Object.values(CONTENT_BY_REVISION).map((c) => JSON.stringify(c));
  expect(new Set(recordedContents).size).toBe(recordedContents.length);
}, 60_000);

test("the result UIDs carry the revision: another revision gives every object new UIDs, the same one the same", async () => {
  const { source, outputs } = await atFixedTime(results);
  const model = options.model;
  for (const o of outputs.filter((x) => x.kind !== 'kos')) {
    const kind = o.kind as 'seg' | 'sr' | 'overlay';
    const ds = readPart10(fs.readFileSync(o.path)).dataset;
    const now = resultUids(source, model, kind);
    expect({ kind, sop: ds.SOPInstanceUID, series: ds.SeriesInstanceUID }).toEqual({ kind, sop: now.sopInstanceUid, series: now.seriesInstanceUid });
    const next = resultUids(source, model, kind, RESULT_REVISION + 1);
    expect(next.sopInstanceUid).not.toBe(now.sopInstanceUid);
    expect(next.seriesInstanceUid).not.toBe(now.seriesInstanceUid);
  }
  const kos = readPart10(fs.readFileSync(outputs.find((o) => o.kind === 'kos')!.path)).dataset;
  const candidate = { sopClassUid: source.SOPClassUID, sopInstanceUid: source.SOPInstanceUID, seriesInstanceUid: source.SeriesInstanceUID, seriesNumber: 1, instanceNumber: 1, label: 'malignant' as const, malignancyProbability: 0.9, lesionCount: 1 };
  const again = buildKeyImages(source, [candidate], [source.SOPInstanceUID], model)!;
  const next = buildKeyImages(source, [candidate], [source.SOPInstanceUID], model, {}, RESULT_REVISION + 1)!;
  expect(again.SOPInstanceUID).toBe(kos.SOPInstanceUID);
  expect(next.SOPInstanceUID).not.toBe(kos.SOPInstanceUID);
  expect(next.SeriesInstanceUID).not.toBe(kos.SeriesInstanceUID);
}, 60_000);
