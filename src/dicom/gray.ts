/**
 * Colour and grayscale samples → 8-bit gray, exactly as the model saw its training images.
 *
 * The model was trained on PIL `Image.convert('L')`, which uses ITU-R BT.601 luma in integer form
 * (Pillow libImaging/Convert.c, L24): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
 * YBR data is converted to RGB first (rgb.ts: libjpeg's integer YCbCr→RGB, which is also what the
 * JPEG decoder applies, and what the overlay shows), then to gray with the same formula. All loops
 * work on typed arrays.
 */
import { ybrBlue, ybrGreen, ybrRed } from './rgb';

export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/** Interleaved (RGBRGB…) or planar (RR…GG…BB…) RGB → gray. */
export function rgbToGray(src: Uint8Array, pixels: number, planar: boolean, out = new Uint8Array(pixels)): Uint8Array {
  if (planar) {
    for (let i = 0; i < pixels; i++) out[i] = luma(src[i], src[pixels + i], src[2 * pixels + i]);
  } else {
    for (let i = 0, j = 0; i < pixels; i++, j += 3) out[i] = luma(src[j], src[j + 1], src[j + 2]);
  }
  return out;
}

function ybrPixelToGray(y: number, cb: number, cr: number): number {
  return luma(ybrRed(y, cr), ybrGreen(y, cb, cr), ybrBlue(y, cb));
}

/** YBR_FULL (or YBR_ICT / YBR_RCT samples left untransformed by a decoder) → gray. */
export function ybrFullToGray(src: Uint8Array, pixels: number, planar: boolean, out = new Uint8Array(pixels)): Uint8Array {
  if (planar) {
    for (let i = 0; i < pixels; i++) out[i] = ybrPixelToGray(src[i], src[pixels + i], src[2 * pixels + i]);
  } else {
    for (let i = 0, j = 0; i < pixels; i++, j += 3) out[i] = ybrPixelToGray(src[j], src[j + 1], src[j + 2]);
  }
  return out;
}

/**
 * Native YBR_FULL_422: each pair of pixels is stored as Y1 Y2 Cb Cr (PS3.3 C.7.6.3.1.2); the shared
 * chroma is used for both pixels (nearest-neighbour upsampling, as DCMTK and pydicom do).
 */
export function ybrFull422ToGray(src: Uint8Array, pixels: number, out = new Uint8Array(pixels)): Uint8Array {
  for (let i = 0, j = 0; i < pixels; i += 2, j += 4) {
    const cb = src[j + 2];
    const cr = src[j + 3];
    out[i] = ybrPixelToGray(src[j], cb, cr);
    if (i + 1 < pixels) out[i + 1] = ybrPixelToGray(src[j + 1], cb, cr);
  }
  return out;
}

/** Maps stored values through a lookup table (palette or grayscale). */
export function applyLut(src: Uint8Array | Uint16Array, lut: Uint8Array, out = new Uint8Array(src.length)): Uint8Array {
  for (let i = 0; i < src.length; i++) out[i] = lut[src[i]];
  return out;
}
