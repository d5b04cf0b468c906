/**
 * What the listener accepts at association time (SPEC "What comes in"): the ultrasound storage
 * SOP classes, each with every transfer syntax the decoder handles. Kept apart from decoding so
 * that negotiation never has to load codecs.
 */
import { ACCEPTED_TRANSFER_SYNTAXES, TS } from './transferSyntaxes';

export { ACCEPTED_TRANSFER_SYNTAXES };

export const SopClass = {
  Verification: '1.2.840.10008.1.1',
  UltrasoundImageStorage: '1.2.840.10008.5.1.4.1.1.6.1',
  /** retired (PS3.4 2000 edition) but still sent by older scanners */
  UltrasoundImageStorageRetired: '1.2.840.10008.5.1.4.1.1.6',
  UltrasoundMultiFrameImageStorage: '1.2.840.10008.5.1.4.1.1.3.1',
  SecondaryCaptureImageStorage: '1.2.840.10008.5.1.4.1.1.7',
  SegmentationStorage: '1.2.840.10008.5.1.4.1.1.66.4',
  ComprehensiveSRStorage: '1.2.840.10008.5.1.4.1.1.88.33',
} as const;

/** SOP classes stored by the listener; every other storage class is refused at negotiation. */
export const ACCEPTED_SOP_CLASSES: readonly string[] = [
  SopClass.UltrasoundImageStorage,
  SopClass.UltrasoundImageStorageRetired,
  SopClass.UltrasoundMultiFrameImageStorage,
];

const UNCOMPRESSED: readonly string[] = [TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.ExplicitVRBigEndian];

/** One of the ultrasound storage classes the gateway accepts and analyses. */
export function isUltrasoundSopClass(uid: string): boolean {
  return ACCEPTED_SOP_CLASSES.includes(String(uid ?? '').replace(/\0/g, '').trim());
}

/**
 * Picks the transfer syntax to accept from those an SCU proposes for one presentation context,
 * or null when none is acceptable. The first proposed compressed syntax wins: it is what the
 * scanner stores natively, so the SCU sends it as-is instead of decompressing (PS3.8 9.3.3.2
 * leaves the choice to the acceptor). Otherwise the SCU's first choice, which SCUs list first
 * because it is how they hold the object (so, again, no conversion on their side).
 */
export function chooseTransferSyntax(proposed: readonly string[]): string | null {
  const acceptable = proposed.filter((ts) => ACCEPTED_TRANSFER_SYNTAXES.includes(ts));
  if (acceptable.length === 0) return null;
  const compressed = acceptable.find((ts) => !UNCOMPRESSED.includes(ts));
  return compressed ?? acceptable[0];
}

/** Verification (C-ECHO) needs only the default transfer syntax (PS3.7 A.4). */
export function chooseVerificationTransferSyntax(proposed: readonly string[]): string | null {
  for (const ts of [TS.ImplicitVRLittleEndian, TS.ExplicitVRLittleEndian, TS.ExplicitVRBigEndian]) {
    if (proposed.includes(ts)) return ts;
  }
  return null;
}
