/** Transfer syntaxes decode accepts, and how each one's Pixel Data is stored (PS3.5 §10, Annex A). */
export const TS = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  JpegBaseline: '1.2.840.10008.1.2.4.50',
  JpegExtended: '1.2.840.10008.1.2.4.51',
  JpegLossless: '1.2.840.10008.1.2.4.57',
  JpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  JpegLsLossless: '1.2.840.10008.1.2.4.80',
  JpegLsNearLossless: '1.2.840.10008.1.2.4.81',
  Jpeg2000Lossless: '1.2.840.10008.1.2.4.90',
  Jpeg2000: '1.2.840.10008.1.2.4.91',
  RleLossless: '1.2.840.10008.1.2.5',
} as const;

export const ACCEPTED_TRANSFER_SYNTAXES: string[] = Object.values(TS);

const NATIVE: string[] = [TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.DeflatedExplicitVRLittleEndian, TS.ExplicitVRBigEndian];

/** Native (uncompressed) syntaxes keep Pixel Data as one value; all others encapsulate it in fragments. */
export function isNativeSyntax(uid: string): boolean {
  return NATIVE.includes(uid);
}

export type CodecFamily = 'jpeg' | 'jpeg-ls' | 'jpeg2000' | 'rle';

/** Which decoder of dcmjs-codecs reads an encapsulated syntax. */
export function codecFamily(uid: string): CodecFamily | null {
  switch (uid) {
    case TS.JpegBaseline:
    case TS.JpegExtended:
    case TS.JpegLossless:
    case TS.JpegLosslessSV1:
      return 'jpeg';
    case TS.JpegLsLossless:
    case TS.JpegLsNearLossless:
      return 'jpeg-ls';
    case TS.Jpeg2000Lossless:
    case TS.Jpeg2000:
      return 'jpeg2000';
    case TS.RleLossless:
      return 'rle';
    default:
      return null;
  }
}
