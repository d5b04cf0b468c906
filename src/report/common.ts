/**
 * What the result objects share (SPEC.md "What goes back to the PACS"): they join the source
 * study, each in a new series per kind, with deterministic UIDs and the equipment being the model.
 * SEG, SR and overlay are made per source instance; the key object selection once per study.
 */
import { Dataset, InstanceResult, Lesion, ModelInfo, NetworkAgreement } from '../types/domain';
import { Code, Codes } from './codes';
import { RESULT_REVISION, resultObjectUid } from './uids';

export type ResultKind = 'seg' | 'sr' | 'overlay' | 'kos';

export interface BuildOptions {
  /** creation time of the object (ContentDate/Time etc.); defaults to now */
  now?: Date;
  /** Device Serial Number of the gateway (type 1 in the Enhanced General Equipment module of SEG) */
  deviceSerialNumber?: string;
}

export const MANUFACTURER = 'Sonogate';
export const NOT_FOR_DIAGNOSIS = 'AI result — not for diagnostic use';
export const NO_LESION_FOUND = 'No lesion found';
/** said instead where the model calls the image benign or malignant but outlined nothing on it */
export const NO_LESION_OUTLINED = 'No lesion outlined: the call is the whole image\'s';

/**
 * What the SR's finding and the overlay say when no outline is reported: "No lesion found" would
 * contradict a benign or malignant call (a lesion the model sensed but did not outline, or one too
 * small to keep), so such a call says that nothing was outlined.
 */
export const noOutlineText = (result: InstanceResult): string => (result.label === 'normal' ? NO_LESION_FOUND : NO_LESION_OUTLINED);
/** the overlay's line where the model's networks disagree (model/EXPERIMENTS.md, rule 29) */
export const LOW_AGREEMENT = 'Networks disagree: uncertain call';

/**
 * The SR's sentence on the networks' agreement. Low agreement marks an uncertain call whatever its
 * probability: on BUSI val a quarter of such calls were wrong, against 1 in 90 of the others.
 */
export function agreementText(a: NetworkAgreement): string {
  const how = `spread of their malignancy probabilities ${a.spread.toFixed(3)}; low above ${a.lowAbove}`;
  if (!a.low) return `Agreement of the model's networks: usual (${how}).`;
  const whose = a.fromMostSuspicious ? " The call and its probabilities are the most suspicious network's, not the networks' average." : '';
  return `Agreement of the model's networks: low (${how}).${whose} The call is uncertain whatever its probability; read the image.`;
}

export const SopClass = {
  seg: '1.2.840.10008.5.1.4.1.1.66.4',
  sr: '1.2.840.10008.5.1.4.1.1.88.33',
  overlay: '1.2.840.10008.5.1.4.1.1.7',
  kos: '1.2.840.10008.5.1.4.1.1.88.59',
} as const;

const MODALITY: Record<ResultKind, string> = { seg: 'SEG', sr: 'SR', overlay: 'OT', kos: 'KO' };
/** high numbers so that the AI series sort after the scanner's own */
const SERIES_NUMBER: Record<ResultKind, number> = { seg: 9001, sr: 9002, overlay: 9003, kos: 9004 };
const SERIES_DESCRIPTION: Record<ResultKind, string> = {
  seg: `AI lesion segmentation (${NOT_FOR_DIAGNOSIS})`,
  sr: `AI lesion report (${NOT_FOR_DIAGNOSIS})`,
  overlay: `AI lesion overlay (${NOT_FOR_DIAGNOSIS})`,
  kos: `AI key images (${NOT_FOR_DIAGNOSIS})`,
};

/**
 * Series: one per source series, model version, results revision and kind, so all results of a
 * source series land in one series. Instance: one per source instance, model version, results
 * revision (src/report/uids.ts) and kind.
 */
export function resultUids(source: Dataset, model: ModelInfo, kind: ResultKind, revision: number = RESULT_REVISION) {
  return {
    seriesInstanceUid: resultObjectUid(['series', source.SeriesInstanceUID, model.name, model.version, kind], revision),
    sopInstanceUid: resultObjectUid(['instance', source.SOPInstanceUID, model.name, model.version, kind], revision),
  };
}

/** Patient and General Study modules, copied so the result files into the source study. */
const STUDY_ATTRIBUTES = [
  'PatientName', 'PatientID', 'IssuerOfPatientID', 'PatientBirthDate', 'PatientSex', 'PatientAge',
  'StudyInstanceUID', 'StudyDate', 'StudyTime', 'AccessionNumber', 'ReferringPhysicianName', 'StudyID',
  'StudyDescription',
];
/** type 2 in the Patient / General Study modules: present even when the source lacks them */
const TYPE2 = new Set(['PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyDate', 'StudyTime', 'AccessionNumber', 'ReferringPhysicianName', 'StudyID']);

/**
 * DA / TM as PS3.5 6.2 wants them. Old ACR-NEMA style values ("1997.04.24", "14:04:38") are
 * still found in real files; copied verbatim they make the result unwritable (DA is 8 bytes).
 * Anything that cannot be repaired becomes empty (the attributes are type 2).
 */
export function normalizeDate(v: unknown): string {
  const digits = String(v ?? '').replace(/[.\-\/\s]/g, '');
  return /^\d{8}$/.test(digits) ? digits : '';
}

export function normalizeTime(v: unknown): string {
  const t = String(v ?? '').trim().replace(/:/g, '');
  return /^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$/.test(t) ? t : '';
}

/** CS with enumerated values M, F, O (PS3.3 C.7.1.1); "Female", "male" and the like are mapped, anything else is empty. */
export function normalizeSex(v: unknown): string {
  const s = String(v ?? '').trim().toUpperCase();
  return /^(M|F|O|MALE|FEMALE|OTHER)$/.test(s) ? s[0] : '';
}

/** AS is nnnD, nnnW, nnnM or nnnY (PS3.5 6.2); a bare number of years ("45") is taken as years; anything else is left out. */
export function normalizeAge(v: unknown): string {
  const m = /^(\d{1,3})\s*([DWMY]?)$/i.exec(String(v ?? '').trim());
  return m ? `${m[1].padStart(3, '0')}${(m[2] || 'Y').toUpperCase()}` : '';
}

/** LO holds at most 64 characters (PS3.5 6.2). */
const lo = (v: unknown) => String(v ?? '').slice(0, 64);

const NORMALIZE: Record<string, (v: unknown) => string> = {
  StudyDate: normalizeDate,
  PatientBirthDate: normalizeDate,
  StudyTime: normalizeTime,
  PatientSex: normalizeSex,
  PatientAge: normalizeAge,
  StudyDescription: lo,
};

/**
 * The source's Patient and General Study attributes, made valid where a value breaks its VR
 * (the results must pass dciodvfy whatever the scanner wrote): type 2 ones become empty, type 3
 * ones are left out.
 */
export function studyAttributes(source: Dataset): Dataset {
  const out: Dataset = {};
  for (const key of STUDY_ATTRIBUTES) {
    const value = source[key] !== undefined && source[key] !== null ? (NORMALIZE[key] ? NORMALIZE[key](source[key]) : source[key]) : undefined;
    if (value !== undefined && value !== '') out[key] = value;
    else if (TYPE2.has(key)) out[key] = '';
  }
  return out;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');
/** DICOM DA / TM in local time, as modalities write them */
export const dicomDate = (d: Date) => `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`;
export const dicomTime = (d: Date) => `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;

/**
 * SOP Common, Patient, General Study, General Series, General Equipment and the dates shared by
 * all result objects. The builders add their own modules on top.
 */
export function commonAttributes(
  source: Dataset,
  model: ModelInfo,
  kind: ResultKind,
  opts: BuildOptions = {},
  uids: { seriesInstanceUid: string; sopInstanceUid: string } = resultUids(source, model, kind),
): Dataset {
  const now = opts.now ?? new Date();
  const { seriesInstanceUid, sopInstanceUid } = uids;
  const date = dicomDate(now);
  const time = dicomTime(now);
  return {
    // dcmjs always writes UTF-8 (and the disclaimer has an em dash)
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: SopClass[kind],
    SOPInstanceUID: sopInstanceUid,
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    ...studyAttributes(source),
    Modality: MODALITY[kind],
    SeriesInstanceUID: seriesInstanceUid,
    SeriesNumber: SERIES_NUMBER[kind],
    SeriesDescription: SERIES_DESCRIPTION[kind],
    SeriesDate: date,
    SeriesTime: time,
    InstanceNumber: Number(source.InstanceNumber ?? 1) || 1,
    ContentDate: date,
    ContentTime: time,
    Manufacturer: MANUFACTURER,
    ManufacturerModelName: model.name,
    DeviceSerialNumber: opts.deviceSerialNumber ?? 'SONOGATE',
    SoftwareVersions: [`${model.name} ${model.version}`],
  };
}

/** SOP classes whose IOD has no Multi-frame module: US Image Storage and its retired variant. */
const SINGLE_FRAME_SOP_CLASSES = new Set(['1.2.840.10008.5.1.4.1.1.6.1', '1.2.840.10008.5.1.4.1.1.6']);

/**
 * The source is a multi-frame image when it has Number of Frames (PS3.3 C.7.6.6) — unless it is of
 * a single-frame SOP class and says 1: scanners write NumberOfFrames 1 into US Image Storage too,
 * and a reference to such an image must not carry a frame number (dciodvfy: "Shall not be present
 * for Referenced SOP Class that is not multi-frame").
 */
export function isMultiFrame(source: Dataset): boolean {
  const n = source.NumberOfFrames;
  if (n === undefined || n === null || n === '') return false;
  return !(SINGLE_FRAME_SOP_CLASSES.has(String(source.SOPClassUID ?? '')) && Number(n) <= 1);
}

/**
 * Image SOP Instance Reference (PS3.3 10.3): Referenced Frame Number only for a multi-frame source;
 * dciodvfy flags it on a single-frame one.
 */
export function imageReference(source: Dataset, frameIndex?: number): Dataset {
  const ref: Dataset = {
    ReferencedSOPClassUID: source.SOPClassUID,
    ReferencedSOPInstanceUID: source.SOPInstanceUID,
  };
  if (frameIndex !== undefined && isMultiFrame(source)) ref.ReferencedFrameNumber = frameIndex + 1;
  return ref;
}

/** The side imaged (Image Laterality, else Laterality): null when unknown or both. */
export function side(source: Dataset): 'L' | 'R' | null {
  const value = String(source.ImageLaterality ?? source.Laterality ?? '').trim().toUpperCase();
  return value === 'L' || value === 'R' ? value : null;
}

export function lateralityCode(source: Dataset): Code | null {
  const s = side(source);
  return s === 'L' ? Codes.left : s === 'R' ? Codes.right : null;
}

/**
 * The lesions the SR and the overlay report: those of the reported (most suspicious) frame, which
 * the classification and the probability belong to. A cine's other frames keep their masks in the SEG.
 */
export function reportedLesions(result: InstanceResult): Lesion[] {
  return result.lesions.filter((l) => l.frameIndex === result.reportedFrameIndex);
}
