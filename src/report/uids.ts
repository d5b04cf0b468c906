/**
 * Deterministic UIDs for result objects, so that analysing the same source instance again with the
 * same model and the same Sonogate results revision replaces the earlier results in the PACS instead
 * of adding duplicates, and a Sonogate whose results differ sends them under new UIDs.
 */
import { createHash } from 'crypto';

/**
 * "2.25.<decimal>" (PS3.5 B.2: a UUID written as one integer) from the first 128 bits of a SHA-256
 * of the parts. At most 5 + 39 = 44 characters, well under the 64 allowed for UI.
 */
export function derivedUid(...parts: string[]): string {
  // JSON keeps ("a.b", "c") and ("a", "b.c") apart, which a plain join would not.
  const digest = createHash('sha256').update(JSON.stringify(parts)).digest();
  return `2.25.${BigInt('0x' + digest.subarray(0, 16).toString('hex')).toString(10)}`;
}

/**
 * The revision of what Sonogate writes for a given source instance and model: bump it with any
 * change that alters a result object's content (an attribute, a text, geometry, pixels). Result
 * UIDs derive from it, so objects whose content changed reach the PACS under new UIDs, as DICOM
 * wants (one UID, one content), instead of the same UIDs that a PACS already holding them would
 * ignore, keeping the older content. A change that leaves every object byte for byte the same
 * keeps the revision, so an upgrade alone duplicates nothing. test/unit/result-revision.test.ts
 * records each revision's content and fails when the content changes under the same revision.
 */
export const RESULT_REVISION = 1;

/** A result object's UID (series or instance): its parts and the results revision. */
export function resultObjectUid(parts: string[], revision: number = RESULT_REVISION): string {
  return derivedUid(...parts, `results revision ${revision}`);
}
