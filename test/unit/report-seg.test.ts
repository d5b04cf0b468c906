import { readFileSync, rmSync } from 'fs';
import { join } from 'path';
import { readPart10, writePart10, writePart10File } from '../../src/dicom/part10';
import { FrameMasks } from '../../src/postprocess/frameMasks';
import { packBinaryFrames, buildSeg } from '../../src/report/seg';
import { Dataset } from '../../src/types/domain';
import { checkFile, pydicomRead, sharedDir, tempDir, writeDataset } from '../helpers/dicomTools';
import { LesionCaseOptions, lesionCase } from '../helpers/lesionResult';

const model = { name: 'attention-unet-busi', version: '1.0.0' };
const now = new Date(2026, 10, 26, 14, 30, 0);
let dir: string;
beforeAll(() => (dir = tempDir()));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Builds, writes and validates a SEG; returns what pydicom and dcmjs read back. */
function segFor(name: string, opts: LesionCaseOptions) {
  const c = lesionCase(opts);
  const seg = buildSeg(c.source, c.result, model, { now });
  const path = writeDataset(dir, `${name}.dcm`, seg);
  const check = checkFile(path);
  expect(check.errors).toEqual([]);
  expect(check.dcmdumpStatus).toBe(0);
  return { ...c, seg, path, read: readPart10(readFileSync(path)).dataset, pydicom: check.pydicom };
}

const allMasks = (masks: Uint8Array[]) => Buffer.concat(masks.map((m) => Buffer.from(m)));

describe('BINARY bit packing (PS3.5 8.1.1)', () => {
  test('is one LSB-first stream over all frames, not padded per frame', () => {
    // 3 × 3 pixels, 2 frames: frame 2 starts at bit 9, in the middle of byte 1
    const f1 = Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 1]);
    const f2 = Uint8Array.from([1, 1, 0, 0, 0, 0, 0, 0, 1]);
    const packed = packBinaryFrames([f1, f2], 9);
    // bits 0 and 8 from frame 1; bits 9, 10 and 17 from frame 2; one zero byte pads to even length
    expect(Array.from(packed)).toEqual([0b00000001, 0b00000111, 0b00000010, 0]);
  });

  test("the pipeline's masks are that stream as frames are found, and give each frame back", () => {
    const f1 = Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 1]);
    const f3 = Uint8Array.from([0, 1, 1, 0, 0, 0, 0, 0, 255]);
    const masks = new FrameMasks(9, 3);
    masks.push(f1);
    expect(Array.from(masks.packed())).toEqual([0b00000001, 0b00000001]); // the frames so far, even length
    masks.push(null); // a frame without lesion
    masks.push(f3);
    expect(masks.length).toBe(3);
    expect(Array.from(masks.packed())).toEqual(Array.from(packBinaryFrames([f1, new Uint8Array(9), f3], 9)));
    expect(masks.packed().byteLength).toBe(masks.packed().buffer.byteLength); // the SEG takes its buffer whole
    expect(Array.from(masks.frame(2))).toEqual([0, 1, 1, 0, 0, 0, 0, 0, 1]);
    expect(Array.from(masks.frame(1))).toEqual(Array(9).fill(0));
    expect(() => masks.push(f1)).toThrow(/room for 3 frames/);
    expect(() => masks.frame(3)).toThrow(/no frame 3/);
    expect(() => new FrameMasks(9, 1).push(new Uint8Array(8))).toThrow(/8 pixels where a frame has 9/);
  });
});

describe('SEG of the lesion mask', () => {
  test('single-frame MONOCHROME2: valid, joins the study, masks round-trip exactly', () => {
    const { source, masks, read, pydicom } = segFor('single', {});
    expect(pydicom.sopClassUid).toBe('1.2.840.10008.5.1.4.1.1.66.4');
    expect([pydicom.patientName, pydicom.patientId, pydicom.studyInstanceUid]).toEqual(['Phantom^Patient', 'PHANTOM1', source.StudyInstanceUID]);
    expect(pydicom.shape).toEqual([251, 333]);
    expect(pydicom.pixels!.equals(allMasks(masks))).toBe(true);
    expect(allMasks(masks).reduce((a, b) => a + b, 0)).toBeGreaterThan(1000); // a real lesion, not an empty test

    for (const key of ['PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyInstanceUID', 'StudyDate', 'StudyTime', 'AccessionNumber', 'StudyID', 'StudyDescription']) {
      expect([key, String(read[key])]).toEqual([key, String(source[key])]);
    }
    expect(read.SeriesInstanceUID).not.toBe(source.SeriesInstanceUID);
    expect(read.Modality).toBe('SEG');
    expect(read.Manufacturer).toBe('Sonogate');
    expect(read.ManufacturerModelName).toBe(model.name);
    expect([read.SoftwareVersions].flat().join(' ')).toContain(model.version);
    expect(read.ContentDate).toBe('20261126');
    expect(read.ContentTime).toBe('143000');
    expect(read.ContentDescription).toBe('AI result — not for diagnostic use');
    expect(read.SegmentationType).toBe('BINARY');
    expect(read.Laterality).toBeUndefined();

    const segment = read.SegmentSequence[0];
    expect(segment.SegmentNumber).toBe(1);
    expect(segment.SegmentLabel).toBe('Lesion (malignant)');
    expect(segment.SegmentAlgorithmType).toBe('AUTOMATIC');
    expect(segment.SegmentAlgorithmName).toBe(model.name);
    expect(segment.SegmentedPropertyCategoryCodeSequence[0]).toMatchObject({ CodeValue: '49755003', CodingSchemeDesignator: 'SCT' });
    expect(segment.SegmentedPropertyTypeCodeSequence[0]).toMatchObject({ CodeValue: '4147007', CodingSchemeDesignator: 'SCT', CodeMeaning: 'Mass' });
    // the phantom is a left breast: laterality on the anatomic region, not as Laterality
    expect(segment.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeValue).toBe('7771000');

    const refSeries = read.ReferencedSeriesSequence[0];
    expect(refSeries.SeriesInstanceUID).toBe(source.SeriesInstanceUID);
    expect(refSeries.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
    const sourceImage = read.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0];
    expect(sourceImage.ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
    expect(sourceImage.ReferencedSOPClassUID).toBe(source.SOPClassUID);
    expect(sourceImage.ReferencedFrameNumber).toBeUndefined(); // single-frame source
  });

  test('RGB source: one binary frame of the same size', () => {
    const { masks, pydicom, read } = segFor('rgb', { photometric: 'RGB', seed: 3 });
    expect(read.PhotometricInterpretation).toBe('MONOCHROME2');
    expect(pydicom.shape).toEqual([251, 333]);
    expect(pydicom.pixels!.equals(allMasks(masks))).toBe(true);
  });

  test('multi-frame: empty frames are kept so SEG frame n is source frame n', () => {
    const { source, masks, pydicom, read } = segFor('multi', { frames: 3, emptyFrames: [1], seed: 4 });
    expect(read.NumberOfFrames).toBe(3);
    expect(read.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber).toBe(1);
    expect(pydicom.shape).toEqual([3, 251, 333]);
    expect(pydicom.pixels!.equals(allMasks(masks))).toBe(true);
    const frameSize = 251 * 333;
    expect(pydicom.pixels!.subarray(frameSize, 2 * frameSize).every((v) => v === 0)).toBe(true);
    expect(pydicom.pixels!.subarray(2 * frameSize).some((v) => v === 1)).toBe(true);
    read.PerFrameFunctionalGroupsSequence.forEach((item: Dataset, f: number) => {
      const ref = item.DerivationImageSequence[0].SourceImageSequence[0];
      expect(ref.ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
      expect(ref.ReferencedFrameNumber).toBe(f + 1);
      expect(item.SegmentIdentificationSequence).toBeUndefined(); // shared: one segment
      expect(item.FrameContentSequence[0].DimensionIndexValues).toEqual([1, f + 1]);
    });
  });

  test('601 × 503 × 2 frames: the second frame does not start on a byte boundary and still decodes exactly', () => {
    const { masks, pydicom, read } = segFor('odd', { rows: 503, columns: 601, frames: 2, seed: 5 });
    expect((601 * 503) % 8).not.toBe(0);
    expect(pydicom.shape).toEqual([2, 503, 601]);
    expect(pydicom.pixels!.equals(allMasks(masks))).toBe(true);
    const bytes = Math.ceil((2 * 601 * 503) / 8);
    expect(read.PixelData[0].byteLength).toBe(bytes + (bytes % 2));
  });

  test('no lesion: a valid SEG with empty frames', () => {
    const { pydicom, read } = segFor('empty', { lesion: false, seed: 6 });
    expect(pydicom.pixels!.every((v) => v === 0)).toBe(true);
    expect(read.SegmentSequence[0].SegmentLabel).toBe('Lesion (normal)');
  });

  test('UIDs are the same when built again and differ per model version', () => {
    const c = lesionCase({ seed: 7 });
    const a = buildSeg(c.source, c.result, model, { now });
    const b = buildSeg(c.source, c.result, model, { now: new Date(2027, 0, 1) });
    const v2 = buildSeg(c.source, c.result, { ...model, version: '2.0.0' }, { now });
    expect(b.SOPInstanceUID).toBe(a.SOPInstanceUID);
    expect(b.SeriesInstanceUID).toBe(a.SeriesInstanceUID);
    expect(v2.SOPInstanceUID).not.toBe(a.SOPInstanceUID);
    expect(v2.SeriesInstanceUID).not.toBe(a.SeriesInstanceUID);
    expect(a.StudyInstanceUID).toBe(c.source.StudyInstanceUID);
  });

  test('written to a file from its own bit stream, byte for byte what writePart10 gives (as is any object without Pixel Data)', () => {
    const c = lesionCase({ rows: 503, columns: 601, frames: 3, emptyFrames: [1], seed: 10 });
    const seg = buildSeg(c.source, c.result, model, { now });
    const file = join(dir, 'seg-file.dcm');
    writePart10File(file, seg);
    expect(readFileSync(file).equals(writePart10(seg))).toBe(true);
    const { PixelData: _pixels, ...noPixels } = seg;
    writePart10File(file, noPixels);
    expect(readFileSync(file).equals(writePart10(noPixels))).toBe(true);
  });

  test('refuses masks that do not match the source frames', () => {
    const c = lesionCase({ frames: 2, seed: 8 });
    expect(() => buildSeg(c.source, { ...c.result, masks: FrameMasks.of(c.masks.slice(0, 1), 251 * 333) }, model)).toThrow(/1 masks for 2 source frames/);
    expect(() => buildSeg(c.source, { ...c.result, masks: FrameMasks.of(c.masks.map((m) => m.subarray(1)), 251 * 333 - 1) }, model)).toThrow(/mask of 83582 pixels for a 333×251 source/);
  });
});

describe('SEG compared with a reference SEG written by dcmqi', () => {
  const shared = sharedDir();
  const refTest = shared ? test : test.skip;

  refTest('has the reference\'s modules, less patient geometry ultrasound does not have', () => {
    const refPath = join(shared!, 'dicom-samples', 'reference', 'liver_SEG.dcm');
    const ref = readPart10(readFileSync(refPath)).dataset;
    const ours = segFor('compare', { frames: 2, seed: 9 }).read;
    // geometry (Frame of Reference, plane position) and trial / device details that are optional
    const notForUs = new Set(['FrameOfReferenceUID', 'PositionReferenceIndicator', 'PatientAge', 'ClinicalTrialTimePointID', 'ClinicalTrialCoordinatingCenterName', 'ClinicalTrialSeriesID', '_vrMap']);
    const missing = Object.keys(ref).filter((k) => !notForUs.has(k) && !(k in ours));
    expect(missing).toEqual([]);
    const refSegment = Object.keys(ref.SegmentSequence[0]);
    expect(refSegment.filter((k) => !(k in ours.SegmentSequence[0]))).toEqual([]);
    const refFrame = Object.keys(ref.PerFrameFunctionalGroupsSequence[0]).filter((k) => k !== 'PlanePositionSequence');
    // all our frames belong to one segment, so its Segment Identification is shared, not per frame
    const ourGroups = { ...ours.SharedFunctionalGroupsSequence[0], ...ours.PerFrameFunctionalGroupsSequence[0] };
    expect(refFrame.filter((k) => !(k in ourGroups))).toEqual([]);
    // and the same pydicom decoding path reads the reference as 3 frames
    expect(pydicomRead(refPath).shape).toEqual([3, 512, 512]);
  });
});
