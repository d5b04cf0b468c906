/**
 * Colour samples → 8-bit RGB, interleaved (RGBRGB…): the frame as it looks, for the overlay.
 *
 * The one YBR→RGB conversion of the project lives here, and gray.ts takes the model's gray from
 * it: libjpeg's integer YCbCr→RGB (jdcolor.c build_ycc_rgb_table, 16-bit fixed point, the
 * PS3.3 C.7.6.3.1.2 YBR_FULL coefficients), which is also what the JPEG decoder applies, so native
 * and JPEG colour agree. All loops work on typed arrays.
 */

const SCALE = 16;
const HALF = 1 << (SCALE - 1);
const fix = (x: number) => Math.round(x * (1 << SCALE));
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (fix(1.402) * x + HALF) >> SCALE;
  CB_B[i] = (fix(1.772) * x + HALF) >> SCALE;
  CR_G[i] = -fix(0.71414) * x;
  CB_G[i] = -fix(0.34414) * x + HALF;
}
const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

/** Red of one YBR_FULL pixel. */
export function ybrRed(y: number, cr: number): number {
  return clamp(y + CR_R[cr]);
}

/** Green of one YBR_FULL pixel. */
export function ybrGreen(y: number, cb: number, cr: number): number {
  return clamp(y + ((CB_G[cb] + CR_G[cr]) >> SCALE));
}

/** Blue of one YBR_FULL pixel. */
export function ybrBlue(y: number, cb: number): number {
  return clamp(y + CB_B[cb]);
}

/** RGB by pixel or by plane (RR…GG…BB…) → a new interleaved buffer (the caller may draw on it). */
export function rgbToRgb(src: Uint8Array, pixels: number, planar: boolean, out = new Uint8Array(pixels * 3)): Uint8Array {
  if (planar) {
    for (let i = 0, j = 0; i < pixels; i++, j += 3) {
      out[j] = src[i];
      out[j + 1] = src[pixels + i];
      out[j + 2] = src[2 * pixels + i];
    }
  } else {
    out.set(src.subarray(0, pixels * 3));
  }
  return out;
}

/** YBR_FULL (or YBR_ICT / YBR_RCT samples left untransformed by a decoder), by pixel or by plane → RGB. */
export function ybrFullToRgb(src: Uint8Array, pixels: number, planar: boolean, out = new Uint8Array(pixels * 3)): Uint8Array {
  const step = planar ? 1 : 3;
  const cbAt = planar ? pixels : 1;
  const crAt = planar ? 2 * pixels : 2;
  for (let i = 0, j = 0, o = 0; i < pixels; i++, j += step, o += 3) {
    const y = src[j];
    const cb = src[j + cbAt];
    const cr = src[j + crAt];
    out[o] = ybrRed(y, cr);
    out[o + 1] = ybrGreen(y, cb, cr);
    out[o + 2] = ybrBlue(y, cb);
  }
  return out;
}

/** Native YBR_FULL_422 (Y1 Y2 Cb Cr per pixel pair, chroma shared by both, as gray.ts reads it) → RGB. */
export function ybrFull422ToRgb(src: Uint8Array, pixels: number, out = new Uint8Array(pixels * 3)): Uint8Array {
  for (let i = 0, j = 0; i < pixels; i += 2, j += 4) {
    const cb = src[j + 2];
    const cr = src[j + 3];
    for (let k = 0; k < 2 && i + k < pixels; k++) {
      const y = src[j + k];
      const o = (i + k) * 3;
      out[o] = ybrRed(y, cr);
      out[o + 1] = ybrGreen(y, cb, cr);
      out[o + 2] = ybrBlue(y, cb);
    }
  }
  return out;
}

/** Maps stored values through an RGB lookup table (3 bytes per stored value: a palette). */
export function applyRgbLut(src: Uint8Array | Uint16Array, lut: Uint8Array, out = new Uint8Array(src.length * 3)): Uint8Array {
  for (let i = 0, o = 0; i < src.length; i++, o += 3) {
    const e = src[i] * 3;
    out[o] = lut[e];
    out[o + 1] = lut[e + 1];
    out[o + 2] = lut[e + 2];
  }
  return out;
}
