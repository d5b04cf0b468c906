/**
 * The overlay keeps the source's colours: a Doppler box on a colour scan (RGB, YBR, JPEG, RLE,
 * PALETTE COLOR) comes back to the PACS in colour, not in the model's gray, while a grayscale scan
 * is drawn as its gray frame shows it (MONOCHROME1 inverted). Built here from the phantom, through
 * the real pipeline (processInstanceFile) with a predictor that outlines the phantom's lesion, and
 * checked on the written file as pydicom reads it (and by dciodvfy).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Context, NativeCodecs } from 'dcmjs-codecs';
import { DecodeError, decodeColourFrame, decodeColourFrameOfFile, decodeInstance } from '../../src/dicom/decode';
import * as part10 from '../../src/dicom/part10';
import { luma } from '../../src/dicom/gray';
import { writePart10 } from '../../src/dicom/part10';
import { TS } from '../../src/dicom/transferSyntaxes';
import { FramePredictor } from '../../src/pipeline/analyzeInstance';
import { processInstanceFile } from '../../src/pipeline/processStudy';
import { Dataset, Rect } from '../../src/types/domain';
import { checkFile, sharedDir, tempDir } from '../helpers/dicomTools';
import { phantomPipelineOptions, phantomPredictor as predictorFor } from '../helpers/phantomPredictor';
import { encapsulatedFile, rleFrame } from '../helpers/dicomBuild';
import { phantomDataset, phantomPixels } from '../helpers/phantom';

const ROWS = 251;
const COLUMNS = 333;
const RED = [230, 20, 25];
const BLUE = [20, 40, 235];
/** colour-flow boxes inside the scan region, clear of the phantom's lesion and its axes; even x edges for 4:2:2 */
const BOXES: { colour: number[]; rect: Rect }[] = [
  { colour: RED, rect: { x0: 50, y0: 40, x1: 100, y1: 80 } },
  { colour: BLUE, rect: { x0: 240, y0: 180, x1: 300, y1: 230 } },
];
/** the second frame of a cine gets a green box where the first has its red one */
const GREEN = [30, 210, 40];

let dir: string;
beforeAll(() => {
  dir = tempDir('sonogate-colour-');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const inside = (r: Rect, x: number, y: number) => x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1;

/** The phantom's speckle in gray (R = G = B) with saturated colour boxes: interleaved RGB per frame. */
function dopplerFrames(frames = 1): Uint8Array[] {
  return phantomPixels({ rows: ROWS, columns: COLUMNS, frames, seed: 11 }).map((gray, f) => {
    const rgb = new Uint8Array(gray.length * 3);
    for (let y = 0; y < ROWS; y++) {
      for (let x = 0; x < COLUMNS; x++) {
        const i = y * COLUMNS + x;
        const box = BOXES.find((b) => inside(b.rect, x, y));
        rgb.set(box ? (f === 1 && box.colour === RED ? GREEN : box.colour) : [gray[i], gray[i], gray[i]], i * 3);
      }
    }
    return rgb;
  });
}

/** The phantom's header (calibrated US region) with these pixel attributes and Pixel Data. */
function dataset(attrs: Dataset, pixels: Uint8Array | null, frames = 1): Dataset {
  const ds = phantomDataset({ rows: ROWS, columns: COLUMNS, frames, seed: 11 });
  delete ds.PlanarConfiguration;
  return { ...ds, ...attrs, ...(pixels ? { PixelData: [copy(pixels)] } : {}) };
}

const copy = (a: Uint8Array) => a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength) as ArrayBuffer;
const concat = (parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

function planar(rgb: Uint8Array): Uint8Array {
  const n = rgb.length / 3;
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = rgb[i * 3 + c];
  return out;
}

/** RGB → YBR_FULL as PS3.3 C.7.6.3.1.2 defines it (floating point, rounded) */
function ybrFull(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgb.length);
  const c = (v: number) => Math.min(255, Math.max(0, Math.round(v)));
  for (let i = 0; i < rgb.length; i += 3) {
    const [r, g, b] = [rgb[i], rgb[i + 1], rgb[i + 2]];
    out[i] = c(0.299 * r + 0.587 * g + 0.114 * b);
    out[i + 1] = c(-0.1687 * r - 0.3313 * g + 0.5 * b + 128);
    out[i + 2] = c(0.5 * r - 0.4187 * g - 0.0813 * b + 128);
  }
  return out;
}

/** YBR_FULL → native YBR_FULL_422: Y1 Y2 Cb Cr per pixel pair, the pair's chroma averaged */
function ybr422(ybr: Uint8Array): Uint8Array {
  const pixels = ybr.length / 3;
  const out = new Uint8Array(pixels * 2);
  for (let i = 0, j = 0; i < pixels; i += 2, j += 4) {
    out[j] = ybr[i * 3];
    out[j + 1] = ybr[(i + 1) * 3];
    out[j + 2] = Math.round((ybr[i * 3 + 1] + ybr[(i + 1) * 3 + 1]) / 2);
    out[j + 3] = Math.round((ybr[i * 3 + 2] + ybr[(i + 1) * 3 + 2]) / 2);
  }
  return out;
}

/** JPEG Baseline, YCbCr 4:2:2 (what scanners send), by the same WebAssembly libjpeg the decoder uses */
async function jpegBaseline(rgb: Uint8Array): Promise<Uint8Array> {
  await NativeCodecs.initializeAsync();
  const context = new Context({
    width: COLUMNS,
    height: ROWS,
    bitsAllocated: 8,
    bitsStored: 8,
    samplesPerPixel: 3,
    pixelRepresentation: 0,
    planarConfiguration: 0,
    photometricInterpretation: 'RGB',
    decodedBuffer: rgb,
  });
  const encoded = NativeCodecs.encodeJpeg(context, { lossy: true, quality: 95, sampleFactor: 1 }).getEncodedBuffer();
  return Uint8Array.from(encoded);
}

/** Palette: stored values 0–253 are gray, 254 red and 255 blue; 16-bit entries. */
function paletteDataset(): Dataset {
  const gray = phantomPixels({ rows: ROWS, columns: COLUMNS, seed: 11 })[0];
  const indices = new Uint8Array(gray.length);
  for (let y = 0; y < ROWS; y++) {
    for (let x = 0; x < COLUMNS; x++) {
      const i = y * COLUMNS + x;
      indices[i] = inside(BOXES[0].rect, x, y) ? 254 : inside(BOXES[1].rect, x, y) ? 255 : Math.min(253, gray[i]);
    }
  }
  const table = (channel: number) => {
    const words = new Uint16Array(256);
    for (let v = 0; v < 254; v++) words[v] = v << 8;
    words[254] = RED[channel] << 8;
    words[255] = BLUE[channel] << 8;
    return words.buffer;
  };
  const [r, g, b] = [0, 1, 2].map(table);
  return dataset(
    {
      SamplesPerPixel: 1,
      PhotometricInterpretation: 'PALETTE COLOR',
      RedPaletteColorLookupTableDescriptor: [256, 0, 16],
      GreenPaletteColorLookupTableDescriptor: [256, 0, 16],
      BluePaletteColorLookupTableDescriptor: [256, 0, 16],
      RedPaletteColorLookupTableData: r,
      GreenPaletteColorLookupTableData: g,
      BluePaletteColorLookupTableData: b,
      // the descriptors are US or SS by the pixels (PS3.3 C.7.6.3.1.5): unsigned here
      _vrMap: { PixelData: 'OB', RedPaletteColorLookupTableDescriptor: 'US', GreenPaletteColorLookupTableDescriptor: 'US', BluePaletteColorLookupTableDescriptor: 'US' },
    },
    indices,
  );
}

const phantomPredictor = (lesionFrames: number[]) => predictorFor(ROWS, COLUMNS, lesionFrames);

const OPTIONS = phantomPipelineOptions({ seg: false, sr: false, overlay: true });

interface Overlay {
  /** the image part of the overlay (the caption band cut off), interleaved RGB as pydicom reads it */
  rgbAt: (x: number, y: number) => number[];
  /** the gray frame the model saw */
  grayAt: (x: number, y: number) => number;
  yellow: number;
}

/** Writes the file, runs it through the pipeline, and reads back the overlay (dciodvfy must pass). */
async function overlayOf(name: string, bytes: Uint8Array, lesionFrames = [0]): Promise<Overlay> {
  const file = path.join(dir, `${name}.dcm`);
  fs.writeFileSync(file, bytes);
  const out = path.join(dir, `${name}-out`);
  fs.mkdirSync(out);
  const r = await processInstanceFile(file, out, phantomPredictor(lesionFrames), OPTIONS);
  expect(r.outcome).toMatchObject({ status: 'analysed', lesionCount: 1 });
  const overlay = r.outputs.find((o) => o.kind === 'overlay');
  expect(overlay).toBeDefined();
  const check = checkFile(overlay!.path);
  expect(check.errors).toEqual([]);
  const px = check.pydicom.pixels!;
  expect(check.pydicom.shape?.slice(1)).toEqual([COLUMNS, 3]);
  const decoded = await decodeInstance(bytes);
  const reported = lesionFrames[0];
  const rgbAt = (x: number, y: number) => Array.from(px.subarray((y * COLUMNS + x) * 3, (y * COLUMNS + x) * 3 + 3));
  let yellow = 0;
  for (let y = 0; y < ROWS; y++) for (let x = 0; x < COLUMNS; x++) if (rgbAt(x, y).join() === '255,255,0') yellow++;
  return { rgbAt, grayAt: (x, y) => decoded.frames[reported].data[y * COLUMNS + x], yellow };
}

/** Every pixel of each box (a margin in, for lossy JPEG's ringing) is within `tolerance` of its colour. */
function expectBoxesInColour(o: Overlay, tolerance: number, margin = 0, colours = BOXES.map((b) => b.colour)): void {
  BOXES.forEach(({ rect }, k) => {
    let worst = 0;
    for (let y = rect.y0 + margin; y < rect.y1 - margin; y++) {
      for (let x = rect.x0 + margin; x < rect.x1 - margin; x++) {
        const px = o.rgbAt(x, y);
        worst = Math.max(worst, ...px.map((v, c) => Math.abs(v - colours[k][c])));
      }
    }
    expect({ box: k, worst: worst <= tolerance ? 'within' : worst }).toEqual({ box: k, worst: 'within' });
  });
}

/** The overlay's colour is the one the model's gray came from: luma(R, G, B) is the gray frame, pixel for pixel, off the drawing. */
function expectSameConversionAsGray(o: Overlay): void {
  let compared = 0;
  for (const { rect } of BOXES) {
    for (let y = rect.y0 - 10; y < rect.y1 + 10; y++) {
      for (let x = rect.x0 - 10; x < rect.x1 + 10; x++) {
        const [r, g, b] = o.rgbAt(x, y);
        expect(luma(r, g, b)).toBe(o.grayAt(x, y));
        compared++;
      }
    }
  }
  expect(compared).toBeGreaterThan(5000);
}

describe('the overlay of a colour scan keeps its colours', () => {
  test('RGB, by pixel and by plane: the Doppler boxes are exactly the source pixels, the contour is still drawn', async () => {
    const [rgb] = dopplerFrames();
    for (const [name, pixels, pc] of [
      ['rgb-pixel', rgb, 0],
      ['rgb-plane', planar(rgb), 1],
    ] as const) {
      const o = await overlayOf(name, writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: pc }, pixels)));
      expectBoxesInColour(o, 0);
      expectSameConversionAsGray(o);
      // the speckle around the boxes is gray as it was stored
      expect(o.rgbAt(45, 60)).toEqual([rgb[(60 * COLUMNS + 45) * 3], rgb[(60 * COLUMNS + 45) * 3], rgb[(60 * COLUMNS + 45) * 3]]);
      expect(o.yellow).toBeGreaterThan(100);
    }
  });

  test('YBR_FULL and native YBR_FULL_422 are shown in RGB, through the conversion the gray comes from', async () => {
    const ybr = ybrFull(dopplerFrames()[0]);
    const full = await overlayOf('ybr-full', writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL', PlanarConfiguration: 0 }, ybr)));
    expectBoxesInColour(full, 3);
    expectSameConversionAsGray(full);
    const sub = await overlayOf('ybr-422', writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL_422', PlanarConfiguration: 0 }, ybr422(ybr))));
    expectBoxesInColour(sub, 3, 1); // 333 columns: on odd rows a chroma pair straddles each box's edge
    expectSameConversionAsGray(sub);
    expect(sub.yellow).toBeGreaterThan(100);
  });

  test('JPEG Baseline YBR_FULL_422 (the usual scanner file) and RLE RGB, through the codecs', async () => {
    const [rgb] = dopplerFrames();
    const ds = dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL_422', PlanarConfiguration: 0, LossyImageCompression: '01' }, null);
    const jpeg = await overlayOf('jpeg-baseline', encapsulatedFile(ds, TS.JpegBaseline, [await jpegBaseline(rgb)]));
    expectBoxesInColour(jpeg, 24, 4); // lossy: close, not exact
    expectSameConversionAsGray(jpeg);

    const planes = [0, 1, 2].map((c) => rgb.filter((_, i) => i % 3 === c));
    const rleDs = dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 }, null);
    const rle = await overlayOf('rle-rgb', encapsulatedFile(rleDs, TS.RleLossless, [new Uint8Array(rleFrame(planes))]));
    expectBoxesInColour(rle, 0);
    expectSameConversionAsGray(rle);
  });

  test('PALETTE COLOR is looked up to RGB, not to its gray', async () => {
    const o = await overlayOf('palette', writePart10(paletteDataset()));
    expectBoxesInColour(o, 0);
    expectSameConversionAsGray(o);
    expect(o.yellow).toBeGreaterThan(100);
  });

  test('a cine: the reported frame is drawn in its own colours, not another frame of it', async () => {
    const frames = dopplerFrames(2);
    const o = await overlayOf('rgb-cine', writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 }, concat(frames), 2)), [1]);
    expectBoxesInColour(o, 0, 0, [GREEN, BLUE]);
    expectSameConversionAsGray(o);
  });
});

describe('the overlay of a grayscale scan is its gray frame', () => {
  test('MONOCHROME2 as stored and MONOCHROME1 inverted, R = G = B off the contour', async () => {
    const gray = phantomPixels({ rows: ROWS, columns: COLUMNS, seed: 11 })[0];
    for (const [photometric, shown] of [
      ['MONOCHROME2', (v: number) => v],
      ['MONOCHROME1', (v: number) => 255 - v],
    ] as const) {
      const o = await overlayOf(photometric, writePart10(dataset({ SamplesPerPixel: 1, PhotometricInterpretation: photometric }, gray)));
      for (const { rect } of BOXES) {
        for (let y = rect.y0; y < rect.y1; y++) {
          for (let x = rect.x0; x < rect.x1; x++) {
            const v = shown(gray[y * COLUMNS + x]);
            expect(o.rgbAt(x, y)).toEqual([v, v, v]);
          }
        }
      }
      expect(o.yellow).toBeGreaterThan(100);
    }
  });
});

describe('decodeColourFrame', () => {
  test('null for grayscale: the gray frame already is the picture', async () => {
    const gray = phantomPixels({ rows: ROWS, columns: COLUMNS, seed: 11 })[0];
    expect(await decodeColourFrame(writePart10(dataset({ SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2' }, gray)), 0)).toBeNull();
    expect(await decodeColourFrame(writePart10(dataset({ SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME1' }, gray)), 0)).toBeNull();
  });

  test('decodes the one frame asked for; a frame the instance lacks is a DecodeError', async () => {
    const frames = dopplerFrames(2);
    const bytes = writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 }, concat(frames), 2));
    const second = await decodeColourFrame(bytes, 1);
    expect(second).toMatchObject({ width: COLUMNS, height: ROWS });
    expect(Buffer.compare(Buffer.from(second!.data), Buffer.from(frames[1]))).toBe(0);
    await expect(decodeColourFrame(bytes, 2)).rejects.toBeInstanceOf(DecodeError);
    await expect(decodeColourFrame(new Uint8Array(200), 0)).rejects.toBeInstanceOf(DecodeError);
  });
});

describe('decodeColourFrameOfFile (the pipeline\'s overlay frame, read from the file alone)', () => {
  test('a colour cine is never parsed whole: not for its analysis, not a second time for the overlay frame', async () => {
    // load test: a 576 MB RGB cine (400 frames of 800 × 600) took the worker from 1.8 to 2.8 GB
    // at the overlay, when its reported frame was found by parsing every frame again; since, the
    // analysis reads the file a batch of frames at a time too
    const frames = dopplerFrames(6);
    const bytes = writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 }, concat(frames), 6));
    const file = path.join(dir, 'cine-once.dcm');
    fs.writeFileSync(file, bytes);
    const out = path.join(dir, 'cine-once-out');
    fs.mkdirSync(out);
    const spy = jest.spyOn(part10, 'readPart10');
    try {
      const r = await processInstanceFile(file, out, phantomPredictor([4]), OPTIONS);
      expect(r.outcome).toMatchObject({ status: 'analysed' });
      expect(r.outputs.some((o) => o.kind === 'overlay')).toBe(true);
      // dcmjs parses headers only (and the overlay's one-frame excerpt), never the whole file
      expect(spy.mock.calls.length).toBeGreaterThan(0);
      const whole = spy.mock.calls.filter(([b]) => (b as Uint8Array).length >= bytes.length);
      expect(whole).toHaveLength(0);
    } finally {
      spy.mockRestore();
    }
  });

  test('gives what decodeColourFrame gives, and null for grayscale', async () => {
    const frames = dopplerFrames(3);
    const bytes = writePart10(dataset({ SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 }, concat(frames), 3));
    const file = path.join(dir, 'of-file.dcm');
    fs.writeFileSync(file, bytes);
    for (const f of [0, 2]) {
      const a = (await decodeColourFrameOfFile(file, bytes, f))!;
      const b = (await decodeColourFrame(bytes, f))!;
      expect({ width: a.width, height: a.height, same: Buffer.compare(Buffer.from(a.data), Buffer.from(b.data)) }).toEqual({ width: b.width, height: b.height, same: 0 });
    }
    await expect(decodeColourFrameOfFile(file, bytes, 3)).rejects.toBeInstanceOf(DecodeError);
    const gray = writePart10(dataset({ SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2' }, phantomPixels({ rows: ROWS, columns: COLUMNS, seed: 12 })[0]));
    const grayFile = path.join(dir, 'of-file-gray.dcm');
    fs.writeFileSync(grayFile, gray);
    expect(await decodeColourFrameOfFile(grayFile, gray, 0)).toBeNull();
  });
});

const shared = sharedDir();
const US = shared ? path.join(shared, 'dicom-samples', 'us') : '';
(shared && fs.existsSync(US) ? describe : describe.skip)('vendor colour files (../shared)', () => {
  test('every colour sample: luma of its colour frame is the gray frame the model sees, pixel for pixel', async () => {
    let colourFiles = 0;
    for (const f of fs.readdirSync(US).sort()) {
      const bytes = fs.readFileSync(path.join(US, f));
      const gray = await decodeInstance(bytes);
      const last = gray.frames.length - 1;
      const colour = await decodeColourFrame(bytes, last);
      // the pipeline reads the frame from the file alone: the same pixels, every vendor and encoding
      expect({ file: f, same: Buffer.compare(Buffer.from((await decodeColourFrameOfFile(path.join(US, f), bytes, last))?.data ?? []), Buffer.from(colour?.data ?? [])) }).toEqual({ file: f, same: 0 });
      if (!colour) continue;
      colourFiles++;
      const g = gray.frames[last].data;
      let differ = 0;
      for (let i = 0; i < g.length; i++) if (luma(colour.data[i * 3], colour.data[i * 3 + 1], colour.data[i * 3 + 2]) !== g[i]) differ++;
      expect({ file: f, differ }).toEqual({ file: f, differ: 0 });
    }
    expect(colourFiles).toBeGreaterThanOrEqual(10);
  });

  test("GE's colour Doppler (US1_UNCR): the overlay shows the flow in colour", async () => {
    const bytes = fs.readFileSync(path.join(US, 'US1_UNCR.dcm'));
    const colour = (await decodeColourFrame(bytes, 0))!;
    const file = path.join(dir, 'US1_UNCR.dcm');
    fs.writeFileSync(file, bytes);
    const out = path.join(dir, 'US1_UNCR-out');
    fs.mkdirSync(out);
    const { width, height } = colour;
    const predictor: FramePredictor = {
      predict: async (frames, rect) => ({
        predictions: frames.map(() => {
          const w = rect.x1 - rect.x0;
          const h = rect.y1 - rect.y0;
          const probability = new Float32Array(w * h);
          for (let y = 200; y < 260; y++) for (let x = 280; x < 360; x++) probability[(y - rect.y0) * w + x - rect.x0] = 0.9;
          return { probability, width: w, height: h, classProbabilities: [0.1, 0.6, 0.3] };
        }),
        timings: { preprocessMs: 0, inferenceMs: 0, postprocessMs: 0 },
      }),
    };
    const r = await processInstanceFile(file, out, predictor, OPTIONS);
    const overlay = r.outputs.find((o) => o.kind === 'overlay')!;
    const px = checkFile(overlay.path).pydicom.pixels!;
    let same = 0;
    let saturated = 0;
    for (let i = 0; i < width * height; i++) {
      const [a, b, c] = [px[i * 3], px[i * 3 + 1], px[i * 3 + 2]];
      if (a === colour.data[i * 3] && b === colour.data[i * 3 + 1] && c === colour.data[i * 3 + 2]) same++;
      if (Math.max(a, b, c) - Math.min(a, b, c) > 80 && !(a === 255 && b === 255 && c === 0)) saturated++;
    }
    expect(same / (width * height)).toBeGreaterThan(0.98);
    expect(saturated).toBeGreaterThan(10000);
  });
});
