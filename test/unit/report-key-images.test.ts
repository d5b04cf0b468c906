import { readFileSync, rmSync } from 'fs';
import { readPart10 } from '../../src/dicom/part10';
import { buildKeyImages, KeyImageCandidate, keyImages } from '../../src/report/keyImages';
import { Dataset } from '../../src/types/domain';
import { checkFile, dciodvfy, dsrdump, pydicomSrTexts, tempDir, writeDataset } from '../helpers/dicomTools';
import { lesionCase } from '../helpers/lesionResult';

const model = { name: 'attention-unet-busi', version: '1.0.0' };
const now = new Date(2026, 10, 26, 14, 30, 0);
let dir: string;
beforeAll(() => (dir = tempDir()));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const US = '1.2.840.10008.5.1.4.1.1.6.1';
const US_MF = '1.2.840.10008.5.1.4.1.1.3.1';
function candidate(n: number, over: Partial<KeyImageCandidate>): KeyImageCandidate {
  return { sopClassUid: US, sopInstanceUid: `1.2.826.0.1.3680043.8.498.${n}`, seriesInstanceUid: '1.2.826.0.1.3680043.8.498.100', seriesNumber: 2, instanceNumber: n, label: 'normal', malignancyProbability: 0.02, lesionCount: 0, ...over };
}

describe('Key Object Selection: the study\'s flagged images', () => {
  const study = lesionCase({}).source;
  const candidates = [
    candidate(1, { label: 'benign', malignancyProbability: 0.12, lesionCount: 1 }),
    candidate(2, {}),
    candidate(3, { label: 'malignant', malignancyProbability: 0.83, lesionCount: 2 }),
    // a cine from another series, called on its 7th frame
    candidate(4, { sopClassUid: US_MF, seriesInstanceUid: '1.2.826.0.1.3680043.8.498.200', seriesNumber: 3, instanceNumber: 1, frameNumber: 7, label: 'benign', malignancyProbability: 0.3, lesionCount: 1 }),
  ];
  const analysed = candidates.map((c) => c.sopInstanceUid);

  test('flags the images with a suspected lesion, most suspicious first, and passes dciodvfy and DCMTK', () => {
    const kos = buildKeyImages(study, candidates, analysed, model, { now })!;
    const path = writeDataset(dir, 'kos.dcm', kos);
    const check = checkFile(path);
    expect(check.errors).toEqual([]);
    expect(dciodvfy(path).warnings).toEqual([]);
    expect(check.dcmdumpStatus).toBe(0);
    expect(check.pydicom.sopClassUid).toBe('1.2.840.10008.5.1.4.1.1.88.59');
    const dsr = dsrdump(path);
    expect(dsr.status).toBe(0);
    expect(dsr.output).not.toMatch(/^E:/m);

    const read = readPart10(readFileSync(path)).dataset;
    expect(read.Modality).toBe('KO');
    expect(read.StudyInstanceUID).toBe(study.StudyInstanceUID);
    expect(read.PatientID).toBe(study.PatientID);
    expect(read.ConceptNameCodeSequence[0]).toMatchObject({ CodeValue: '113000', CodingSchemeDesignator: 'DCM' });
    expect(read.ContentTemplateSequence[0]).toMatchObject({ MappingResource: 'DCMR', TemplateIdentifier: '2010' });
    const images = (read.ContentSequence as Dataset[]).filter((i) => i.ValueType === 'IMAGE').map((i) => i.ReferencedSOPSequence[0]);
    // malignant first, then the benign ones by P(malignancy); the normal image is not flagged
    expect(images.map((r) => r.ReferencedSOPInstanceUID)).toEqual([3, 4, 1].map((n) => `1.2.826.0.1.3680043.8.498.${n}`));
    expect(images.map((r) => r.ReferencedFrameNumber)).toEqual([undefined, 7, undefined]);
    // every referenced instance is in the evidence, by series
    const series = read.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence;
    expect(series.map((s: Dataset) => [s.SeriesInstanceUID, s.ReferencedSOPSequence.length])).toEqual([
      ['1.2.826.0.1.3680043.8.498.100', 2],
      ['1.2.826.0.1.3680043.8.498.200', 1],
    ]);
    const [description] = pydicomSrTexts(path).filter((t) => t.startsWith('AI result'));
    expect(description).toBe(
      'AI result — not for diagnostic use. attention-unet-busi 1.0.0 flagged 3 of 4 analysed images of this study, most suspicious first: ' +
        'series 2, image 3: malignant, malignancy 83.0 %, 2 lesions outlined; series 3, image 1, frame 7: benign, malignancy 30.0 %, 1 lesion outlined; series 2, image 1: benign, malignancy 12.0 %, 1 lesion outlined. ' +
        "For each image, its own AI results give the call and, for an outlined lesion, the outline and sizes. Decision support, not a diagnosis.",
    );
  });

  test('each line says how many lesions were outlined: a call without an outline promises no outline or SEG', () => {
    const flagged = [
      candidate(1, { label: 'malignant', malignancyProbability: 0.966, lesionCount: 0 }),
      candidate(2, { label: 'benign', malignancyProbability: 0.123, lesionCount: 1 }),
    ];
    const kos = buildKeyImages(study, flagged, flagged.map((c) => c.sopInstanceUid), model, { now })!;
    const path = writeDataset(dir, 'kos-why.dcm', kos);
    expect(dciodvfy(path).errors).toEqual([]);
    const [description] = pydicomSrTexts(path).filter((t) => t.startsWith('AI result'));
    expect(description).toContain('series 2, image 1: malignant, malignancy 96.6 %, no lesion outlined; series 2, image 2: benign, malignancy 12.3 %, 1 lesion outlined.');
    // the malignant call has no outline, so no SEG: the text must not say every image has one
    expect(description).not.toMatch(/Each image's SR and SEG give the outline/);
  });

  test('no flagged image: no document; the call decides, not the outline', () => {
    // an outline on an image called normal is not flagged: its line would contradict itself
    expect(buildKeyImages(study, [candidate(1, {}), candidate(2, { label: 'normal', lesionCount: 1 })], ['a', 'b'], model, { now })).toBeNull();
    // a call without an outline (too small to keep) is
    expect(keyImages([candidate(1, { label: 'malignant', malignancyProbability: 0.6 }), candidate(2, { label: 'benign', lesionCount: 0 })])).toHaveLength(2);
  });

  test("an image on which the model's networks disagree is flagged whatever its call, and its line says so", () => {
    const mixed = [
      candidate(1, { label: 'benign', malignancyProbability: 0.12, lesionCount: 1 }),
      candidate(2, { label: 'normal', malignancyProbability: 0.06, lowAgreement: true }),
      candidate(3, { label: 'normal', malignancyProbability: 0.04 }),
    ];
    expect(keyImages(mixed).map((c) => c.instanceNumber)).toEqual([1, 2]);
    const kos = buildKeyImages(study, mixed, mixed.map((c) => c.sopInstanceUid), model, { now })!;
    const path = writeDataset(dir, 'kos-disagree.dcm', kos);
    expect(dciodvfy(path).errors).toEqual([]);
    expect(pydicomSrTexts(path).find((t) => t.startsWith('AI result'))).toContain(
      'flagged 2 of 3 analysed images of this study, most suspicious first: series 2, image 1: benign, malignancy 12.0 %, 1 lesion outlined; series 2, image 2: normal, malignancy 6.0 %, networks disagree, no lesion outlined.',
    );
  });

  test('two files sharing a SOP Instance UID are one instance: referenced once, the more suspicious call', () => {
    const twins = [candidate(1, { label: 'benign', malignancyProbability: 0.2, lesionCount: 1 }), candidate(1, { sopClassUid: US_MF, frameNumber: 2, label: 'malignant', malignancyProbability: 0.7, lesionCount: 1 })];
    const kos = buildKeyImages(study, twins, twins.map((c) => c.sopInstanceUid), model, { now })!;
    const path = writeDataset(dir, 'kos-twins.dcm', kos);
    expect(dciodvfy(path).errors).toEqual([]);
    const images = (kos.ContentSequence as Dataset[]).filter((i) => i.ValueType === 'IMAGE');
    expect(images.map((i) => i.ReferencedSOPSequence[0].ReferencedSOPClassUID)).toEqual([US_MF]);
    expect(pydicomSrTexts(path).find((t) => t.startsWith('AI result'))).toContain('flagged 1 of 1 analysed image of this study');
  });

  test('the same analysed set gives the same UIDs (a resend replaces); a study that grew gives a new document in the same series', () => {
    const a = buildKeyImages(study, candidates, analysed, model, { now })!;
    const again = buildKeyImages(study, [...candidates].reverse(), [...analysed].reverse(), model, { now: new Date() })!;
    expect(again.SOPInstanceUID).toBe(a.SOPInstanceUID);
    const grown = buildKeyImages(study, candidates, [...analysed, '1.2.826.0.1.3680043.8.498.5'], model, { now })!;
    expect(grown.SOPInstanceUID).not.toBe(a.SOPInstanceUID);
    expect([a.InstanceNumber, grown.InstanceNumber]).toEqual([4, 5]); // the newer sorts after the older
    expect(grown.SeriesInstanceUID).toBe(a.SeriesInstanceUID);
    const other = buildKeyImages(study, candidates, analysed, { ...model, version: '1.0.1' }, { now })!;
    expect(other.SeriesInstanceUID).not.toBe(a.SeriesInstanceUID);
  });
});
