/**
 * The image size a compressed frame announces in its own markers (JPEG and JPEG-LS SOF, JPEG 2000
 * SIZ), read before the frame goes to a decoder: the WebAssembly decoders allocate what the
 * bitstream says, so a 40 KB frame claiming 40000 × 40000 would take gigabytes before any check
 * after decoding could refuse it. RLE carries no size of its own.
 */
import type { CodecFamily } from './transferSyntaxes';

export interface BitstreamSize {
  width: number;
  height: number;
}

const u16 = (b: Uint8Array, i: number) => (b[i] << 8) | b[i + 1];
const u32 = (b: Uint8Array, i: number) => ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3];

/** Start-of-frame markers: JPEG's SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC); JPEG-LS SOF55 (F7). */
const isSof = (m: number) => (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) || m === 0xf7;

function jpegSize(b: Uint8Array): BitstreamSize | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return null;
    const m = b[i + 1];
    if (m === 0xff) {
      i++; // fill byte
      continue;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      i += 2; // no length
      continue;
    }
    if (m === 0xda || m === 0xd9) return null; // scan or end before any frame header
    const length = u16(b, i + 2);
    if (isSof(m)) {
      if (i + 9 > b.length) return null;
      const height = u16(b, i + 5);
      const width = u16(b, i + 7);
      // a height of 0 is given later by a DNL marker
      return height > 0 && width > 0 ? { width, height } : null;
    }
    i += 2 + length;
  }
  return null;
}

function jpeg2000Size(b: Uint8Array): BitstreamSize | null {
  // the codestream (SOC then SIZ) starts the frame, or sits in a JP2 box within the first bytes
  let at = -1;
  for (let i = 0; i + 24 <= b.length && i < 4096; i++) {
    if (b[i] === 0xff && b[i + 1] === 0x4f && b[i + 2] === 0xff && b[i + 3] === 0x51) {
      at = i;
      break;
    }
  }
  if (at < 0 || at + 24 > b.length) return null;
  const width = u32(b, at + 8) - u32(b, at + 16);
  const height = u32(b, at + 12) - u32(b, at + 20);
  return width > 0 && height > 0 ? { width, height } : null;
}

/** The size the frame's bitstream announces, or null when it names none (RLE) or cannot be read. */
export function bitstreamSize(family: CodecFamily, encoded: Uint8Array): BitstreamSize | null {
  switch (family) {
    case 'jpeg':
    case 'jpeg-ls':
      return jpegSize(encoded);
    case 'jpeg2000':
      return jpeg2000Size(encoded);
    default:
      return null;
  }
}
