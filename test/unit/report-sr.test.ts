import { readFileSync, rmSync } from 'fs';
import { join } from 'path';
import { readPart10 } from '../../src/dicom/part10';
import { buildSeg } from '../../src/report/seg';
import { NO_LESION_FOUND, NO_LESION_OUTLINED } from '../../src/report/common';
import { IMAGE_LEVEL_CALL, NO_CALIBRATION, buildSr } from '../../src/report/sr';
import { polygonArea } from '../../src/postprocess/outline';
import { Dataset } from '../../src/types/domain';
import { checkFile, dsrdump, pydicomSrTexts, sharedDir, tempDir, writeDataset } from '../helpers/dicomTools';
import { LesionCaseOptions, lesionCase } from '../helpers/lesionResult';

const model = { name: 'attention-unet-busi', version: '1.0.0' };
const now = new Date(2026, 10, 26, 14, 30, 0);
let dir: string;
beforeAll(() => (dir = tempDir()));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function srFor(name: string, opts: LesionCaseOptions, withSeg = true) {
  const c = lesionCase(opts);
  const seg = withSeg ? buildSeg(c.source, c.result, model, { now }) : null;
  const sr = buildSr(c.source, c.result, model, seg, { now });
  const path = writeDataset(dir, `${name}.dcm`, sr);
  const check = checkFile(path);
  expect(check.errors).toEqual([]);
  expect(check.dcmdumpStatus).toBe(0);
  expect(check.pydicom.sopClassUid).toBe('1.2.840.10008.5.1.4.1.1.88.33');
  // DCMTK's SR reader checks the tree against the Comprehensive SR relationship constraints
  const dsr = dsrdump(path);
  expect(dsr.status).toBe(0);
  expect(dsr.output).not.toMatch(/^E:/m);
  return { ...c, seg, sr, path, read: readPart10(readFileSync(path)).dataset };
}

/** All content items below `node`, depth first. */
function items(node: Dataset): Dataset[] {
  return (node.ContentSequence ?? []).flatMap((item: Dataset) => [item, ...items(item)]);
}
const named = (node: Dataset, meaning: string) => items(node).filter((i) => i.ConceptNameCodeSequence?.[0]?.CodeMeaning === meaning);
const one = (node: Dataset, meaning: string) => {
  const found = named(node, meaning);
  expect([meaning, found.length]).toEqual([meaning, 1]);
  return found[0];
};
const num = (item: Dataset) => ({ value: Number(item.MeasuredValueSequence[0].NumericValue), unit: item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue });

describe('Comprehensive SR (TID 1500)', () => {
  test('a malignant lesion: classification, probability, sizes in mm, SEG segment and source image', () => {
    const { source, result, seg, read, path } = srFor('malignant', {});
    expect(read.ConceptNameCodeSequence[0]).toMatchObject({ CodeValue: '126000', CodingSchemeDesignator: 'DCM' });
    expect(read.ContentTemplateSequence[0]).toMatchObject({ MappingResource: 'DCMR', TemplateIdentifier: '1500' });
    expect(read.StudyInstanceUID).toBe(source.StudyInstanceUID);
    expect(String(read.PatientName)).toBe(String(source.PatientName));
    expect(read.AccessionNumber).toBe(source.AccessionNumber);
    expect(read.VerificationFlag).toBe('UNVERIFIED');
    expect(read.Manufacturer).toBe('Sonogate');
    expect(one(read, 'Device Observer Name').TextValue).toBe(model.name);
    expect(one(read, 'Device Observer Model Name').TextValue).toContain(model.version);
    expect(one(read, 'Language of Content Item and Descendants').ConceptCodeSequence[0].CodeValue).toBe('en-US');
    expect(one(read, 'Procedure reported').ConceptCodeSequence[0].CodeValue).toBe('47079000');
    expect(pydicomSrTexts(path)).toContain('AI result — not for diagnostic use. Decision support, not a diagnosis.');

    const group = one(read, 'Measurement Group');
    expect(one(group, 'Tracking Identifier').TextValue).toBe('Lesion 1');
    expect(one(group, 'Tracking Unique Identifier').UID).toMatch(/^2\.25\.\d+$/);
    expect(one(group, 'Finding').ConceptCodeSequence[0]).toMatchObject({ CodeValue: '4147007', CodingSchemeDesignator: 'SCT' });
    expect(one(group, 'Pathology').ConceptCodeSequence[0]).toMatchObject({ CodeValue: '86049000', CodingSchemeDesignator: 'SCT' });
    expect(num(one(group, 'Probability of cancer'))).toEqual({ value: 0.83, unit: '1' });
    const lesion = result.lesions[0];
    const long = num(one(group, 'Long axis'));
    expect(long.unit).toBe('mm');
    expect(long.value).toBeCloseTo(lesion.longAxisMm!, 3);
    expect(num(one(group, 'Short axis')).value).toBeCloseTo(lesion.shortAxisMm!, 3);
    expect(num(one(group, 'Area'))).toEqual({ value: Number(lesion.areaMm2!.toPrecision(6)), unit: 'mm2' });
    expect(named(group, 'Comment').map((i) => i.TextValue)).not.toContain(NO_CALIBRATION);

    const segRef = one(group, 'Referenced Segment').ReferencedSOPSequence[0];
    expect(segRef.ReferencedSOPInstanceUID).toBe(seg!.SOPInstanceUID);
    expect(segRef.ReferencedSegmentNumber).toBe(1);
    expect(segRef.ReferencedFrameNumber).toBeUndefined(); // not beside the segment number (NOTES.md)
    expect(one(group, 'Source series for segmentation').UID).toBe(source.SeriesInstanceUID);
    expect(one(group, 'Source image for segmentation').ReferencedSOPSequence[0].ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
    expect(one(group, 'Laterality').ConceptCodeSequence[0].CodeValue).toBe('7771000');

    const library = one(read, 'Image Library Group').ContentSequence[0];
    expect(library.ValueType).toBe('IMAGE');
    expect(library.ReferencedSOPSequence[0].ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
    // every referenced instance is listed as evidence (PS3.3 C.17.2.3)
    expect(read.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
    expect(read.PertinentOtherEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID).toBe(seg!.SeriesInstanceUID);
  });

  test('each size says where it was measured: SCOORD axis ends and outline on the source image, which viewers draw', () => {
    const { source, result, read, path } = srFor('geometry', { seed: 12 });
    const lesion = result.lesions[0];
    const group = one(read, 'Measurement Group');
    const where = (meaning: string) => {
      const inferred = (one(group, meaning).ContentSequence ?? []) as Dataset[];
      expect(inferred.map((i) => [i.RelationshipType, i.ValueType, i.GraphicType])).toEqual([['INFERRED FROM', 'SCOORD', 'POLYLINE']]);
      const selected = inferred[0].ContentSequence[0];
      expect([selected.RelationshipType, selected.ValueType]).toEqual(['SELECTED FROM', 'IMAGE']);
      expect(selected.ReferencedSOPSequence[0]).toMatchObject({ ReferencedSOPClassUID: source.SOPClassUID, ReferencedSOPInstanceUID: source.SOPInstanceUID });
      return (inferred[0].GraphicData as number[]).map(Number);
    };
    // axes: pixel centres moved to SCOORD's corner origin, and as long as the reported size
    const long = where('Long axis');
    expect(long).toHaveLength(4);
    long.forEach((v, k) => expect(v).toBeCloseTo(lesion.longAxisLine[k] + 0.5, 2));
    expect(Math.hypot(long[2] - long[0], long[3] - long[1]) * 0.1).toBeCloseTo(lesion.longAxisMm!, 1);
    const short = where('Short axis');
    short.forEach((v, k) => expect(v).toBeCloseTo(lesion.shortAxisLine[k] + 0.5, 2));
    // area: the closed outline, enclosing exactly the lesion's pixels (the phantom's ellipse has no hole)
    const outline = where('Area');
    expect(outline.slice(-2)).toEqual(outline.slice(0, 2));
    expect(polygonArea(outline.slice(0, -2))).toBe(lesion.areaPixels);
    expect(Math.min(...outline.filter((_, k) => k % 2 === 0))).toBe(lesion.bbox.x0);
    expect(Math.max(...outline.filter((_, k) => k % 2 === 1))).toBe(lesion.bbox.y1);
    // DCMTK reads the geometry as SCOORD items under the measurements
    expect(dsrdump(path).output.match(/<inferred from SCOORD:=\(POLYLINE,/g)).toHaveLength(3);
  });

  test('a benign call is coded as "Neoplasm, benign"', () => {
    const { read } = srFor('benign', { label: 'benign', seed: 2 });
    expect(one(read, 'Pathology').ConceptCodeSequence[0]).toMatchObject({ CodeValue: '3898006', CodeMeaning: 'Neoplasm, benign' });
    expect(num(one(read, 'Probability of cancer')).value).toBe(0.12);
  });

  test('several lesions on the frame: each group says the classification is the whole image\'s; a single lesion\'s does not', () => {
    const c = lesionCase({ seed: 11 });
    const second = { ...c.result.lesions[0], index: 2 };
    const two = { ...c.result, lesions: [c.result.lesions[0], second] };
    const path = writeDataset(dir, 'two-lesions.dcm', buildSr(c.source, two, model, buildSeg(c.source, two, model, { now }), { now }));
    const check = checkFile(path);
    expect(check.errors).toEqual([]);
    expect(dsrdump(path).output).not.toMatch(/^E:/m);
    const groups = named(readPart10(readFileSync(path)).dataset, 'Measurement Group');
    expect(groups).toHaveLength(2);
    for (const g of groups) expect(named(g, 'Comment').map((i) => i.TextValue)).toContain(IMAGE_LEVEL_CALL);
    const single = one(srFor('one-lesion', { seed: 11 }).read, 'Measurement Group');
    expect(named(single, 'Comment').map((i) => i.TextValue)).not.toContain(IMAGE_LEVEL_CALL);
  });

  test("the networks' agreement: low says the call is uncertain, usual says so too, a model without it says nothing", () => {
    const texts = (name: string, agreement?: { spread: number; lowAbove: number; low: boolean; fromMostSuspicious?: boolean }) =>
      pydicomSrTexts(srFor(name, { seed: 4, label: 'benign', agreement }).path).filter((t) => t.startsWith('Agreement'));
    expect(texts('agreement-low', { spread: 0.2143, lowAbove: 0.0667, low: true })).toEqual([
      "Agreement of the model's networks: low (spread of their malignancy probabilities 0.214; low above 0.0667). The call is uncertain whatever its probability; read the image.",
    ]);
    expect(texts('agreement-usual', { spread: 0.0104, lowAbove: 0.0667, low: false })).toEqual([
      "Agreement of the model's networks: usual (spread of their malignancy probabilities 0.010; low above 0.0667).",
    ]);
    expect(texts('agreement-none')).toEqual([]);
    // a model that calls with its most suspicious network where they disagree (rule 30) says so
    expect(texts('agreement-most', { spread: 0.2143, lowAbove: 0.0667, low: true, fromMostSuspicious: true })).toEqual([
      "Agreement of the model's networks: low (spread of their malignancy probabilities 0.214; low above 0.0667). The call and its probabilities are the most suspicious network's, not the networks' average. The call is uncertain whatever its probability; read the image.",
    ]);
  });

  test('no lesion: says "No lesion found" and has no measurement group', () => {
    const { read, path } = srFor('none', { lesion: false, seed: 3 });
    expect(pydicomSrTexts(path)).toContain(NO_LESION_FOUND);
    expect(named(read, 'Measurement Group')).toHaveLength(0);
    expect(one(read, 'Finding').TextValue).toBe(NO_LESION_FOUND);
    expect(named(read, 'Pathology')).toHaveLength(0);
  });

  test('a benign or malignant call without an outline says nothing was outlined, not "No lesion found"', () => {
    const { read, path } = srFor('call-no-outline', { lesion: false, seed: 3, label: 'malignant', malignancyProbability: 0.78 });
    expect(one(read, 'Finding').TextValue).toBe(NO_LESION_OUTLINED);
    expect(pydicomSrTexts(path)).not.toContain(NO_LESION_FOUND);
    expect(pydicomSrTexts(path).join(' ')).toMatch(/Model classification: malignant/);
  });

  test('uncalibrated image: sizes in pixels with a note, never in mm', () => {
    const { result, read } = srFor('uncalibrated', { mmPerPixel: null, seed: 4 });
    const group = one(read, 'Measurement Group');
    expect(num(one(group, 'Long axis'))).toEqual({ value: Number(result.lesions[0].longAxisPixels.toPrecision(6)), unit: '{pixels}' });
    expect(num(one(group, 'Area'))).toEqual({ value: result.lesions[0].areaPixels, unit: '{pixels}' });
    expect(named(group, 'Comment').map((i) => i.TextValue)).toContain(NO_CALIBRATION);
    const units = items(read).filter((i) => i.ValueType === 'NUM').map((i) => num(i).unit);
    expect(units).not.toContain('mm');
    expect(units).not.toContain('mm2');
  });

  test('multi-frame: the groups are the lesions of the reported frame, pointing at that source frame', () => {
    const { read, result } = srFor('multi', { frames: 3, emptyFrames: [1], seed: 5 });
    const f = result.reportedFrameIndex;
    expect(result.lesions.some((l) => l.frameIndex !== f)).toBe(true); // other frames have lesions too (they stay in the SEG)
    const groups = named(read, 'Measurement Group');
    expect(groups.map((g) => one(g, 'Tracking Identifier').TextValue)).toEqual([`Lesion 1, frame ${f + 1}`]);
    expect(groups.map((g) => one(g, 'Source image for segmentation').ReferencedSOPSequence[0].ReferencedFrameNumber)).toEqual([f + 1]);
    // the geometry is selected from that frame too
    const scoords = items(groups[0]).filter((i) => i.ValueType === 'SCOORD');
    expect(scoords).toHaveLength(3);
    for (const sc of scoords) expect(sc.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber).toBe(f + 1);
    // the call is the most suspicious frame's, and the text says so (not the whole clip's)
    expect(JSON.stringify(read.ContentSequence)).toContain(`(frame ${f + 1} of 3, the most suspicious; other frames score lower)`);
  });

  test('without a SEG: no segment reference and no other evidence, still valid', () => {
    const { read } = srFor('noseg', { seed: 6 }, false);
    expect(named(read, 'Referenced Segment')).toHaveLength(0);
    expect(read.PertinentOtherEvidenceSequence).toBeUndefined();
  });

  test('UIDs are the same when built again and differ per model version', () => {
    const c = lesionCase({ seed: 7 });
    const a = buildSr(c.source, c.result, model, null, { now });
    const b = buildSr(c.source, c.result, model, null, { now: new Date(2027, 0, 1) });
    const v2 = buildSr(c.source, c.result, { ...model, version: '2.0.0' }, null, { now });
    expect(b.SOPInstanceUID).toBe(a.SOPInstanceUID);
    expect(b.SeriesInstanceUID).toBe(a.SeriesInstanceUID);
    expect(v2.SOPInstanceUID).not.toBe(a.SOPInstanceUID);
    expect(v2.SeriesInstanceUID).not.toBe(a.SeriesInstanceUID);
    const uid = (ds: Dataset) => one(ds, 'Tracking Unique Identifier').UID;
    expect(uid(b)).toBe(uid(a));
  });
});

describe('SR compared with a reference Comprehensive SR written by DCMTK', () => {
  const shared = sharedDir();
  const refTest = shared ? test : test.skip;

  refTest('has the reference\'s document-level attributes, less those for verified or amended documents', () => {
    const ref = readPart10(readFileSync(join(shared!, 'dicom-samples', 'reference', 'test-SR.dcm'))).dataset;
    const ours = srFor('compare', { seed: 8 }).read;
    // VERIFIED documents name their verifier; amendments name their predecessor
    const notForUs = new Set(['_vrMap', 'InstanceCreatorUID', 'ObservationDateTime', 'VerifyingObserverSequence', 'PredecessorDocumentsSequence', 'CompletionFlagDescription']);
    expect(Object.keys(ref).filter((k) => !notForUs.has(k) && !(k in ours))).toEqual([]);
    expect(ours.SOPClassUID).toBe(ref.SOPClassUID);
  });
});
