/**
 * Part 10 file reading and writing with dcmjs: naturalized dataset ⇄ bytes.
 * The one place that touches dcmjs's DicomDict / DicomMessage API.
 */
import dcmjs from 'dcmjs';
import { Dataset } from '../types/domain';

const { DicomDict, DicomMessage, DicomMetaDictionary } = dcmjs.data;

export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
} as const;

export const IMPLEMENTATION_CLASS_UID = '1.2.826.0.1.3680043.10.1453.1';
export const IMPLEMENTATION_VERSION_NAME = 'SONOGATE_010';

/** Serialises a naturalized dataset as a Part 10 file in Explicit VR Little Endian. */
export function writePart10(dataset: Dataset): Buffer {
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: dataset.SOPInstanceUID,
    TransferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return Buffer.from(dict.write({ fragmentMultiframe: false }));
}

export interface ParsedPart10 {
  meta: Dataset;
  dataset: Dataset;
  transferSyntaxUid: string;
}

/** Parses Part 10 bytes into naturalized meta + dataset. Throws on malformed input. */
export function readPart10(bytes: Uint8Array, options: { untilTag?: string } = {}): ParsedPart10 {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const dict = DicomMessage.readFile(ab, { ignoreErrors: false, untilTag: options.untilTag, includeUntilTagValue: false });
  const meta = DicomMetaDictionary.naturalizeDataset(dict.meta);
  const dataset = DicomMetaDictionary.naturalizeDataset(dict.dict);
  return { meta, dataset, transferSyntaxUid: meta.TransferSyntaxUID };
}

export function naturalize(dict: Record<string, unknown>): Dataset {
  return DicomMetaDictionary.naturalizeDataset(dict);
}

export function denaturalize(dataset: Dataset): Record<string, unknown> {
  return DicomMetaDictionary.denaturalizeDataset(dataset);
}
