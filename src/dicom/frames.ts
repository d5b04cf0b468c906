/**
 * Splits Pixel Data into frames, without decoding: byte views of native frames, or the compressed
 * bitstream of each encapsulated frame (PS3.5 A.4).
 */
import { DecodeError } from './errors';
import { ImagePixel } from './imagePixel';

/** dcmjs gives Pixel Data as an array of ArrayBuffers (one per frame or fragment); callers may pass views. */
export function toByteArrays(value: unknown): Uint8Array[] {
  const list = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
  return list.map((v) => {
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    throw new DecodeError('decode.malformed', 'Pixel Data has an unexpected value type');
  });
}

export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Refuses a 0-based frame index the instance does not have. */
export function checkFrameIndex(frame: number, frames: number): void {
  if (!Number.isInteger(frame) || frame < 0 || frame >= frames) {
    throw new DecodeError('decode.malformed', `there is no frame ${Number(frame) + 1}: the instance has ${frames}`);
  }
}

/**
 * The layout of native Pixel Data holding `availableBytes`. Tolerance: some writers label
 * full-resolution YCbCr as YBR_FULL_422; the byte count tells.
 */
export function nativeLayout(info: ImagePixel, availableBytes: number): ImagePixel {
  if (info.photometric === 'YBR_FULL_422' && availableBytes >= info.rows * info.columns * 3 * info.frames) return { ...info, photometric: 'YBR_FULL' };
  return info;
}

/** Bytes of one native frame. YBR_FULL_422 stores two luma and one Cb, Cr pair per two pixels (PS3.3 C.7.6.3.1.2). */
export function nativeFrameBytes(info: ImagePixel): number {
  const pixels = info.rows * info.columns;
  if (info.photometric === 'YBR_FULL_422') return pixels * 2;
  return pixels * info.samplesPerPixel * (info.bitsAllocated / 8);
}

/**
 * Native frames as little-endian byte views. Explicit VR Big Endian stores OW values as 16-bit
 * big-endian words: 16-bit samples, and also 8-bit samples when the VR is OW (PS3.5 7.3 and A.2),
 * are swapped back here (dcmjs leaves them as read).
 */
export function nativeFrames(pixelData: unknown, info: ImagePixel, frameBytes: number, swapWords: boolean): Uint8Array[] {
  let all = concat(toByteArrays(pixelData));
  const needed = frameBytes * info.frames;
  if (all.length < needed) {
    throw new DecodeError('decode.malformed', `Pixel Data holds ${all.length} bytes, ${needed} expected for ${info.frames} frame(s) of ${info.columns}x${info.rows}: truncated`);
  }
  if (swapWords) {
    const swapped = new Uint8Array(needed + (needed % 2));
    swapped.set(all.subarray(0, Math.min(all.length, swapped.length)));
    for (let i = 0; i + 1 < swapped.length; i += 2) {
      const t = swapped[i];
      swapped[i] = swapped[i + 1];
      swapped[i + 1] = t;
    }
    all = swapped;
  }
  const frames: Uint8Array[] = [];
  for (let f = 0; f < info.frames; f++) frames.push(all.subarray(f * frameBytes, (f + 1) * frameBytes));
  return frames;
}

/** Does this fragment start a codestream: JPEG / JPEG-LS SOI, JPEG 2000 SOC+SIZ, or a JP2 signature box? */
export function startsCodestream(b: Uint8Array): boolean {
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xd8) return true;
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0x4f && b[2] === 0xff && b[3] === 0x51) return true;
  return b.length >= 8 && b[3] === 0x0c && b[4] === 0x6a && b[5] === 0x50 && b[6] === 0x20 && b[7] === 0x20;
}

/**
 * One compressed bitstream per frame. dcmjs already groups fragments by the Basic Offset Table
 * when there is one; without it, a frame may still span several fragments (PS3.5 A.4: only RLE
 * requires one fragment per frame), so fragments are grouped where a new codestream starts.
 */
export function encapsulatedFrames(pixelData: unknown, frames: number): Uint8Array[] {
  return encapsulatedFrameParts(pixelData, frames).map(concat);
}

/**
 * The same, each frame left as its fragments (views into Pixel Data): a cine's frames are joined
 * one at a time when decoded, not all at once into a second copy of the Pixel Data.
 */
export function encapsulatedFrameParts(pixelData: unknown, frames: number): Uint8Array[][] {
  const fragments = toByteArrays(pixelData).filter((f) => f.length > 0);
  if (fragments.length === 0) throw new DecodeError('decode.no_pixel_data', 'Pixel Data has no fragments');
  if (frames === 1) return [fragments];
  if (fragments.length === frames) return fragments.map((f) => [f]);
  return groupFragments(fragments, (f) => startsCodestream(f), frames);
}

/**
 * Big-endian 16-bit words of one frame swapped back (a copy). For a frame of an even byte count
 * this is what nativeFrames' swap over the whole Pixel Data gives that frame.
 */
export function swapWords(frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  for (let i = 0; i + 1 < out.length; i += 2) {
    const t = out[i];
    out[i] = out[i + 1];
    out[i + 1] = t;
  }
  return out;
}

/** Fragments grouped into `frames` frames, a new one wherever `startsFrame` says a codestream starts. */
export function groupFragments<T>(fragments: T[], startsFrame: (fragment: T, index: number) => boolean, frames: number): T[][] {
  const groups: T[][] = [];
  fragments.forEach((f, i) => {
    if (groups.length === 0 || startsFrame(f, i)) groups.push([f]);
    else groups[groups.length - 1].push(f);
  });
  if (groups.length !== frames) {
    throw new DecodeError('decode.malformed', `NumberOfFrames is ${frames} but Pixel Data holds ${groups.length} compressed frame(s) in ${fragments.length} fragment(s)`);
  }
  return groups;
}
