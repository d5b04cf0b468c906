/**
 * dicom/decode: one Part 10 instance → 8-bit gray frames at full size + the analysis region; and,
 * for the overlay, one frame of a colour instance in its own colours (8-bit RGB).
 *
 * Any accepted transfer syntax (dcmjs parses native, Big Endian and Deflated data; dcmjs-codecs
 * decodes JPEG, JPEG-LS, JPEG 2000 and RLE frame by frame), any colour model, any frame count.
 * Gray and colour take the same path up to the samples of a frame; only the last step differs
 * (toGray or toRgb). Header values are checked against limits before anything frame-sized is
 * allocated, and every failure leaves as a DecodeError with a reason code.
 */
import { readFile } from 'node:fs/promises';
import { AnalysisRegion, Dataset, DecodedInstance, FrameSource, GrayFrame, RgbFrame } from '../types/domain';
import { readPart10 } from './part10';
import { FrameFile, readFrameExcerpt } from './frameExcerpt';
import { DecodeError } from './errors';
import { ImagePixel, readImagePixel } from './imagePixel';
import { checkFrameIndex, concat, encapsulatedFrameParts, nativeFrameBytes, nativeFrames, nativeLayout, swapWords, toByteArrays } from './frames';
import { decodeFrame, trimCodecs } from './codecs';
import { applyLut, rgbToGray, ybrFull422ToGray, ybrFullToGray } from './gray';
import { applyRgbLut, rgbToRgb, ybrFull422ToRgb, ybrFullToRgb } from './rgb';
import { paletteGrayLut, paletteRgbLut } from './palette';
import { monochromeLut } from './monochrome';
import { analysisRegion } from './region';
import { ACCEPTED_TRANSFER_SYNTAXES, CodecFamily, TS, codecFamily, isNativeSyntax } from './transferSyntaxes';
import { checkDeflatedSize } from './deflate';
import { DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, maxInflatedBytes } from './limits';

export { DecodeError } from './errors';
export { analysisRegion } from './region';
export { ACCEPTED_SOP_CLASSES, isUltrasoundSopClass } from './sopClasses';
export { ACCEPTED_TRANSFER_SYNTAXES } from './transferSyntaxes';
export { readHeader } from './header';
export type { DicomHeader } from './header';
export { DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS } from './limits';
export { openFrameFile } from './frameExcerpt';
export type { FrameFile } from './frameExcerpt';

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
  const parsed = await parse(bytes, opts);
  return decodeDataset(parsed.dataset, parsed.transferSyntaxUid, opts);
}

/** Same, from an already parsed dataset (naturalized) + transfer syntax. */
export async function decodeDataset(dataset: Dataset, transferSyntaxUid: string, opts: DecodeOptions = {}): Promise<DecodedInstance> {
  return guarded(() => decode(dataset, cleanSyntax(transferSyntaxUid), opts));
}

/**
 * The pipeline's frames of a stored instance (dicom/frameExcerpt openFrameFile), read from the file
 * and decoded to gray a range at a time: the file is never held whole, nor all its frames. The
 * same checks, in the same order, and the same gray frames as decodeInstance on the whole file.
 * Never throws anything but DecodeError.
 */
export async function frameSourceOfFile(file: FrameFile, opts: Omit<DecodeOptions, 'frame'> = {}): Promise<FrameSource> {
  const ts = cleanSyntax(file.transferSyntaxUid);
  return guarded(async () =>
    grayFrameSource(file.header, ts, opts, true, (info) => {
      if (!isNativeSyntax(ts)) {
        const family = codecFamilyOrThrow(ts);
        return { native: false, info, family, bytes: (f) => file.frame(f) };
      }
      refuseNativeYbrTransform(info);
      // as decodeNative: Big Endian OW words (and 16-bit samples) are swapped back
      const swap = ts === TS.ExplicitVRBigEndian && (info.bitsAllocated === 16 || file.vr === 'OW');
      return { native: true, info: nativeLayout(info, file.nativeBytes ?? 0), bytes: async (f) => (swap ? swapWords(await file.frame(f)) : file.frame(f)) };
    }),
  );
}

/** Frames of an instance as they are stored, ready for toGray / toRgb (native) or a codec (encapsulated). */
type StoredFrames =
  | { native: true; /** the layout (nativeLayout) */ info: ImagePixel; bytes(f: number): Uint8Array | Promise<Uint8Array> }
  | { native: false; info: ImagePixel; family: CodecFamily; bytes(f: number): Uint8Array | Promise<Uint8Array> };

/**
 * What decode() does before its frames, then the frames on demand. `pixelDataKnown`: the caller has
 * found Pixel Data in the file (a header alone holds dcmjs's marker in its place).
 */
function grayFrameSource(ds: Dataset, ts: string, opts: DecodeOptions, pixelDataKnown: boolean, stored: (info: ImagePixel) => StoredFrames): FrameSource {
  const info = checkedImagePixel(ds, ts, opts, pixelDataKnown);
  const region: AnalysisRegion = analysisRegion(ds);
  const palette = info.photometric === 'PALETTE COLOR' ? paletteGrayLut(ds, info.bitsAllocated, info.signed, ts === TS.ExplicitVRBigEndian) : null;
  const frames = stored(info);
  return {
    sopInstanceUid: text(ds.SOPInstanceUID),
    sopClassUid: text(ds.SOPClassUID),
    rows: info.rows,
    columns: info.columns,
    frameCount: info.frames,
    region,
    read: (first, end) => guarded(() => decodeStored(frames, ts, { first, end }, (bytes, layout, how) => toGray(bytes, layout, ds, how, palette))),
  };
}

/**
 * One frame (0-based) of a colour instance (RGB, YBR_*, PALETTE COLOR) as it looks: 8-bit RGB,
 * through the same frame reading, codecs, YBR→RGB conversion and palette as the gray frames. Null
 * for a grayscale instance, whose gray frame already is how it looks; that is known from the
 * header, so a grayscale cine is not parsed again. Only this frame is converted: the overlay needs
 * the reported frame, not a colour copy of the cine. Never throws anything but DecodeError.
 */
export async function decodeColourFrame(bytes: Uint8Array, frame: number, opts: Omit<DecodeOptions, 'frame'> = {}): Promise<RgbFrame | null> {
  // the header alone tells colour from grayscale (after a Deflated one is inflated, as decodeInstance does)
  const header = await parse(bytes, opts, PIXEL_DATA);
  if (!(await guarded(async () => isColour(readImagePixel(header.dataset))))) return null;
  const parsed = await parse(bytes, opts);
  return guarded(() => decodeColour(parsed.dataset, cleanSyntax(parsed.transferSyntaxUid), frame, opts));
}

/**
 * decodeColourFrame for a stored file, reading only its header and that frame (readFrameExcerpt),
 * as the dashboard preview does. The pipeline calls it with the whole instance already decoded to
 * gray and its masks in memory: parsing the file whole a second time for one frame held another
 * copy of every frame (a 576 MB RGB cine took the worker from 1.8 to 2.8 GB at its end). A Deflated
 * data set cannot be read in part: `bytes` (the file, when the caller has read it; else it is read
 * here) are parsed whole as before.
 */
export async function decodeColourFrameOfFile(file: string, bytes: Uint8Array | null, frame: number, opts: Omit<DecodeOptions, 'frame'> = {}): Promise<RgbFrame | null> {
  const excerpt = await readFrameExcerpt(file, frame);
  if (!excerpt) return decodeColourFrame(bytes ?? (await readFile(file)), frame, opts);
  if (!(await guarded(async () => isColour(readImagePixel(excerpt.dataset))))) return null;
  return guarded(() => decodeColour(excerpt.dataset, cleanSyntax(excerpt.transferSyntaxUid), 0, opts));
}

const PIXEL_DATA = '7FE00010';

/** The whole file, or (untilTag) its header only. */
async function parse(bytes: Uint8Array, opts: DecodeOptions, untilTag?: string): Promise<{ dataset: Dataset; transferSyntaxUid: string }> {
  let parsed: ReturnType<typeof readPart10>;
  try {
    // pako inflates a Deflated data set whole inside dcmjs: measure it first (a zip bomb is tiny)
    await checkDeflatedSize(bytes, maxInflatedBytes(opts.maxPixels ?? DEFAULT_MAX_PIXELS));
    parsed = readPart10(bytes, { untilTag });
  } catch (e) {
    throw asDecodeError(e, 'not a readable DICOM Part 10 file');
  }
  if (!parsed.transferSyntaxUid) throw new DecodeError('decode.malformed', 'File Meta Information has no Transfer Syntax UID');
  return { dataset: parsed.dataset, transferSyntaxUid: parsed.transferSyntaxUid };
}

const cleanSyntax = (uid: string) => String(uid ?? '').replace(/\0/g, '').trim();

async function guarded<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    throw asDecodeError(e, 'cannot decode the image');
  } finally {
    trimCodecs();
  }
}

async function decode(ds: Dataset, ts: string, opts: DecodeOptions): Promise<DecodedInstance> {
  const info = checkedImagePixel(ds, ts, opts);
  const region: AnalysisRegion = analysisRegion(ds);
  const pick = framesToDecode(info, opts.frame);
  const palette = info.photometric === 'PALETTE COLOR' ? paletteGrayLut(ds, info.bitsAllocated, info.signed, ts === TS.ExplicitVRBigEndian) : null;
  const frames = await decodeFrames(ds, ts, info, pick, (bytes, layout, how) => toGray(bytes, layout, ds, how, palette));
  return {
    sopInstanceUid: text(ds.SOPInstanceUID),
    sopClassUid: text(ds.SOPClassUID),
    rows: info.rows,
    columns: info.columns,
    frames,
    region,
  };
}

async function decodeColour(ds: Dataset, ts: string, frame: number, opts: DecodeOptions): Promise<RgbFrame | null> {
  const info = checkedImagePixel(ds, ts, opts);
  if (!isColour(info)) return null;
  const palette = info.photometric === 'PALETTE COLOR' ? paletteRgbLut(ds, info.bitsAllocated, info.signed, ts === TS.ExplicitVRBigEndian) : null;
  const [rgb] = await decodeFrames(ds, ts, info, framesToDecode(info, frame), (bytes, layout, how) => toRgb(bytes, layout, how, palette));
  return rgb;
}

function isColour(info: ImagePixel): boolean {
  return info.photometric !== 'MONOCHROME1' && info.photometric !== 'MONOCHROME2';
}

/** The Image Pixel attributes, once the transfer syntax, the Pixel Data and the limits are checked. */
function checkedImagePixel(ds: Dataset, ts: string, opts: DecodeOptions, pixelDataKnown = false): ImagePixel {
  if (!ACCEPTED_TRANSFER_SYNTAXES.includes(ts)) {
    throw new DecodeError('decode.unsupported_transfer_syntax', `transfer syntax ${ts || '(none)'} is not supported`);
  }
  if (!pixelDataKnown && (ds.PixelData === undefined || ds.PixelData === null || (Array.isArray(ds.PixelData) && ds.PixelData.length === 0))) {
    throw new DecodeError('decode.no_pixel_data', 'the instance has no Pixel Data');
  }
  const info = readImagePixel(ds);
  checkLimits(info, opts);
  return info;
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

/** The last step of a frame: its samples (as `info` lays them out, after a codec as `how` says) → the picture wanted. */
type Convert<T> = (bytes: Uint8Array, info: ImagePixel, how: SampleLayout) => T;

async function decodeFrames<T>(ds: Dataset, ts: string, info: ImagePixel, pick: FramePick, convert: Convert<T>): Promise<T[]> {
  return decodeStored(storedFrames(ds, ts, info), ts, pick, convert);
}

/** A parsed data set's frames: views into its Pixel Data (native), or each frame's fragments, joined when decoded. */
function storedFrames(ds: Dataset, ts: string, info: ImagePixel): StoredFrames {
  if (!isNativeSyntax(ts)) {
    const family = codecFamilyOrThrow(ts);
    const parts = encapsulatedFrameParts(ds.PixelData, info.frames);
    return { native: false, info, family, bytes: (f) => concat(parts[f]) };
  }
  refuseNativeYbrTransform(info);
  const layout = nativeLayout(info, toByteArrays(ds.PixelData).reduce((n, b) => n + b.length, 0));
  const swapWords = ts === TS.ExplicitVRBigEndian && (info.bitsAllocated === 16 || ds._vrMap?.PixelData === 'OW');
  const raw = nativeFrames(ds.PixelData, layout, nativeFrameBytes(layout), swapWords);
  return { native: true, info: layout, bytes: (f) => raw[f] };
}

function refuseNativeYbrTransform(info: ImagePixel): void {
  if (info.photometric === 'YBR_RCT' || info.photometric === 'YBR_ICT') {
    throw new DecodeError('decode.unsupported_photometric', `${info.photometric} is only defined for JPEG 2000, not for native pixel data`);
  }
}

function codecFamilyOrThrow(ts: string): CodecFamily {
  const family = codecFamily(ts);
  if (!family) throw new DecodeError('decode.unsupported_transfer_syntax', `no decoder for transfer syntax ${ts}`);
  return family;
}

async function decodeStored<T>(stored: StoredFrames, ts: string, pick: FramePick, convert: Convert<T>): Promise<T[]> {
  const out: T[] = [];
  const { info } = stored;
  for (let f = pick.first; f < pick.end; f++) {
    const bytes = await stored.bytes(f);
    if (stored.native) {
      out.push(convert(bytes, info, { rgb: false, planar: info.planar, native: true }));
      continue;
    }
    const decoded = await decodeFrame(stored.family, ts, bytes, info).catch((e: unknown) => {
      const error = asDecodeError(e, 'decoder');
      throw new DecodeError(error.reason, `frame ${f + 1} of ${info.frames}: ${error.message}`);
    });
    out.push(convert(decoded.data, info, { rgb: decoded.rgb, planar: decoded.planar, native: false }));
    // a long cine must not starve the listener and the dashboard sharing this event loop
    await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
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

/** The same choices as toGray, to RGB: `palette` is paletteRgbLut's table; grayscale samples never come here. */
function toRgb(bytes: Uint8Array, info: ImagePixel, how: SampleLayout, palette: Uint8Array | null): RgbFrame {
  const width = info.columns;
  const height = info.rows;
  const pixels = width * height;
  let data: Uint8Array;
  if (info.samplesPerPixel === 3) {
    if (how.rgb || info.photometric === 'RGB') data = rgbToRgb(bytes, pixels, how.planar);
    else if (info.photometric === 'YBR_FULL_422' && how.native) data = ybrFull422ToRgb(bytes, pixels);
    else data = ybrFullToRgb(bytes, pixels, how.planar);
  } else if (palette) {
    data = applyRgbLut(info.bitsAllocated === 8 ? bytes : uint16(bytes, pixels), palette);
  } else {
    throw new DecodeError('decode.unsupported_photometric', `${info.photometric} has no colour`);
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
