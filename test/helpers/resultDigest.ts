/**
 * Hashes of result files that record their content, not their UIDs: each file is parsed, each
 * result's own UIDs (instance, series, a SEG's dimension organisation), wherever they occur in any
 * of the files (the file meta, an SR naming a SEG), are replaced by their role, and the data set
 * is hashed as canonical JSON (binary values by their bytes). A UID's length moves the encoding's
 * lengths and padding, so hashing the bytes with UIDs swapped would not do. Result UIDs derive from
 * the results revision (src/report/uids.ts): these hashes say whether a change altered what
 * Sonogate writes, whatever the revision.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { readPart10 } from '../../src/dicom/part10';

const sha = (data: string | Uint8Array) => crypto.createHash('sha256').update(data).digest('hex');

export function contentDigests(outputs: { kind: string; path: string }[]): Record<string, string> {
  const parsed = outputs.map((o) => ({ kind: o.kind, ...readPart10(fs.readFileSync(o.path)) }));
  const roles = new Map<string, string>();
  for (const p of parsed) {
    roles.set(p.dataset.SOPInstanceUID, `<${p.kind} instance>`);
    roles.set(p.dataset.SeriesInstanceUID, `<${p.kind} series>`);
    const dimensions = p.dataset.DimensionOrganizationSequence?.[0]?.DimensionOrganizationUID;
    if (dimensions) roles.set(dimensions, `<${p.kind} dimensions>`);
  }
  const canonical = (value: unknown): unknown => {
    if (typeof value === 'string') return roles.get(value) ?? value;
    if (value instanceof ArrayBuffer) return `<bytes ${sha(new Uint8Array(value))}>`;
    if (ArrayBuffer.isView(value)) return `<bytes ${sha(new Uint8Array(value.buffer, value.byteOffset, value.byteLength))}>`;
    if (Array.isArray(value)) return value.map(canonical);
    if (value && typeof value === 'object') {
      const o = value as Record<string, unknown>;
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, canonical(o[k])]));
    }
    return value;
  };
  return Object.fromEntries(parsed.map((p) => [p.kind, sha(JSON.stringify(canonical({ meta: p.meta, dataset: p.dataset }))).slice(0, 16)]));
}
