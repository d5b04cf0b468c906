/**
 * routing.analyze through the real pipeline (the deterministic dark-lesion fixture model) and the
 * gateway: a thyroid image from the same scanner is stored but skipped with 'route.filtered' and
 * produces nothing; breast images, and images without BodyPartExamined, are analysed and their
 * results reach the PACS (DCMTK storescp).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { startGateway } from '../../src/gateway';
import { AnalysisEngine, startAnalysisEngine } from '../../src/runtime';
import { silentLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { eventually, freePort, startStoreScp, storescu } from '../helpers/peers';
import { phantomDataset } from '../helpers/phantom';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { Dataset } from '../../src/types/domain';

const MODEL = path.resolve(__dirname, '..', 'fixtures', 'dark-lesion-model', 'model.json');
const STUDY = '2.25.100051';
const haveDcmtk = spawnSync('storescu', ['--version']).status === 0;

let engine: AnalysisEngine;
let dir: string;

beforeAll(async () => {
  const config = parseConfig({ inference: { model: MODEL, providers: ['cpu'], workers: 1 }, routing: { analyze: { bodyParts: ['BREAST'] } }, log: { level: 'silent' } });
  engine = await startAnalysisEngine(config, silentLogger());
});
afterAll(async () => {
  await engine?.close();
});
beforeEach(() => {
  dir = tempDir('routing');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Phantom images of one study that differ only in BodyPartExamined (undefined = absent). */
function image(seed: number, bodyPart: string | undefined): { file: string; sop: string } {
  const ds = phantomDataset({ seed, studyInstanceUid: STUDY });
  delete ds.BodyPartExamined;
  if (bodyPart !== undefined) ds.BodyPartExamined = bodyPart;
  return { file: writeTemp(dir, `${seed}.dcm`, writePart10(ds)), sop: String(ds.SOPInstanceUID) };
}

test('the study processor skips a non-matching instance with route.filtered and analyses the others', async () => {
  const thyroid = image(1, 'THYROID');
  const breast = image(2, 'BREAST');
  const unknown = image(3, undefined);
  const outDir = path.join(dir, 'out');
  fs.mkdirSync(outDir);
  const r = await engine.processor({
    studyInstanceUid: STUDY,
    instances: [thyroid, breast, unknown].map((i) => ({ sopInstanceUid: i.sop, path: i.file })),
    outDir,
  });
  const bySop = Object.fromEntries(r.instances.map((i) => [i.sopInstanceUid, i]));
  expect(bySop[thyroid.sop]).toEqual({
    sopInstanceUid: thyroid.sop,
    status: 'skipped',
    reason: 'route.filtered',
    message: 'routing.analyze.bodyParts: BodyPartExamined "THYROID" is not one of BREAST',
  });
  expect(bySop[breast.sop].status).toBe('analysed');
  expect(bySop[unknown.sop].status).toBe('analysed'); // no BodyPartExamined passes (requireBodyPart false)
  expect(r.outputs.some((o) => o.sourceSopInstanceUid === thyroid.sop)).toBe(false);
  expect(r.outputs.filter((o) => o.sourceSopInstanceUid === breast.sop).map((o) => o.kind).sort()).toEqual(['overlay', 'seg', 'sr']);
  expect(fs.readdirSync(outDir)).toHaveLength(r.outputs.length);
  // the study's key object selection flags the two analysed images (the fixture outlines a lesion
  // on both), not the skipped one, in the source study
  const kos = r.outputs.filter((o) => o.kind === 'kos');
  expect(kos).toHaveLength(1);
  expect(kos[0].sourceSopInstanceUid).toBeNull();
  const read = readPart10(fs.readFileSync(kos[0].path)).dataset;
  expect(read.StudyInstanceUID).toBe(STUDY);
  const flagged = (read.ContentSequence as Dataset[]).filter((i) => i.ValueType === 'IMAGE').map((i) => i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID);
  expect(flagged.sort()).toEqual([breast.sop, unknown.sop].sort());
});

test('outputs.keyImages false: no key object selection; an image without a lesion is not flagged', async () => {
  const config = parseConfig({ inference: { model: MODEL, providers: ['cpu'], workers: 1 }, outputs: { keyImages: false }, log: { level: 'silent' } });
  const off = await startAnalysisEngine(config, silentLogger());
  try {
    const breast = image(6, 'BREAST');
    const outDir = path.join(dir, 'off');
    fs.mkdirSync(outDir);
    const r = await off.processor({ studyInstanceUid: STUDY, instances: [{ sopInstanceUid: breast.sop, path: breast.file }], outDir });
    expect(r.outputs.map((o) => o.kind).sort()).toEqual(['overlay', 'seg', 'sr']);
  } finally {
    await off.close();
  }
  // no lesion found: the study has no key images, so no document
  const plain = phantomDataset({ seed: 7, studyInstanceUid: STUDY, lesion: false });
  const file = writeTemp(dir, 'plain.dcm', writePart10(plain));
  const outDir = path.join(dir, 'plain');
  fs.mkdirSync(outDir);
  const r = await engine.processor({ studyInstanceUid: STUDY, instances: [{ sopInstanceUid: String(plain.SOPInstanceUID), path: file }], outDir });
  expect(r.instances[0]).toMatchObject({ status: 'analysed', lesionCount: 0 });
  expect(r.outputs.filter((o) => o.kind === 'kos')).toEqual([]);
});

(haveDcmtk ? test : test.skip)('through the gateway: the filtered instance is stored, marked skipped, and sends nothing', async () => {
  const pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
  const config = testConfig({
    dataDir: path.join(dir, 'data'),
    port: await freePort(),
    destinations: [{ name: 'pacs', aeTitle: pacs.aeTitle, host: '127.0.0.1', port: pacs.port }],
    // the gateway's effective routing (its config + dashboard overrides) goes with every job
    routing: { analyze: { bodyParts: ['BREAST'] } },
  });
  const g = await startGateway(config, engine.processor, silentLogger());
  try {
    const thyroid = image(4, 'THYROID');
    const breast = image(5, 'BREAST');
    expect((await storescu([thyroid.file, breast.file], { port: g.dicomPort })).code).toBe(0);
    await eventually(() => g.store.getStudy(STUDY)?.status === 'processed', 30_000, 'study processed');
    const rows = Object.fromEntries(g.store.listInstances(STUDY).map((i) => [i.sopInstanceUid, i]));
    expect(rows[thyroid.sop]).toMatchObject({ status: 'skipped', reason: 'route.filtered', message: expect.stringContaining('routing.analyze.bodyParts') });
    expect(fs.existsSync(rows[thyroid.sop].path)).toBe(true); // stored all the same
    expect(rows[breast.sop].status).toBe('analysed');
    // SEG, SR and overlay of the breast image and the study's key images; nothing for the thyroid one
    const outputs = g.store.listOutputs(STUDY);
    expect(outputs.map((o) => o.kind)).toEqual(['kos', 'overlay', 'seg', 'sr']);
    expect(new Set(outputs.map((o) => o.sourceSopInstanceUid))).toEqual(new Set([breast.sop, null]));
    await pacs.waitForFiles(4);
    await eventually(() => g.store.listSends({ studyUid: STUDY }).every((s) => s.status === 'sent'), 5000, 'sends done');
    expect(g.store.listSends({ studyUid: STUDY })).toHaveLength(4);
    expect((await pacs.received()).map((f) => f.sopInstanceUid).sort()).toEqual(outputs.map((o) => o.sopInstanceUid).sort());
  } finally {
    await g.close();
    await pacs.stop();
  }
});
