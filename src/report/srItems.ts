/**
 * SR content items (PS3.3 C.17.3) and evidence references (C.17.2.3), shared by the measurement
 * report (TID 1500) and the key object selection (TID 2010): one small constructor per value type.
 */
import { Dataset, ModelInfo } from '../types/domain';
import { Code, Codes } from './codes';
import { MANUFACTURER } from './common';
import { derivedUid } from './uids';

export type Relationship = 'CONTAINS' | 'HAS CONCEPT MOD' | 'HAS OBS CONTEXT' | 'INFERRED FROM' | 'SELECTED FROM';
export type Item = Dataset;

export const container = (rel: Relationship, name: Code, children: Item[]): Item => ({
  RelationshipType: rel,
  ValueType: 'CONTAINER',
  ConceptNameCodeSequence: [name],
  ContinuityOfContent: 'SEPARATE',
  ContentSequence: children,
});
export const codeItem = (rel: Relationship, name: Code, value: Code, children?: Item[]): Item => ({
  RelationshipType: rel,
  ValueType: 'CODE',
  ConceptNameCodeSequence: [name],
  ConceptCodeSequence: [value],
  ...(children ? { ContentSequence: children } : {}),
});
export const textItem = (rel: Relationship, name: Code, text: string): Item => ({
  RelationshipType: rel,
  ValueType: 'TEXT',
  ConceptNameCodeSequence: [name],
  TextValue: text,
});
export const uidItem = (rel: Relationship, name: Code, uid: string): Item => ({
  RelationshipType: rel,
  ValueType: 'UIDREF',
  ConceptNameCodeSequence: [name],
  UID: uid,
});
export const numItem = (name: Code, value: number, unit: Code, children?: Item[]): Item => ({
  RelationshipType: 'CONTAINS',
  ValueType: 'NUM',
  ConceptNameCodeSequence: [name],
  // DS holds at most 16 characters
  MeasuredValueSequence: [{ NumericValue: Number(value.toPrecision(6)), MeasurementUnitsCodeSequence: [unit] }],
  ...(children ? { ContentSequence: children } : {}),
});
/**
 * Where a measurement was taken (TID 300's INFERRED FROM, TID 320): a POLYLINE in the source
 * image's pixel space (PS3.3 C.18.6.1.2: the top-left pixel's top-left corner is 0, 0), selected
 * from that image (and frame). Viewers that read TID 1500 draw it over the image.
 */
export const scoordItem = (points: number[], ref: Dataset): Item => ({
  RelationshipType: 'INFERRED FROM',
  ValueType: 'SCOORD',
  GraphicType: 'POLYLINE',
  // FL; a few decimals are all a pixel position needs
  GraphicData: points.map((v) => Math.round(v * 100) / 100),
  ContentSequence: [{ RelationshipType: 'SELECTED FROM', ValueType: 'IMAGE', ReferencedSOPSequence: [ref] }],
});
export const imageItem = (name: Code | null, ref: Dataset): Item => ({
  RelationshipType: 'CONTAINS',
  ValueType: 'IMAGE',
  ...(name ? { ConceptNameCodeSequence: [name] } : {}),
  ReferencedSOPSequence: [ref],
});

/**
 * Hierarchical SOP Instance Reference (PS3.3 C.17.2.3): the referenced instances of one study,
 * grouped by series in the order first seen.
 */
export function evidence(studyInstanceUid: string, refs: { seriesInstanceUid: string; ref: Dataset }[]): Dataset[] {
  const bySeries = new Map<string, Dataset[]>();
  for (const { seriesInstanceUid, ref } of refs) {
    const list = bySeries.get(seriesInstanceUid) ?? [];
    // one entry per instance: frame numbers belong to the content items, not to the evidence
    if (!list.some((r) => r.ReferencedSOPInstanceUID === ref.ReferencedSOPInstanceUID)) list.push({ ReferencedSOPClassUID: ref.ReferencedSOPClassUID, ReferencedSOPInstanceUID: ref.ReferencedSOPInstanceUID });
    bySeries.set(seriesInstanceUid, list);
  }
  return [{ StudyInstanceUID: studyInstanceUid, ReferencedSeriesSequence: [...bySeries].map(([SeriesInstanceUID, ReferencedSOPSequence]) => ({ SeriesInstanceUID, ReferencedSOPSequence })) }];
}

/**
 * The document's language and its observer (TID 1204, TID 1002 / 1004): the model, as a device,
 * the same in every SR-family object Sonogate writes.
 */
export function languageAndObserver(model: ModelInfo): Item[] {
  return [
    codeItem('HAS CONCEPT MOD', Codes.language, Codes.englishUS),
    codeItem('HAS OBS CONTEXT', Codes.observerType, Codes.device),
    uidItem('HAS OBS CONTEXT', Codes.deviceObserverUid, derivedUid('device', model.name, model.version)),
    textItem('HAS OBS CONTEXT', Codes.deviceObserverName, model.name),
    textItem('HAS OBS CONTEXT', Codes.deviceObserverManufacturer, MANUFACTURER),
    textItem('HAS OBS CONTEXT', Codes.deviceObserverModelName, `${model.name} ${model.version}`),
  ];
}
