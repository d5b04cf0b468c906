/**
 * Decodes one compressed frame with the dcmjs-codecs WebAssembly (libjpeg-turbo, CharLS,
 * OpenJPEG and an RLE decoder). We call its per-frame decoders directly rather than its
 * Transcoder: the Transcoder registers neither JPEG Extended (.51) nor JPEG Lossless (.57),
 * refuses frames split over several fragments, and holds every decoded frame at once.
 */
import { Context, NativeCodecs } from 'dcmjs-codecs';
import { bitstreamSize } from './bitstreamSize';
import { DecodeError } from './errors';
import { ImagePixel } from './imagePixel';
import { CodecFamily, TS } from './transferSyntaxes';

let ready: Promise<void> | null = null;

/** Loads the WebAssembly (~30 ms) on first use, and again after it was released. */
function codecsReady(): Promise<void> {
  if (!ready) {
    ready = NativeCodecs.initializeAsync().catch((e: unknown) => {
      ready = null;
      throw new DecodeError('decode.malformed', `cannot load the image codecs: ${e instanceof Error ? e.message : String(e)}`);
    });
  }
  return ready;
}

function releaseCodecs(): void {
  NativeCodecs.release();
  ready = null;
}

/** WebAssembly memory only grows: after a very large frame, hand the instance back rather than keep its heap. */
const KEEP_HEAP_BYTES = 256 * 1024 * 1024;

export function trimCodecs(): void {
  const memory = (NativeCodecs as unknown as { wasmApi?: { wasmMemory?: { buffer: ArrayBuffer } } }).wasmApi?.wasmMemory;
  if (memory && memory.buffer.byteLength > KEEP_HEAP_BYTES) releaseCodecs();
}

export interface DecodedFrame {
  /** little-endian samples, exactly one frame */
  data: Uint8Array;
  planar: boolean;
  /** colour frames only: the decoder produced RGB, whatever the Photometric Interpretation says */
  rgb: boolean;
}

/**
 * Lossy JPEG colour is YCbCr unless its markers say RGB, so libjpeg is always asked for RGB (it
 * reads the JFIF/Adobe markers and leaves an RGB stream alone; NOTES.md measured the result
 * byte-identical to DCMTK). A lossless stream labelled RGB is taken as RGB. dcmjs-codecs' own JPEG
 * codecs choose the same way.
 */
function jpegWantsRgb(transferSyntaxUid: string, info: ImagePixel): boolean {
  if (info.samplesPerPixel !== 3) return false;
  const lossy = transferSyntaxUid === TS.JpegBaseline || transferSyntaxUid === TS.JpegExtended;
  return lossy || info.photometric !== 'RGB';
}

/**
 * After decoding, JPEG colour is RGB (above), and so is JPEG 2000: OpenJPEG undoes the YBR_RCT /
 * YBR_ICT component transform itself (PS3.5 8.2.4), as dcmjs-codecs and pydicom assume.
 * JPEG-LS and RLE return the samples as labelled.
 */
function outputIsRgb(family: CodecFamily, info: ImagePixel): boolean {
  return family === 'jpeg' || family === 'jpeg2000' || info.photometric === 'RGB';
}

function runDecoder(family: CodecFamily, transferSyntaxUid: string, context: Context, info: ImagePixel): Context {
  switch (family) {
    case 'jpeg':
      return NativeCodecs.decodeJpeg(context, { convertColorspaceToRgb: jpegWantsRgb(transferSyntaxUid, info) });
    case 'jpeg-ls':
      return NativeCodecs.decodeJpegLs(context);
    case 'jpeg2000':
      return NativeCodecs.decodeJpeg2000(context);
    case 'rle':
      return NativeCodecs.decodeRle(context);
  }
}

/** Decodes one frame. Throws DecodeError only. */
export async function decodeFrame(family: CodecFamily, transferSyntaxUid: string, encoded: Uint8Array, info: ImagePixel): Promise<DecodedFrame> {
  // the size the bitstream announces is what the decoder will allocate: check it first
  const announced = bitstreamSize(family, encoded);
  if (announced && (announced.width !== info.columns || announced.height !== info.rows)) {
    throw new DecodeError('decode.malformed', `${family} bitstream announces ${announced.width}x${announced.height}, the header says ${info.columns}x${info.rows}`);
  }
  // Another decode may release the instance while we wait; from the check on, nothing awaits.
  while (!NativeCodecs.isInitialized()) await codecsReady();
  const context = new Context({
    width: info.columns,
    height: info.rows,
    bitsAllocated: info.bitsAllocated,
    bitsStored: info.bitsStored,
    samplesPerPixel: info.samplesPerPixel,
    pixelRepresentation: info.signed ? 1 : 0,
    planarConfiguration: info.planar ? 1 : 0,
    photometricInterpretation: info.photometric,
    encodedBuffer: encoded,
  });
  let out: Context;
  try {
    out = runDecoder(family, transferSyntaxUid, context, info);
  } catch (e) {
    // The decoders report errors by throwing through the WebAssembly stack, which skips their
    // cleanup: drop this instance (its heap may be leaked or inconsistent) and load a fresh one.
    releaseCodecs();
    throw new DecodeError('decode.malformed', `${family} decoder failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const data = out.getDecodedBuffer();
  const expected = info.rows * info.columns * info.samplesPerPixel * (info.bitsAllocated / 8);
  // exactly one frame (a decoder may pad an odd size by one byte)
  if (out.getWidth() !== info.columns || out.getHeight() !== info.rows || !data || data.length < expected || data.length > expected + 1) {
    // e.g. whole-slide edge tiles encoded smaller than Rows x Columns (not valid DICOM)
    throw new DecodeError('decode.malformed', `${family} bitstream holds ${data?.length ?? 0} bytes of pixels, ${expected} expected for ${info.columns}x${info.rows}`);
  }
  return { data: data.subarray(0, expected), planar: out.getPlanarConfiguration() === 1, rgb: outputIsRgb(family, info) };
}
