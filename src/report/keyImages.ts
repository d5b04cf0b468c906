/**
 * The study's summary for the PACS: a Key Object Selection document (PS3.3 A.35.4, TID 2010
 * "Of Interest") that flags the images of the study the model calls benign or malignant, or on
 * which its networks disagree, most suspicious first, with a short description. Viewers show it
 * as the study's key images; the details stay in each image's SR and SEG. Made only when at least one image is flagged (TID 2010
 * needs at least one reference, and "no image of interest" is not what the title says).
 */
import { Dataset, KeyImageCandidate, LABEL_SEVERITY, ModelInfo } from '../types/domain';
import { Codes } from './codes';
import { BuildOptions, NOT_FOR_DIAGNOSIS, commonAttributes } from './common';
import { evidence, Item, languageAndObserver, textItem } from './srItems';
import { RESULT_REVISION, resultObjectUid } from './uids';

export type { KeyImageCandidate };

const pct = (p: number) => `${(p * 100).toFixed(1)} %`;

/**
 * An image is flagged when the model calls it benign or malignant (a suspected lesion), whether or
 * not an outline survived on it; an outline on an image the model calls normal is not flagged, as
 * the document's line for it would contradict itself. An image on which the model's networks disagree
 * is flagged whatever its call: there a "normal" or "benign" is uncertain (on BUSI val 8 of 9 wrong
 * calls were such images), so it is worth the reader's look.
 */
export const isKeyImage = (c: KeyImageCandidate) => c.label !== 'normal' || c.lowAgreement === true;

/**
 * The flagged images, most suspicious first (the label's severity, then P(malignancy)), each SOP
 * Instance UID once: two files that share one (it happens in the wild) are one instance to a PACS,
 * and a document naming it twice under two SOP classes fails validation.
 */
export function keyImages(candidates: KeyImageCandidate[]): KeyImageCandidate[] {
  const seen = new Set<string>();
  return candidates
    .filter(isKeyImage)
    .sort((a, b) => LABEL_SEVERITY[b.label] - LABEL_SEVERITY[a.label] || b.malignancyProbability - a.malignancyProbability || a.sopInstanceUid.localeCompare(b.sopInstanceUid))
    .filter((c) => !seen.has(c.sopInstanceUid) && seen.add(c.sopInstanceUid));
}

const imageName = (c: KeyImageCandidate) => {
  const where = [c.seriesNumber !== undefined ? `series ${c.seriesNumber}` : null, c.instanceNumber !== undefined ? `image ${c.instanceNumber}` : null, c.frameNumber !== undefined ? `frame ${c.frameNumber}` : null].filter(Boolean);
  return where.length ? where.join(', ') : c.sopInstanceUid;
};

/** how many lesions the model outlined on the image (none: too small to keep, or not found) */
const outlined = (n: number) => (n === 0 ? 'no lesion outlined' : n === 1 ? '1 lesion outlined' : `${n} lesions outlined`);

/**
 * One line per flagged image: the model's call and how many lesions it outlined, so that the reader
 * does not look for an outline or a SEG that was never made (a call may come without an outline).
 */
export function keyObjectDescription(flagged: KeyImageCandidate[], analysed: number, model: ModelInfo): string {
  const list = flagged.map((c) => `${imageName(c)}: ${c.label}, malignancy ${pct(c.malignancyProbability)}${c.lowAgreement ? ', networks disagree' : ''}, ${outlined(c.lesionCount)}`).join('; ');
  const noun = analysed === 1 ? 'image' : 'images';
  return `${NOT_FOR_DIAGNOSIS}. ${model.name} ${model.version} flagged ${flagged.length} of ${analysed} analysed ${noun} of this study, most suspicious first: ${list}. For each image, its own AI results give the call and, for an outlined lesion, the outline and sizes. Decision support, not a diagnosis.`;
}

/**
 * `study` is any source instance of the study (its Patient and Study attributes are copied);
 * `analysedUids` are all the study's analysed instances: the document's UID is derived from them,
 * so the same set gives the same document (a resend replaces it) and a study that grew gives a new one.
 * Returns null when no image is flagged.
 */
export function buildKeyImages(study: Dataset, candidates: KeyImageCandidate[], analysedUids: string[], model: ModelInfo, opts: BuildOptions = {}, revision: number = RESULT_REVISION): Dataset | null {
  const flagged = keyImages(candidates);
  if (flagged.length === 0) return null;
  analysedUids = [...new Set(analysedUids)];
  const uids = {
    seriesInstanceUid: resultObjectUid(['series', study.StudyInstanceUID, model.name, model.version, 'kos'], revision),
    sopInstanceUid: resultObjectUid(['kos', study.StudyInstanceUID, model.name, model.version, ...[...analysedUids].sort()], revision),
  };
  const ds = commonAttributes(study, model, 'kos', opts, uids);
  const refs = flagged.map((c) => ({
    seriesInstanceUid: c.seriesInstanceUid,
    ref: { ReferencedSOPClassUID: c.sopClassUid, ReferencedSOPInstanceUID: c.sopInstanceUid, ...(c.frameNumber !== undefined ? { ReferencedFrameNumber: c.frameNumber } : {}) },
  }));
  const content: Item[] = [
    ...languageAndObserver(model),
    textItem('CONTAINS', Codes.keyObjectDescription, keyObjectDescription(flagged, analysedUids.length, model)),
    ...refs.map(({ ref }) => ({ RelationshipType: 'CONTAINS', ValueType: 'IMAGE', ReferencedSOPSequence: [ref] })),
  ];
  return {
    ...ds,
    // a study that grew gets a new document beside the earlier one: numbered by the images it
    // covers, the newer sorts after the older in a viewer's list
    InstanceNumber: analysedUids.length,
    // Key Object Document Series / Document modules (PS3.3 C.17.6)
    ReferencedPerformedProcedureStepSequence: [],
    CurrentRequestedProcedureEvidenceSequence: evidence(study.StudyInstanceUID, refs),
    // SR Document Content module: the root CONTAINER, titled from CID 7010
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [Codes.ofInterest],
    ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: [{ MappingResource: 'DCMR', TemplateIdentifier: '2010' }],
    ContentSequence: content,
  };
}

