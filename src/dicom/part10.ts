/**
 * Part 10 file reading and writing with dcmjs: naturalized dataset ⇄ bytes.
 * The one place that touches dcmjs's DicomDict / DicomMessage API.
 */
import fs from 'node:fs';
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
  return Buffer.from(part10Dict(dataset).write({ fragmentMultiframe: false }));
}

/** Pixel Data's tag, as denaturalized data sets key it: every other tag of a result object sorts before it */
const PIXEL_DATA_TAG = '7FE00010';

/**
 * writePart10 into a file, byte for byte, with native Pixel Data (one buffer, OB or OW, even
 * length) written from its own buffer after the rest: dcmjs copies a value several times over as
 * it writes it (a stream per element, per data set and for the file, then one buffer of all), which
 * for the SEG of a long cine (one bit a pixel of every frame) cost some seven times its size at once.
 */
export function writePart10File(file: string, dataset: Dataset): void {
  const pixels = dataset.PixelData;
  const vr = dataset._vrMap?.PixelData;
  if (Array.isArray(pixels) && pixels.length === 1 && pixels[0] instanceof ArrayBuffer && pixels[0].byteLength % 2 === 0 && (vr === 'OB' || vr === 'OW')) {
    const { PixelData: _pixels, ...rest } = dataset;
    const dict = part10Dict(rest);
    // dcmjs writes the elements in tag order: Pixel Data is last when nothing sorts after it
    if (Object.keys(dict.dict).every((tag) => tag.toUpperCase() < PIXEL_DATA_TAG)) {
      const element = Buffer.alloc(12); // (7FE0,0010), VR, 2 reserved bytes, 4-byte length (PS3.5 7.1.2)
      element.writeUInt16LE(0x7fe0, 0);
      element.writeUInt16LE(0x0010, 2);
      element.write(vr, 4, 'latin1');
      element.writeUInt32LE(pixels[0].byteLength, 8);
      const fd = fs.openSync(file, 'w');
      try {
        for (const part of [Buffer.from(dict.write({ fragmentMultiframe: false })), element, new Uint8Array(pixels[0])]) fs.writeSync(fd, part);
      } finally {
        fs.closeSync(fd);
      }
      return;
    }
  }
  fs.writeFileSync(file, writePart10(dataset));
}

function part10Dict(dataset: Dataset): InstanceType<typeof DicomDict> {
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
  return dict;
}

export interface ParsedPart10 {
  meta: Dataset;
  dataset: Dataset;
  transferSyntaxUid: string;
}

/** dcmjs refuses these character sets (ISO 2022 code extensions as used in Japan and Korea, ISO_IR 203). */
const CHARSET_REFUSAL = /character set/i;

/**
 * Parses Part 10 bytes into naturalized meta + dataset. Throws on malformed input. A data set in
 * a character set dcmjs cannot decode (ISO 2022 IR 87 or IR 149 code extensions, ISO_IR 203) is
 * read all the same: strings are decoded with the default repertoire, and the person-name
 * components that still hold ISO 2022 escape sequences (the ideographic and phonetic ones) are
 * dropped rather than carried into the results as garbage; the alphabetic name stays.
 */
export function readPart10(bytes: Uint8Array, options: { untilTag?: string } = {}): ParsedPart10 {
  // dcmjs reads an ArrayBuffer (and copies the values it returns): a file read whole is passed as
  // it is, not copied first (a cine read whole would otherwise be held twice while it is parsed)
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  const ab = whole ? (bytes.buffer as ArrayBuffer) : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const read = (ignoreErrors: boolean) => DicomMessage.readFile(ab, { ignoreErrors, untilTag: options.untilTag, includeUntilTagValue: false });
  let dict: ReturnType<typeof read>;
  let charsetFallback = false;
  try {
    dict = read(false);
  } catch (e) {
    if (!CHARSET_REFUSAL.test((e as Error)?.message ?? '')) throw e;
    dict = read(true);
    charsetFallback = true;
  }
  const meta = DicomMetaDictionary.naturalizeDataset(dict.meta);
  const dataset = DicomMetaDictionary.naturalizeDataset(dict.dict);
  if (charsetFallback) dropUndecodedNameComponents(dataset);
  return { meta, dataset, transferSyntaxUid: meta.TransferSyntaxUID };
}

function dropUndecodedNameComponents(dataset: Dataset): void {
  for (const value of Object.values(dataset)) {
    if (!Array.isArray(value)) continue;
    for (const v of value) {
      if (!v || typeof v !== 'object' || !('Alphabetic' in v || 'Ideographic' in v || 'Phonetic' in v)) continue;
      const pn = v as Record<string, unknown>;
      for (const part of ['Alphabetic', 'Ideographic', 'Phonetic']) if (typeof pn[part] === 'string' && (pn[part] as string).includes('\u001b')) delete pn[part];
    }
  }
}

/**
 * The Part 10 preamble, "DICM" and File Meta Information (PS3.10 7.1) for a data set received
 * over the network, whose bytes (already in `transferSyntaxUid`) are appended unchanged: the
 * listener stores what the sender sent, without re-encoding.
 */
export function part10Header(meta: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string; sourceAeTitle?: string }): Buffer {
  const m: Dataset = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: meta.sopClassUid,
    MediaStorageSOPInstanceUID: meta.sopInstanceUid,
    TransferSyntaxUID: meta.transferSyntaxUid,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
  };
  if (meta.sourceAeTitle) m.SourceApplicationEntityTitle = meta.sourceAeTitle;
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(m));
  dict.dict = {};
  return Buffer.from(dict.write());
}

/** Value Representations whose explicit-VR header has a 4-byte length (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

/**
 * Where the data set starts in Part 10 bytes: after the preamble, "DICM" and the File Meta
 * Information (group 0002, always Explicit VR Little Endian, PS3.10 7.1). Walks the elements
 * instead of trusting the group length. Throws when the bytes are not Part 10.
 */
export function part10DatasetOffset(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 132 || b.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a DICOM Part 10 file (no DICM prefix)');
  let off = 132;
  while (off + 8 <= b.length && b.readUInt16LE(off) === 0x0002) {
    const vr = b.toString('latin1', off + 4, off + 6);
    if (LONG_VRS.has(vr)) {
      if (off + 12 > b.length) throw new Error('truncated File Meta Information');
      off += 12 + b.readUInt32LE(off + 8);
    } else {
      off += 8 + b.readUInt16LE(off + 6);
    }
  }
  if (off > b.length) throw new Error('truncated File Meta Information');
  return off;
}
