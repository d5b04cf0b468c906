/**
 * Deterministic UIDs for result objects, so that analysing the same source instance again with the
 * same model replaces the earlier results in the PACS instead of adding duplicates.
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
