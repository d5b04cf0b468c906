/**
 * Comprehensive SR (PS3.3 A.35.3) following TID 1500 Measurement Report, written as plain
 * naturalized JSON: dcmjs's sr helpers cannot reference a SEG segment today (NOTES.md).
 *
 * Tree:
 *   Imaging Measurement Report (TID 1500)
 *   ├ language, device observer (the model), procedure reported
 *   ├ Image Library ─ Image Library Group ─ the source image
 *   ├ Imaging Measurements ─ one Measurement Group per lesion (TID 1411 rows); each size
 *   │   INFERRED FROM an SCOORD on the source frame: the axis's ends, the area's outline
 *   └ Qualitative Evaluations: disclaimer, class probabilities, the networks' agreement (a model
 *     with outputs.spread), "No lesion found" (or, for a benign or malignant call, "No lesion outlined")
 */
import { Dataset, InstanceResult, Lesion, ModelInfo } from '../types/domain';
import { Code, Codes, Units } from './codes';
import { agreementText, BuildOptions, reportedLesions, NOT_FOR_DIAGNOSIS, noOutlineText, SopClass, commonAttributes, imageReference, isMultiFrame, lateralityCode } from './common';
import { LESION_SEGMENT_NUMBER } from './seg';
import { codeItem, container, evidence, imageItem, Item, languageAndObserver, numItem, scoordItem, textItem, uidItem } from './srItems';
import { derivedUid } from './uids';

export const NO_CALIBRATION = 'The image has no ultrasound region calibration: sizes are in pixels, not mm';

/** an axis between pixel centres (column, row indices) as a two-point polyline in SCOORD space */
const axisPoints = (line: readonly number[]) => line.map((v) => v + 0.5);
/** the outline closed, as a POLYLINE whose last point is its first (PS3.3 C.18.6.1.1) */
const closedOutline = (outline: number[]) => (outline.length >= 2 ? [...outline, outline[0], outline[1]] : []);

const pct = (p: number) => `${(p * 100).toFixed(1)} %`;

/** The model's benign / malignant call as a code; null for "normal" (no neoplasm claimed). */
function classificationCode(result: InstanceResult): Code | null {
  if (result.label === 'malignant') return Codes.malignant;
  if (result.label === 'benign') return Codes.benign;
  return null;
}

/** said in each group when a frame has several lesions: the model classifies the image, not each lesion */
export const IMAGE_LEVEL_CALL = 'The classification and probability are the whole image\'s, repeated in each lesion\'s group; the model does not classify lesions one by one.';

function measurementGroup(source: Dataset, result: InstanceResult, model: ModelInfo, seg: Dataset | null, lesion: Lesion, lesionsOnFrame: number): Item {
  const multi = isMultiFrame(source);
  const name = multi ? `Lesion ${lesion.index}, frame ${lesion.frameIndex + 1}` : `Lesion ${lesion.index}`;
  const side = lateralityCode(source);
  const items: Item[] = [
    textItem('HAS OBS CONTEXT', Codes.trackingIdentifier, name),
    uidItem('HAS OBS CONTEXT', Codes.trackingUid, derivedUid('tracking', source.SOPInstanceUID, model.name, model.version, String(lesion.frameIndex), String(lesion.index))),
    codeItem('CONTAINS', Codes.finding, Codes.mass),
  ];
  if (seg) {
    // The segment as a whole: Referenced Segment Number without Referenced Frame Number (NOTES.md)
    items.push(imageItem(Codes.referencedSegment, { ReferencedSOPClassUID: SopClass.seg, ReferencedSOPInstanceUID: seg.SOPInstanceUID, ReferencedSegmentNumber: LESION_SEGMENT_NUMBER }));
    items.push(uidItem('CONTAINS', Codes.sourceSeriesForSegmentation, source.SeriesInstanceUID));
  }
  items.push(imageItem(Codes.sourceImageForSegmentation, imageReference(source, lesion.frameIndex)));
  items.push(codeItem('HAS CONCEPT MOD', Codes.findingSite, Codes.breast, side ? [codeItem('HAS CONCEPT MOD', Codes.laterality, side)] : undefined));

  const classification = classificationCode(result);
  if (classification) items.push(codeItem('CONTAINS', Codes.pathology, classification));
  items.push(numItem(Codes.probabilityOfCancer, result.malignancyProbability, Units.one));
  if (lesionsOnFrame > 1) items.push(textItem('CONTAINS', Codes.comment, IMAGE_LEVEL_CALL));

  // each size says where it was measured: the axis's two ends, the area's outline
  const frameRef = imageReference(source, lesion.frameIndex);
  const where = (points: number[]) => (points.length >= 4 ? [scoordItem(points, frameRef)] : undefined);
  const longAt = where(axisPoints(lesion.longAxisLine));
  const shortAt = where(axisPoints(lesion.shortAxisLine));
  const areaAt = where(closedOutline(lesion.outline));
  // Sizes in mm only when the region is calibrated; otherwise in pixels, never invented mm.
  if (lesion.longAxisMm !== null && lesion.shortAxisMm !== null && lesion.areaMm2 !== null) {
    items.push(numItem(Codes.longAxis, lesion.longAxisMm, Units.mm, longAt));
    items.push(numItem(Codes.shortAxis, lesion.shortAxisMm, Units.mm, shortAt));
    items.push(numItem(Codes.area, lesion.areaMm2, Units.mm2, areaAt));
  } else {
    items.push(numItem(Codes.longAxis, lesion.longAxisPixels, Units.pixels, longAt));
    items.push(numItem(Codes.shortAxis, lesion.shortAxisPixels, Units.pixels, shortAt));
    items.push(numItem(Codes.area, lesion.areaPixels, Units.pixels, areaAt));
    items.push(textItem('CONTAINS', Codes.comment, NO_CALIBRATION));
  }
  return container('CONTAINS', Codes.measurementGroup, items);
}

function qualitativeEvaluations(result: InstanceResult, multiFrame: boolean): Item {
  const items: Item[] = [textItem('CONTAINS', Codes.comment, `${NOT_FOR_DIAGNOSIS}. Decision support, not a diagnosis.`)];
  if (reportedLesions(result).length === 0) items.push(textItem('CONTAINS', Codes.finding, noOutlineText(result)));
  const probs = Object.entries(result.classProbabilities).map(([label, p]) => `${label} ${pct(p)}`).join(', ');
  // a cine is called by its most suspicious frame: say so, or the reader takes it for the whole clip's
  const frame = multiFrame ? ` (frame ${result.reportedFrameIndex + 1} of ${result.masks.length}, the most suspicious; other frames score lower)` : '';
  items.push(textItem('CONTAINS', Codes.comment, `Model classification: ${result.label}${frame}; class probabilities: ${probs}`));
  if (result.agreement) items.push(textItem('CONTAINS', Codes.comment, agreementText(result.agreement)));
  return container('CONTAINS', Codes.qualitativeEvaluations, items);
}

/** `seg` is the SEG built for the same result, or null when SEG output is off (no segment reference then). */
export function buildSr(source: Dataset, result: InstanceResult, model: ModelInfo, seg: Dataset | null, opts: BuildOptions = {}): Dataset {
  const ds = commonAttributes(source, model, 'sr', opts);
  const sourceRef = imageReference(source);

  const content: Item[] = [
    ...languageAndObserver(model),
    codeItem('HAS CONCEPT MOD', Codes.procedureReported, Codes.breastUltrasound),
    container('CONTAINS', Codes.imageLibrary, [container('CONTAINS', Codes.imageLibraryGroup, [imageItem(null, sourceRef)])]),
  ];
  const lesions = reportedLesions(result);
  if (lesions.length > 0) {
    content.push(container('CONTAINS', Codes.imagingMeasurements, lesions.map((l) => measurementGroup(source, result, model, seg, l, lesions.length))));
  }
  content.push(qualitativeEvaluations(result, isMultiFrame(source)));

  return {
    ...ds,
    // SR Document Series / General modules (PS3.3 C.17.1, C.17.2)
    ReferencedPerformedProcedureStepSequence: [],
    PerformedProcedureCodeSequence: [],
    CompletionFlag: 'COMPLETE',
    VerificationFlag: 'UNVERIFIED',
    // every instance referenced in the tree is listed here (C.17.2.3): the source image as the
    // evidence of the procedure, the SEG as other evidence
    CurrentRequestedProcedureEvidenceSequence: evidence(source.StudyInstanceUID, [{ seriesInstanceUid: source.SeriesInstanceUID, ref: sourceRef }]),
    ...(seg ? { PertinentOtherEvidenceSequence: evidence(source.StudyInstanceUID, [{ seriesInstanceUid: seg.SeriesInstanceUID, ref: { ReferencedSOPClassUID: SopClass.seg, ReferencedSOPInstanceUID: seg.SOPInstanceUID } }]) } : {}),
    // SR Document Content module: the root CONTAINER (C.17.3)
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [Codes.imagingMeasurementReport],
    ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: [{ MappingResource: 'DCMR', TemplateIdentifier: '1500' }],
    ContentSequence: content,
  };
}
