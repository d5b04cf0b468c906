/**
 * MONOCHROME1 / MONOCHROME2 stored values → 8-bit gray, as one lookup table per frame.
 *
 * 8-bit unsigned ultrasound is used as stored: that is what the training PNGs held, and scanners'
 * window values for it are display hints. Deeper or signed data goes through the Modality LUT
 * (Rescale Slope / Intercept) and then the first VOI window (PS3.3 C.11.2.1.2.1, LINEAR), or
 * the frame's own min–max when there is no window. MONOCHROME1 is inverted last, so that
 * "white = high echo" holds for both.
 */
import { Dataset } from '../types/domain';
import { ImagePixel } from './imagePixel';

function first(v: unknown): number | undefined {
  const x = Array.isArray(v) ? v[0] : v;
  const n = typeof x === 'string' ? Number(x) : x;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

/** Stored value (as the raw unsigned word) → modality value, with BitsStored masking and sign extension. */
function modalityValues(info: ImagePixel, ds: Dataset): Float64Array {
  const size = 1 << info.bitsAllocated;
  const mask = 2 ** info.bitsStored - 1;
  const sign = 2 ** (info.bitsStored - 1);
  const slope = first(ds.RescaleSlope) ?? 1;
  const intercept = first(ds.RescaleIntercept) ?? 0;
  const values = new Float64Array(size);
  for (let raw = 0; raw < size; raw++) {
    let v = raw & mask;
    if (info.signed && v >= sign) v -= 2 * sign;
    values[raw] = v * slope + intercept;
  }
  return values;
}

export function monochromeLut(info: ImagePixel, ds: Dataset, samples: Uint8Array | Uint16Array): Uint8Array {
  const size = 1 << info.bitsAllocated;
  const lut = new Uint8Array(size);
  if (info.bitsAllocated === 8 && !info.signed) {
    const mask = 2 ** info.bitsStored - 1;
    for (let raw = 0; raw < size; raw++) lut[raw] = raw & mask;
  } else {
    const values = modalityValues(info, ds);
    const center = first(ds.WindowCenter);
    const width = first(ds.WindowWidth);
    if (center !== undefined && width !== undefined && width >= 1) {
      const low = center - 0.5 - (width - 1) / 2;
      const high = center - 0.5 + (width - 1) / 2;
      for (let raw = 0; raw < size; raw++) {
        const x = values[raw];
        lut[raw] = x <= low ? 0 : x > high ? 255 : Math.round(((x - (center - 0.5)) / (width - 1) + 0.5) * 255);
      }
    } else {
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < samples.length; i++) {
        const x = values[samples[i]];
        if (x < min) min = x;
        if (x > max) max = x;
      }
      const range = max > min ? max - min : Infinity;
      for (let raw = 0; raw < size; raw++) lut[raw] = Math.max(0, Math.min(255, Math.round(((values[raw] - min) * 255) / range)));
    }
  }
  if (info.photometric === 'MONOCHROME1') for (let raw = 0; raw < size; raw++) lut[raw] = 255 - lut[raw];
  return lut;
}
