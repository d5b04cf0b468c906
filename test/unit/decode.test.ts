/**
 * dicom/decode on synthetic images: every colour model and pixel layout gives the gray frame the
 * model was trained on (Pillow convert('L')), with no files from ../shared and no external tools.
 */
import {
  ACCEPTED_SOP_CLASSES,
  ACCEPTED_TRANSFER_SYNTAXES,
  DecodeError,
  decodeDataset,
  decodeInstance,
  isUltrasoundSopClass,
  readHeader,
} from '../../src/dicom/decode';
import { DEFAULT_MAX_PIXELS, maxInflatedBytes } from '../../src/dicom/limits';
import { luma } from '../../src/dicom/gray';
import { TS } from '../../src/dicom/transferSyntaxes';
import { Dataset } from '../../src/types/domain';
import { phantomDataset, phantomFile, phantomPixels, US_MULTIFRAME_STORAGE } from '../helpers/phantom';
import { deflatedFile, imageDataset, rleFrame } from '../helpers/dicomBuild';

const LE = TS.ExplicitVRLittleEndian;

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  };
}

/** YBR_FULL → RGB as PS3.3 C.7.6.3.1.2 writes it, in floating point (pydicom's formula), then luma. */
function ybrGray(y: number, cb: number, cr: number): number {
  const c = (v: number) => Math.min(255, Math.max(0, Math.floor(v + 0.5)));
  const r = c(y + 1.402 * (cr - 128));
  const g = c(y - ((0.114 * 1.772) / 0.587) * (cb - 128) - ((0.299 * 1.402) / 0.587) * (cr - 128));
  const b = c(y + 1.772 * (cb - 128));
  return luma(r, g, b);
}

async function decodeError(promise: Promise<unknown>): Promise<DecodeError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(DecodeError);
    return e as DecodeError;
  }
  throw new Error('expected a DecodeError');
}

describe('a phantom scan decodes to the pixels it was made of', () => {
  test('MONOCHROME2, one frame, through Part 10 bytes', async () => {
    const out = await decodeInstance(phantomFile({ seed: 5 }));
    const expected = phantomPixels({ seed: 5 })[0];
    expect(out.rows).toBe(251);
    expect(out.columns).toBe(333);
    expect(out.sopInstanceUid).toBe('2.25.10005.1.5');
    expect(out.frames).toHaveLength(1);
    expect(out.frames[0]).toEqual({ width: 333, height: 251, data: expected });
  });

  test('RGB with equal channels gives back the gray values', async () => {
    const out = await decodeInstance(phantomFile({ photometric: 'RGB', seed: 2 }));
    expect(out.frames[0].data).toEqual(phantomPixels({ seed: 2 })[0]);
  });

  test('multi-frame: every frame in order', async () => {
    const out = await decodeInstance(phantomFile({ frames: 3, rows: 64, columns: 80 }));
    const expected = phantomPixels({ frames: 3, rows: 64, columns: 80 });
    expect(out.sopClassUid).toBe(US_MULTIFRAME_STORAGE);
    expect(out.frames.map((f) => f.data)).toEqual(expected);
    expect(out.frames[1].data).not.toEqual(out.frames[0].data); // the lesion moves
  });

  test('MONOCHROME1 is inverted so that echoes stay bright', async () => {
    const ds = { ...phantomDataset({ seed: 4 }), PhotometricInterpretation: 'MONOCHROME1' };
    const out = await decodeDataset(ds, LE);
    expect(out.frames[0].data).toEqual(phantomPixels({ seed: 4 })[0].map((v) => 255 - v));
  });

  test('Deflated Explicit VR Little Endian', async () => {
    const out = await decodeInstance(deflatedFile(phantomDataset({ seed: 6 })));
    expect(out.frames[0].data).toEqual(phantomPixels({ seed: 6 })[0]);
  });
});

describe('colour becomes gray exactly as Pillow convert("L")', () => {
  test('ITU-R BT.601 integer luma (values from Pillow 9.4)', async () => {
    const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30], [255, 255, 255], [1, 2, 3], [128, 64, 250], [37, 180, 91]];
    const ds = imageDataset(new Uint8Array(colours.flat()), { Rows: 1, Columns: 8, SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 });
    const out = await decodeDataset(ds, LE);
    expect(Array.from(out.frames[0].data)).toEqual([76, 150, 29, 124, 255, 2, 104, 127]);
  });

  test('RGB colour-by-plane (PlanarConfiguration 1) equals colour-by-pixel', async () => {
    const rnd = random(1);
    const pixels = 37 * 23;
    const interleaved = Uint8Array.from({ length: pixels * 3 }, rnd);
    const planar = new Uint8Array(pixels * 3);
    for (let i = 0; i < pixels; i++) for (let c = 0; c < 3; c++) planar[c * pixels + i] = interleaved[i * 3 + c];
    const attrs = { Rows: 23, Columns: 37, SamplesPerPixel: 3, PhotometricInterpretation: 'RGB' };
    const a = await decodeDataset(imageDataset(interleaved, { ...attrs, PlanarConfiguration: 0 }), LE);
    const b = await decodeDataset(imageDataset(planar, { ...attrs, PlanarConfiguration: 1 }), LE);
    const expected = Uint8Array.from({ length: pixels }, (_, i) => luma(interleaved[i * 3], interleaved[i * 3 + 1], interleaved[i * 3 + 2]));
    expect(a.frames[0].data).toEqual(expected);
    expect(b.frames[0].data).toEqual(expected);
  });

  test('YBR_FULL, by pixel and by plane, goes through RGB first', async () => {
    const rnd = random(2);
    const pixels = 40 * 30;
    const ybr = Uint8Array.from({ length: pixels * 3 }, rnd);
    const planar = new Uint8Array(pixels * 3);
    for (let i = 0; i < pixels; i++) for (let c = 0; c < 3; c++) planar[c * pixels + i] = ybr[i * 3 + c];
    const attrs = { Rows: 30, Columns: 40, SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL' };
    const expected = Uint8Array.from({ length: pixels }, (_, i) => ybrGray(ybr[i * 3], ybr[i * 3 + 1], ybr[i * 3 + 2]));
    expect((await decodeDataset(imageDataset(ybr, { ...attrs, PlanarConfiguration: 0 }), LE)).frames[0].data).toEqual(expected);
    expect((await decodeDataset(imageDataset(planar, { ...attrs, PlanarConfiguration: 1 }), LE)).frames[0].data).toEqual(expected);
  });

  test('uncompressed YBR_FULL_422: Y1 Y2 Cb Cr per pixel pair, chroma shared by both pixels', async () => {
    const rnd = random(3);
    const rows = 6;
    const columns = 10;
    const packed = Uint8Array.from({ length: rows * columns * 2 }, rnd);
    const out = await decodeDataset(imageDataset(packed, { Rows: rows, Columns: columns, SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL_422', PlanarConfiguration: 0 }), LE);
    const expected = new Uint8Array(rows * columns);
    for (let p = 0; p < (rows * columns) / 2; p++) {
      const [y1, y2, cb, cr] = packed.subarray(p * 4, p * 4 + 4);
      expected[2 * p] = ybrGray(y1, cb, cr);
      expected[2 * p + 1] = ybrGray(y2, cb, cr);
    }
    expect(out.frames[0].data).toEqual(expected);
  });

  test('YBR_FULL_422 label on full-size native data is read as YBR_FULL', async () => {
    const ybr = Uint8Array.from({ length: 4 * 4 * 3 }, random(4));
    const out = await decodeDataset(imageDataset(ybr, { Rows: 4, Columns: 4, SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL_422' }), LE);
    expect(out.frames[0].data).toEqual(Uint8Array.from({ length: 16 }, (_, i) => ybrGray(ybr[i * 3], ybr[i * 3 + 1], ybr[i * 3 + 2])));
  });
});

describe('PALETTE COLOR', () => {
  const red = [0, 255, 0, 90];
  const green = [0, 0, 255, 90];
  const blue = [0, 0, 0, 250];
  const gray = red.map((r, i) => luma(r, green[i], blue[i]));
  const words = (v: number[], shift: number) => new Uint16Array(v.map((x) => x << shift)).buffer;
  const indices = new Uint8Array([0, 9, 10, 11, 12, 13, 14, 255]);
  // first mapped value 10: stored values below it take entry 0, above the table the last entry
  const expected = [gray[0], gray[0], gray[0], gray[1], gray[2], gray[3], gray[3], gray[3]];
  const palette = (table: (v: number[]) => ArrayBuffer, bits: number): Dataset => ({
    RedPaletteColorLookupTableDescriptor: [4, 10, bits],
    GreenPaletteColorLookupTableDescriptor: [4, 10, bits],
    BluePaletteColorLookupTableDescriptor: [4, 10, bits],
    RedPaletteColorLookupTableData: table(red),
    GreenPaletteColorLookupTableData: table(green),
    BluePaletteColorLookupTableData: table(blue),
  });
  const image = (extra: Dataset) => imageDataset(indices, { Rows: 1, Columns: 8, PhotometricInterpretation: 'PALETTE COLOR', ...extra });

  test('16-bit entries keep their high byte; the first mapped value offsets the table', async () => {
    const out = await decodeDataset(image(palette((v) => words(v, 8), 16)), LE);
    expect(Array.from(out.frames[0].data)).toEqual(expected);
  });

  test('8-bit entries, packed two per word or one per word, give the same gray', async () => {
    const packed = await decodeDataset(image(palette((v) => new Uint8Array(v).buffer, 8)), LE);
    const padded = await decodeDataset(image(palette((v) => words(v, 0), 8)), LE);
    expect(Array.from(packed.frames[0].data)).toEqual(expected);
    expect(Array.from(padded.frames[0].data)).toEqual(expected);
  });

  test('Big Endian: LUT words are byte-swapped OW', async () => {
    const bigEndianWords = (v: number[]) => new Uint8Array(v.flatMap((x) => [x, 0])).buffer; // (x << 8) as big-endian bytes
    const out = await decodeDataset(image({ ...palette(bigEndianWords, 16), _vrMap: { PixelData: 'OB' } }), TS.ExplicitVRBigEndian);
    expect(Array.from(out.frames[0].data)).toEqual(expected);
  });

  test('segmented palettes are refused as unsupported', async () => {
    const ds = image({
      ...palette((v) => words(v, 8), 16),
      RedPaletteColorLookupTableData: undefined,
      SegmentedRedPaletteColorLookupTableData: new Uint16Array([0, 4, 0]).buffer,
    });
    expect((await decodeError(decodeDataset(ds, LE))).reason).toBe('decode.unsupported_photometric');
  });
});

describe('16-bit grayscale becomes 8-bit', () => {
  const sixteen = (values: number[], extra: Dataset = {}) =>
    imageDataset(new Uint16Array(values), { Rows: 1, Columns: values.length, BitsAllocated: 16, BitsStored: 16, HighBit: 15, ...extra });

  test('through the VOI window when there is one (PS3.3 C.11.2.1.2.1)', async () => {
    const out = await decodeDataset(sixteen([700, 800, 801, 1000, 1199, 1200, 4000], { WindowCenter: [1000, 50], WindowWidth: [400, 10] }), LE);
    // low edge 800 → 0; 801 → (801 − 999.5) / 399 + 0.5 = 0.0025 → 1; 1000 → 127.8 → 128; above 1199 → 255
    expect(Array.from(out.frames[0].data)).toEqual([0, 0, 1, 128, 255, 255, 255]);
  });

  test('by min–max of the frame otherwise', async () => {
    const out = await decodeDataset(sixteen([100, 200, 300, 150]), LE);
    expect(Array.from(out.frames[0].data)).toEqual([0, 128, 255, 64]);
  });

  test('signed 12-bit stored values with a rescale, then the window', async () => {
    // −1000 stored in 12 bits is 0xC18; the high nibble holds junk that BitsStored masks away
    const stored = [0xfc18, 0x0000, 0x0428, 0x5064];
    const out = await decodeDataset(
      sixteen(stored, { BitsStored: 12, HighBit: 11, PixelRepresentation: 1, RescaleSlope: 1, RescaleIntercept: 24, WindowCenter: 40, WindowWidth: 400 }),
      LE,
    );
    // values −976, 24, 1088, 124 (0x064 + 24) with window 40 / 400
    const w = (x: number) => (x <= 40 - 0.5 - 199.5 ? 0 : x > 40 - 0.5 + 199.5 ? 255 : Math.round(((x - 39.5) / 399 + 0.5) * 255));
    expect(Array.from(out.frames[0].data)).toEqual([-976, 24, 1088, 124].map(w));
    expect(Array.from(out.frames[0].data)).toEqual([0, 118, 255, 182]);
  });

  test('Big Endian 16-bit words are swapped back', async () => {
    const values = [100, 200, 300, 150];
    const be = new Uint8Array(values.flatMap((v) => [v >> 8, v & 0xff]));
    const out = await decodeDataset(imageDataset(be, { Rows: 1, Columns: 4, BitsAllocated: 16, BitsStored: 16, HighBit: 15 }), TS.ExplicitVRBigEndian);
    expect(Array.from(out.frames[0].data)).toEqual([0, 128, 255, 64]);
  });
});

describe('encapsulated frames (RLE, built here)', () => {
  test('a 3-frame MONOCHROME2 cine, one fragment per frame', async () => {
    const frames = phantomPixels({ frames: 3, rows: 30, columns: 41 });
    const ds = imageDataset(frames.map((f) => rleFrame([f])), { Rows: 30, Columns: 41, NumberOfFrames: 3 });
    const out = await decodeDataset(ds, TS.RleLossless);
    expect(out.frames.map((f) => f.data)).toEqual(frames);
  });

  test('RGB: one segment per colour plane', async () => {
    const rnd = random(9);
    const planes = [0, 1, 2].map(() => Uint8Array.from({ length: 12 * 9 }, rnd));
    const ds = imageDataset([rleFrame(planes)], { Rows: 9, Columns: 12, SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 1 });
    const out = await decodeDataset(ds, TS.RleLossless);
    expect(out.frames[0].data).toEqual(Uint8Array.from({ length: 108 }, (_, i) => luma(planes[0][i], planes[1][i], planes[2][i])));
  });

  test('fewer compressed frames than NumberOfFrames is malformed', async () => {
    const frames = phantomPixels({ frames: 2, rows: 8, columns: 8 });
    const ds = imageDataset(frames.map((f) => rleFrame([f])), { Rows: 8, Columns: 8, NumberOfFrames: 3 });
    const error = await decodeError(decodeDataset(ds, TS.RleLossless));
    expect(error.reason).toBe('decode.malformed');
    expect(error.message).toMatch(/NumberOfFrames is 3/);
  });

  test('a corrupt JPEG frame fails cleanly, and the codecs still work afterwards', async () => {
    const garbage = new Uint8Array([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0, 8, 0, 8, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xff, 0xd9]);
    const ds = imageDataset([garbage.buffer], { Rows: 8, Columns: 8, SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL_422' });
    const error = await decodeError(decodeDataset(ds, TS.JpegBaseline));
    expect(error.reason).toBe('decode.malformed');
    expect(error.message).toMatch(/frame 1 of 1: jpeg decoder failed/);
    const frames = phantomPixels({ frames: 1, rows: 8, columns: 8 });
    const ok = await decodeDataset(imageDataset([rleFrame(frames)], { Rows: 8, Columns: 8 }), TS.RleLossless);
    expect(ok.frames[0].data).toEqual(frames[0]);
  });
});

test('concurrent decodes: a corrupt frame in one does not disturb the others', async () => {
  const frames = phantomPixels({ frames: 4, rows: 40, columns: 50, seed: 11 });
  const good = () => decodeDataset(imageDataset(frames.map((f) => rleFrame([f])), { Rows: 40, Columns: 50, NumberOfFrames: 4 }), TS.RleLossless);
  const bad = decodeDataset(imageDataset([new Uint8Array([1, 2, 3, 4]).buffer], { Rows: 40, Columns: 50 }), TS.Jpeg2000Lossless);
  const results = await Promise.allSettled([good(), bad, good(), good()]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  for (const r of results) if (r.status === 'fulfilled') expect(r.value.frames.map((f) => f.data)).toEqual(frames);
  expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(DecodeError);
});

describe('refusals carry a reason code', () => {
  test('no Pixel Data', async () => {
    const ds = phantomDataset();
    delete ds.PixelData;
    expect((await decodeError(decodeDataset(ds, LE))).reason).toBe('decode.no_pixel_data');
  });

  test('a transfer syntax outside the list (MPEG2)', async () => {
    const error = await decodeError(decodeDataset(phantomDataset(), '1.2.840.10008.1.2.4.100'));
    expect(error.reason).toBe('decode.unsupported_transfer_syntax');
    expect(error.message).toContain('1.2.840.10008.1.2.4.100');
  });

  test.each([
    ['CMYK', { PhotometricInterpretation: 'CMYK' }],
    ['YBR_PARTIAL_420', { PhotometricInterpretation: 'YBR_PARTIAL_420', SamplesPerPixel: 3 }],
    ['32-bit samples', { BitsAllocated: 32, BitsStored: 32 }],
    ['16-bit RGB', { PhotometricInterpretation: 'RGB', SamplesPerPixel: 3, BitsAllocated: 16, BitsStored: 16 }],
  ])('unsupported photometric: %s', async (_, attrs) => {
    expect((await decodeError(decodeDataset({ ...phantomDataset(), ...attrs }, LE))).reason).toBe('decode.unsupported_photometric');
  });

  test('too many pixels or frames, checked before any allocation', async () => {
    const ds = phantomDataset({ rows: 100, columns: 100, frames: 2 });
    const pixels = await decodeError(decodeDataset(ds, LE, { maxPixels: 19_999 }));
    expect(pixels.reason).toBe('decode.too_large');
    expect(pixels.message).toMatch(/20000 pixels/);
    expect((await decodeError(decodeDataset(ds, LE, { maxFrames: 1 }))).reason).toBe('decode.too_large');
    // a 65535 × 65535 × 100 000-frame claim with four bytes of pixels
    const claim = imageDataset(new Uint8Array(4), { Rows: 65535, Columns: 65535, NumberOfFrames: 100_000 });
    expect((await decodeError(decodeDataset(claim, LE, { maxFrames: 1e9 }))).reason).toBe('decode.too_large');
  });

  test('truncated native Pixel Data is malformed, not read past its end', async () => {
    const ds = imageDataset(new Uint8Array(15), { Rows: 4, Columns: 4 });
    const error = await decodeError(decodeDataset(ds, LE));
    expect(error.reason).toBe('decode.malformed');
    expect(error.message).toMatch(/15 bytes, 16 expected/);
  });

  test.each([
    ['SamplesPerPixel that does not fit the photometric', { SamplesPerPixel: 3 }],
    ['Rows with two values', { Rows: [32768, 0] }],
    ['Columns missing', { Columns: undefined }],
    ['zero frames', { NumberOfFrames: 0 }],
  ])('malformed header: %s', async (_, attrs) => {
    expect((await decodeError(decodeDataset({ ...phantomDataset(), ...attrs }, LE))).reason).toBe('decode.malformed');
  });

  test('bytes that are not Part 10', async () => {
    expect((await decodeError(decodeInstance(new Uint8Array(0)))).reason).toBe('decode.malformed');
    expect((await decodeError(decodeInstance(Buffer.from('not a dicom file at all'.repeat(20))))).reason).toBe('decode.malformed');
  });

  test('a Deflated file that inflates past the limit is refused while inflating', async () => {
    const bomb = deflatedFile(phantomDataset({ rows: 8, columns: 8 }), 32 * 1024 * 1024);
    expect(bomb.length).toBeLessThan(100_000);
    const error = await decodeError(decodeInstance(bomb, { maxPixels: 1000 }));
    expect(error.reason).toBe('decode.too_large');
    expect(error.message).toMatch(/Deflated/);
  });

  test('whatever the pixel limit, a Deflated data set over 256 MiB inflated is refused (a 1 MB file must not cost gigabytes)', async () => {
    expect(maxInflatedBytes(DEFAULT_MAX_PIXELS)).toBe(256 * 1024 * 1024);
    const bomb = deflatedFile(phantomDataset({ rows: 8, columns: 8 }), 300 * 1024 * 1024);
    expect(bomb.length).toBeLessThan(1_000_000);
    const error = await decodeError(decodeInstance(bomb));
    expect(error.reason).toBe('decode.too_large');
    await expect(readHeader(bomb)).rejects.toMatchObject({ reason: 'decode.too_large' });
  });
});

describe('SOP classes and transfer syntaxes', () => {
  test('the three ultrasound storage classes, retired one included', () => {
    expect([...ACCEPTED_SOP_CLASSES].sort()).toEqual(['1.2.840.10008.5.1.4.1.1.3.1', '1.2.840.10008.5.1.4.1.1.6', '1.2.840.10008.5.1.4.1.1.6.1']);
    expect(isUltrasoundSopClass('1.2.840.10008.5.1.4.1.1.6.1\0')).toBe(true);
    expect(isUltrasoundSopClass('1.2.840.10008.5.1.4.1.1.1.2')).toBe(false); // mammography
    expect(isUltrasoundSopClass('1.2.840.10008.5.1.4.1.1.77.1.6')).toBe(false); // whole slide
  });

  test('every syntax of SPEC.md', () => {
    expect(ACCEPTED_TRANSFER_SYNTAXES).toHaveLength(13);
    for (const uid of ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.5']) {
      expect(ACCEPTED_TRANSFER_SYNTAXES).toContain(uid);
    }
  });
});

test('frame decodes just that frame of a cine (dashboard previews); a frame it lacks is a DecodeError', async () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { phantomFile } = require('../helpers/phantom');
  const { decodeInstance: decode, DecodeError } = await import('../../src/dicom/decode');
  const bytes = phantomFile({ frames: 4, seed: 3 });
  const all = await decode(bytes);
  expect(all.frames).toHaveLength(4);
  for (const f of [0, 2, 3]) {
    const one = await decode(bytes, { frame: f });
    expect(one.frames).toHaveLength(1);
    expect(Buffer.from(one.frames[0].data).equals(Buffer.from(all.frames[f].data))).toBe(true);
  }
  expect(Buffer.from(all.frames[0].data).equals(Buffer.from(all.frames[2].data))).toBe(false);
  await expect(decode(bytes, { frame: 4 })).rejects.toThrow(new DecodeError('decode.malformed', 'there is no frame 5: the instance has 4'));
  await expect(decode(bytes, { frame: -1 })).rejects.toBeInstanceOf(DecodeError);
});
