/**
 * dicom/decode: one Part 10 instance → 8-bit gray frames at full size + the analysis region.
 *
 * Any accepted transfer syntax (dcmjs parses native, Big Endian and Deflated data; dcmjs-codecs
 * decodes JPEG, JPEG-LS, JPEG 2000 and RLE frame by frame), any colour model, any frame count.
 * Header values are checked against limits before anything frame-sized is allocated, and every
 * failure leaves as a DecodeError with a reason code.
 */
import { AnalysisRegion, Dataset, DecodedInstance, GrayFrame } from '../types/domain';
import { readPart10 } from './part10';
import { DecodeError } from './errors';
import { ImagePixel, readImagePixel } from './imagePixel';
import { checkFrameIndex, encapsulatedFrames, nativeFrameBytes, nativeFrames, nativeLayout, toByteArrays } from './frames';
import { decodeFrame, trimCodecs } from './codecs';
import { applyLut, rgbToGray, ybrFull422ToGray, ybrFullToGray } from './gray';
import { paletteGrayLut } from './palette';
import { monochromeLut } from './monochrome';
import { analysisRegion } from './region';
import { ACCEPTED_TRANSFER_SYNTAXES, TS, codecFamily, isNativeSyntax } from './transferSyntaxes';
import { checkDeflatedSize } from './deflate';
import { DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, maxInflatedBytes } from './limits';

export { DecodeError } from './errors';
export { analysisRegion } from './region';
export { ACCEPTED_SOP_CLASSES, isUltrasoundSopClass } from './sopClasses';
export { ACCEPTED_TRANSFER_SYNTAXES } from './transferSyntaxes';
export { readHeader } from './header';
export type { DicomHeader } from './header';
export { DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS } from './limits';

export interface DecodeOptions {
  /** refuse instances with more frames (decode.too_large); default DEFAULT_MAX_FRAMES */
  maxFrames?: number;
  /** refuse instances with more pixels over all frames (decode.too_large); default DEFAULT_MAX_PIXELS */
  maxPixels?: number;
  /** decode only this frame (0-based; dashboard previews): a long cine costs one frame, not all of them */
  frame?: number;
}

/** Parses a Part 10 file and decodes every frame to 8-bit grayscale, plus the analysis region. Never throws anything but DecodeError. */
export async function decodeInstance(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<DecodedInstance> {
  let parsed: ReturnType<typeof readPart10>;
  try {
    // pako inflates a Deflated data set whole inside dcmjs: measure it first (a zip bomb is tiny)
    await checkDeflatedSize(bytes, maxInflatedBytes(opts.maxPixels ?? DEFAULT_MAX_PIXELS));
    parsed = readPart10(bytes);
  } catch (e) {
    throw asDecodeError(e, 'not a readable DICOM Part 10 file');
  }
  if (!parsed.transferSyntaxUid) throw new DecodeError('decode.malformed', 'File Meta Information has no Transfer Syntax UID');
  return decodeDataset(parsed.dataset, parsed.transferSyntaxUid, opts);
}

/** Same, from an already parsed dataset (naturalized) + transfer syntax. */
export async function decodeDataset(dataset: Dataset, transferSyntaxUid: string, opts: DecodeOptions = {}): Promise<DecodedInstance> {
  try {
    return await decode(dataset, String(transferSyntaxUid ?? '').replace(/\0/g, '').trim(), opts);
  } catch (e) {
    throw asDecodeError(e, 'cannot decode the image');
  } finally {
    trimCodecs();
  }
}

async function decode(ds: Dataset, ts: string, opts: DecodeOptions): Promise<DecodedInstance> {
  if (!ACCEPTED_TRANSFER_SYNTAXES.includes(ts)) {
    throw new DecodeError('decode.unsupported_transfer_syntax', `transfer syntax ${ts || '(none)'} is not supported`);
  }
  if (ds.PixelData === undefined || ds.PixelData === null || (Array.isArray(ds.PixelData) && ds.PixelData.length === 0)) {
    throw new DecodeError('decode.no_pixel_data', 'the instance has no Pixel Data');
  }
  const info = readImagePixel(ds);
  checkLimits(info, opts);
  const region: AnalysisRegion = analysisRegion(ds);
  const pick = framesToDecode(info, opts.frame);
  const frames = isNativeSyntax(ts) ? decodeNative(ds, ts, info, pick) : await decodeEncapsulated(ds, ts, info, pick);
  return {
    sopInstanceUid: text(ds.SOPInstanceUID),
    sopClassUid: text(ds.SOPClassUID),
    rows: info.rows,
    columns: info.columns,
    frames,
    region,
  };
}

/** Which frames to decode: all of them, or the one asked for. */
interface FramePick {
  first: number;
  end: number;
}

function framesToDecode(info: ImagePixel, frame: number | undefined): FramePick {
  if (frame === undefined) return { first: 0, end: info.frames };
  checkFrameIndex(frame, info.frames);
  return { first: frame, end: frame + 1 };
}

function checkLimits(info: ImagePixel, opts: DecodeOptions): void {
  const maxFrames = opts.maxFrames ?? DEFAULT_MAX_FRAMES;
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (info.frames > maxFrames) {
    throw new DecodeError('decode.too_large', `${info.frames} frames, more than the limit of ${maxFrames}`);
  }
  const pixels = info.rows * info.columns * info.frames;
  if (pixels > maxPixels) {
    throw new DecodeError('decode.too_large', `${info.columns}x${info.rows} x ${info.frames} frame(s) = ${pixels} pixels, more than the limit of ${maxPixels}`);
  }
}

function decodeNative(ds: Dataset, ts: string, info: ImagePixel, pick: FramePick): GrayFrame[] {
  if (info.photometric === 'YBR_RCT' || info.photometric === 'YBR_ICT') {
    throw new DecodeError('decode.unsupported_photometric', `${info.photometric} is only defined for JPEG 2000, not for native pixel data`);
  }
  const layout = nativeLayout(info, toByteArrays(ds.PixelData).reduce((n, b) => n + b.length, 0));
  const swapWords = ts === TS.ExplicitVRBigEndian && (info.bitsAllocated === 16 || ds._vrMap?.PixelData === 'OW');
  const raw = nativeFrames(ds.PixelData, layout, nativeFrameBytes(layout), swapWords);
  const palette = paletteLut(ds, info, ts);
  return raw.slice(pick.first, pick.end).map((bytes) => toGray(bytes, layout, ds, { rgb: false, planar: layout.planar, native: true }, palette));
}

async function decodeEncapsulated(ds: Dataset, ts: string, info: ImagePixel, pick: FramePick): Promise<GrayFrame[]> {
  const family = codecFamily(ts);
  if (!family) throw new DecodeError('decode.unsupported_transfer_syntax', `no decoder for transfer syntax ${ts}`);
  const encoded = encapsulatedFrames(ds.PixelData, info.frames).slice(pick.first, pick.end);
  const palette = paletteLut(ds, info, ts);
  const out: GrayFrame[] = [];
  for (const [index, bytes] of encoded.entries()) {
    const decoded = await decodeFrame(family, ts, bytes, info).catch((e: unknown) => {
      const error = asDecodeError(e, 'decoder');
      throw new DecodeError(error.reason, `frame ${pick.first + index + 1} of ${info.frames}: ${error.message}`);
    });
    out.push(toGray(decoded.data, info, ds, { rgb: decoded.rgb, planar: decoded.planar, native: false }, palette));
    // a long cine must not starve the listener and the dashboard sharing this event loop
    await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
}

function paletteLut(ds: Dataset, info: ImagePixel, ts: string): Uint8Array | null {
  if (info.photometric !== 'PALETTE COLOR') return null;
  return paletteGrayLut(ds, info.bitsAllocated, info.signed, ts === TS.ExplicitVRBigEndian);
}

interface SampleLayout {
  /** colour samples are RGB already (decoder converted them) */
  rgb: boolean;
  planar: boolean;
  /** native data: YBR_FULL_422 is still subsampled */
  native: boolean;
}

function toGray(bytes: Uint8Array, info: ImagePixel, ds: Dataset, how: SampleLayout, palette: Uint8Array | null): GrayFrame {
  const width = info.columns;
  const height = info.rows;
  const pixels = width * height;
  let data: Uint8Array;
  if (info.samplesPerPixel === 3) {
    if (how.rgb || info.photometric === 'RGB') data = rgbToGray(bytes, pixels, how.planar);
    else if (info.photometric === 'YBR_FULL_422' && how.native) data = ybrFull422ToGray(bytes, pixels);
    else data = ybrFullToGray(bytes, pixels, how.planar);
  } else {
    const samples = info.bitsAllocated === 8 ? bytes : uint16(bytes, pixels);
    data = applyLut(samples, palette ?? monochromeLut(info, ds, samples));
  }
  return { width, height, data };
}

/** A Uint16Array over little-endian bytes (copied when the view is not 2-byte aligned). */
function uint16(bytes: Uint8Array, count: number): Uint16Array {
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice(0, count * 2);
  return new Uint16Array(aligned.buffer, aligned.byteOffset, count);
}

function text(v: unknown): string {
  const x = Array.isArray(v) ? v[0] : v;
  return typeof x === 'string' ? x.replace(/\0/g, '').trim() : '';
}

/** Wraps anything thrown by dcmjs, the codecs or the runtime: decode lets out DecodeError only. */
function asDecodeError(e: unknown, context: string): DecodeError {
  if (e instanceof DecodeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof RangeError && /alloc|length|memory/i.test(message)) {
    return new DecodeError('decode.too_large', `${context}: ${message}`);
  }
  return new DecodeError('decode.malformed', `${context}: ${message}`);
}
