/**
 * PALETTE COLOR (PS3.3 C.7.6.3.1.5–6 and C.7.9): stored values index three colour lookup tables.
 * We fold the three tables into one table from stored value to RGB (the overlay's colours), and
 * that with the luma formula into one from stored value to gray (the model's input), so a frame
 * costs one lookup per pixel.
 */
import { Dataset } from '../types/domain';
import { DecodeError } from './errors';
import { luma } from './gray';
import { concat, toByteArrays } from './frames';

interface ChannelLut {
  /** stored value mapped to the first entry */
  firstMapped: number;
  /** 8-bit entries */
  entries: Uint8Array;
}

function descriptor(ds: Dataset, colour: string): [number, number, number] {
  const d = ds[`${colour}PaletteColorLookupTableDescriptor`];
  if (!Array.isArray(d) || d.length !== 3 || !d.every((v) => Number.isInteger(Number(v)))) {
    throw new DecodeError('decode.malformed', `${colour}PaletteColorLookupTableDescriptor is missing or not 3 numbers`);
  }
  const [n, first, bits] = d.map(Number);
  // 0 entries means 2^16 (C.7.6.3.1.5); the first mapped value is US or SS depending on the pixels.
  return [n === 0 ? 65536 : n, first, bits];
}

/**
 * LUT Data is OW: 16-bit entries are words; 8-bit entries are "stored as 8 bits allocated"
 * (C.7.6.3.1.5), i.e. packed two per word, but some writers put one 8-bit entry in each word.
 * The data length tells which. In Big Endian files each OW word arrives byte-swapped.
 */
function channel(ds: Dataset, colour: string, bigEndian: boolean): ChannelLut {
  const [n, firstMapped, bits] = descriptor(ds, colour);
  const data = ds[`${colour}PaletteColorLookupTableData`];
  if (data === undefined) {
    const segmented = ds[`Segmented${colour}PaletteColorLookupTableData`] !== undefined;
    throw new DecodeError(
      segmented ? 'decode.unsupported_photometric' : 'decode.malformed',
      segmented ? 'segmented palette lookup tables are not supported' : `${colour}PaletteColorLookupTableData is missing`,
    );
  }
  const bytes = concat(toByteArrays(data));
  const byteAt = (i: number) => bytes[bigEndian ? i ^ 1 : i];
  const entries = new Uint8Array(n);
  if (bytes.length >= 2 * n) {
    const word = (i: number) => byteAt(2 * i) | (byteAt(2 * i + 1) << 8);
    let max = 0;
    for (let i = 0; i < n; i++) max = Math.max(max, word(i));
    // 16-bit entries keep their high byte; 8-bit entries padded to words are taken as they are.
    const shift = bits === 16 || max > 255 ? 8 : 0;
    for (let i = 0; i < n; i++) entries[i] = word(i) >> shift;
  } else if (bytes.length >= n && bits === 8) {
    for (let i = 0; i < n; i++) entries[i] = byteAt(i);
  } else {
    throw new DecodeError('decode.malformed', `${colour}PaletteColorLookupTableData holds ${bytes.length} bytes for ${n} entries of ${bits} bits`);
  }
  return { firstMapped, entries };
}

/** Stored value → R, G, B (3 bytes each), for every value BitsAllocated can hold. Values outside a table take its first or last entry. */
export function paletteRgbLut(ds: Dataset, bitsAllocated: 8 | 16, signed: boolean, bigEndian: boolean): Uint8Array {
  const [r, g, b] = ['Red', 'Green', 'Blue'].map((c) => channel(ds, c, bigEndian));
  // dcmjs reads the ambiguous US/SS first-mapped value as unsigned
  for (const c of [r, g, b]) if (signed && c.firstMapped >= 32768) c.firstMapped -= 65536;
  const size = 1 << bitsAllocated;
  const lut = new Uint8Array(size * 3);
  const pick = (c: ChannelLut, v: number) => c.entries[Math.min(c.entries.length - 1, Math.max(0, v - c.firstMapped))];
  for (let raw = 0; raw < size; raw++) {
    const v = signed && raw >= size / 2 ? raw - size : raw;
    lut[raw * 3] = pick(r, v);
    lut[raw * 3 + 1] = pick(g, v);
    lut[raw * 3 + 2] = pick(b, v);
  }
  return lut;
}

/** Stored value → gray: the luma of paletteRgbLut's colour. */
export function paletteGrayLut(ds: Dataset, bitsAllocated: 8 | 16, signed: boolean, bigEndian: boolean): Uint8Array {
  const rgb = paletteRgbLut(ds, bitsAllocated, signed, bigEndian);
  const lut = new Uint8Array(rgb.length / 3);
  for (let raw = 0; raw < lut.length; raw++) lut[raw] = luma(rgb[raw * 3], rgb[raw * 3 + 1], rgb[raw * 3 + 2]);
  return lut;
}
