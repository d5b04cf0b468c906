/**
 * Colour and grayscale samples → 8-bit gray, exactly as the model saw its training images.
 *
 * The model was trained on PIL `Image.convert('L')`, which uses ITU-R BT.601 luma in integer form
 * (Pillow libImaging/Convert.c, L24): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
 * YBR data is converted to RGB first (libjpeg's integer YCbCr→RGB, which is also what the JPEG
 * decoder applies), then to gray with the same formula. All loops work on typed arrays.
 */

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

// libjpeg jdcolor.c build_ycc_rgb_table: 16-bit fixed point, PS3.3 C.7.6.3.1.2 YBR_FULL coefficients.
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

function ybrPixelToGray(y: number, cb: number, cr: number): number {
  const r = clamp(y + CR_R[cr]);
  const g = clamp(y + ((CB_G[cb] + CR_G[cr]) >> SCALE));
  const b = clamp(y + CB_B[cb]);
  return luma(r, g, b);
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
