/**
 * Real scanner files and DCMTK-encoded phantoms decode to the same gray frames as a reference
 * decoder (DCMTK, or pydicom + OpenJPEG for JPEG 2000) followed by Pillow's convert('L').
 */
import { spawnSync } from 'child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { NativeCodecs, Transcoder } from 'dcmjs-codecs';
import { decodeInstance } from '../../src/dicom/decode';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { DecodedInstance } from '../../src/types/domain';
import { phantomDataset, phantomPixels } from '../helpers/phantom';
import { difference, Difference, referenceGray, referenceUnavailable } from '../helpers/referenceDecoder';

const US_DIR = join(resolve(__dirname, '../../../shared'), 'dicom-samples', 'us');
const LOSSY = ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91'];

const noReference = referenceUnavailable();
const noSamples = existsSync(US_DIR) ? null : `${US_DIR} is absent`;
const skipReason = noSamples ?? noReference;
if (skipReason) console.warn(`decode-vendors: vendor-file tests skipped: ${skipReason}`);
if (noReference) console.warn(`decode-vendors: DCMTK-encoded phantom tests skipped: ${noReference}`);

const vendorFiles = noSamples ? [] : readdirSync(US_DIR).filter((f) => f.endsWith('.dcm')).sort();

async function decodeFile(path: string): Promise<DecodedInstance> {
  return decodeInstance(readFileSync(path));
}

function transferSyntaxOf(path: string): string {
  return readPart10(readFileSync(path), { untilTag: '7FE00010' }).transferSyntaxUid;
}

/** Lossless data must match exactly; lossy decoders may round differently by a few levels. */
function expectClose(diff: Difference, lossy: boolean): void {
  if (lossy) {
    expect(diff.max).toBeLessThanOrEqual(3);
    expect(diff.mean).toBeLessThan(0.5);
  } else {
    expect(diff.max).toBe(0);
  }
}

(skipReason ? describe.skip : describe)('vendor ultrasound files (shared/dicom-samples/us)', () => {
  const results: string[] = [];
  afterAll(() => {
    if (results.length) console.log(`decoded vs reference (mean / max abs diff):\n${results.join('\n')}`);
  });

  test.each(vendorFiles)('%s decodes like the reference decoder', async (file) => {
    const path = join(US_DIR, file);
    const started = Date.now();
    const ours = await decodeFile(path);
    const ms = Date.now() - started;
    const ref = referenceGray(path);
    expect([ours.columns, ours.rows]).toEqual([ref.width, ref.height]);
    expect(ours.frames).toHaveLength(ref.frames.length);
    const diff = difference(ours.frames, ref.frames);
    const ts = transferSyntaxOf(path);
    results.push(`${file.padEnd(34)} ${ts.padEnd(24)} ${String(ours.frames.length).padStart(3)} frame(s)  ${ref.decoder.padEnd(9)} ${diff.mean.toFixed(4)} / ${diff.max}  (${ms} ms)`);
    expectClose(diff, LOSSY.includes(ts));
  });

  test('uncompressed YBR_FULL_422 is within one level of DCMTK, whose YBR formula truncates', async () => {
    const path = join(US_DIR, 'YBR_422.dcm');
    const diff = difference((await decodeFile(path)).frames, referenceGray(path, ['--decoder', 'dcmtk']).frames);
    expect(diff.max).toBe(1);
    expect(diff.mean).toBeLessThan(1);
  });
});

(noSamples ? describe.skip : describe)('one image, many encodings', () => {
  const same = async (a: string, b: string) => {
    const [x, y] = await Promise.all([decodeFile(join(US_DIR, a)), decodeFile(join(US_DIR, b))]);
    expect(y.frames).toHaveLength(x.frames.length);
    return difference(x.frames, y.frames.map((f) => f.data));
  };

  test('Philips OB: Little Endian, Big Endian (OW words swapped) and RLE are identical', async () => {
    expect((await same('OBXXXX1A.dcm', 'OBXXXX1A_expb.dcm')).max).toBe(0);
    expect((await same('OBXXXX1A.dcm', 'OBXXXX1A_rle.dcm')).max).toBe(0);
  });

  test('RGB colour-by-pixel and colour-by-plane are identical', async () => {
    expect((await same('US-RGB-8-esopecho.dcm', 'color-pl.dcm')).max).toBe(0);
  });

  test('JPEG 2000 lossless (YBR_RCT) equals the uncompressed RGB original; lossy (YBR_ICT) is close', async () => {
    expect((await same('US1_UNCR.dcm', 'US1_J2KR.dcm')).max).toBe(0);
    const lossy = await same('US1_UNCR.dcm', 'US1_J2KI.dcm');
    expect(lossy.mean).toBeLessThan(2);
    expect(lossy.max).toBeGreaterThan(0);
  });

  test('PALETTE COLOR cine: RLE and JPEG-LS are identical over all 10 frames', async () => {
    const diff = await same('US-PAL-8-10x-echo.dcm', 'jpeg-ls-Palette.dcm');
    expect(diff.max).toBe(0);
  });
});

(noSamples ? describe.skip : describe)('ultrasound regions of vendor files', () => {
  test('Philips JPEG Lossless: the tissue region and its 0.0255 cm pixels', async () => {
    const { region } = await decodeFile(join(US_DIR, 'JPGLosslessP14SV1_1s_1f_8b.dcm'));
    expect(region.source).toBe('ultrasound-region');
    expect(region.rect).toEqual({ x0: 14, y0: 38, x1: 1011, y1: 759 });
    expect(region.calibration?.mmPerPixelX).toBeCloseTo(0.25476696592378154, 12);
    expect(region.calibration?.mmPerPixelY).toBeCloseTo(0.25476696592378154, 12);
  });

  test('Philips OB: MaxX1 = Columns is clamped, the spectral Doppler region is ignored', async () => {
    const { region } = await decodeFile(join(US_DIR, 'OBXXXX1A.dcm'));
    expect(region.rect).toEqual({ x0: 120, y0: 60, x1: 800, y1: 519 });
    expect(region.calibration?.mmPerPixelX).toBeCloseTo(0.26228787661969974, 12);
  });

  test('a region larger than the (rescaled) image is clamped to it, and its 0.51 mm pixels not believed', async () => {
    // the 320x240 cine carries regions up to x 595, y 414: written for the picture before it was
    // halved, so its pixels are about twice the size the region says (the burned-in depth scale agrees)
    const { region } = await decodeFile(join(US_DIR, 'examples_ybr_color.dcm'));
    expect(region.rect).toEqual({ x0: 84, y0: 31, x1: 320, y1: 240 });
    expect(region.calibration).toBeNull();
  });

  test('files without SequenceOfUltrasoundRegions analyse the whole frame, uncalibrated', async () => {
    const { region } = await decodeFile(join(US_DIR, 'US1_UNCR.dcm'));
    expect(region).toEqual({ rect: { x0: 0, y0: 0, x1: 640, y1: 480 }, calibration: null, source: 'whole-frame' });
  });
});

/** A 2-frame phantom with a colour-flow box, so that colour conversions are exercised. */
function colourPhantomFile(): Buffer {
  const ds = phantomDataset({ photometric: 'RGB', frames: 2, rows: 120, columns: 160, seed: 7 });
  const rgb = new Uint8Array(ds.PixelData[0]);
  for (let f = 0; f < 2; f++) {
    for (let y = 30; y < 80; y++) {
      for (let x = 50; x < 110; x++) {
        const i = ((f * 120 + y) * 160 + x) * 3;
        const towards = (x + y + f * 5) % 40 < 20;
        rgb[i] = towards ? 180 + (y % 60) : 20;
        rgb[i + 1] = (x * 3) % 90;
        rgb[i + 2] = towards ? 10 : 170 + (x % 80);
      }
    }
  }
  return writePart10(ds);
}

interface Encoding {
  name: string;
  tool: string;
  args: string[];
  ts: string;
}

const ENCODINGS: Encoding[] = [
  { name: 'JPEG Baseline', tool: 'dcmcjpeg', args: ['+eb'], ts: '1.2.840.10008.1.2.4.50' },
  { name: 'JPEG Extended', tool: 'dcmcjpeg', args: ['+ee'], ts: '1.2.840.10008.1.2.4.51' },
  { name: 'JPEG Lossless', tool: 'dcmcjpeg', args: ['+el'], ts: '1.2.840.10008.1.2.4.57' },
  { name: 'JPEG Lossless SV1', tool: 'dcmcjpeg', args: ['+e1'], ts: '1.2.840.10008.1.2.4.70' },
  { name: 'JPEG-LS Lossless', tool: 'dcmcjpls', args: ['+el'], ts: '1.2.840.10008.1.2.4.80' },
  { name: 'JPEG-LS Near-Lossless', tool: 'dcmcjpls', args: ['+en'], ts: '1.2.840.10008.1.2.4.81' },
  { name: 'RLE', tool: 'dcmcrle', args: [], ts: '1.2.840.10008.1.2.5' },
  { name: 'Explicit VR Big Endian', tool: 'dcmconv', args: ['+tb'], ts: '1.2.840.10008.1.2.2' },
  { name: 'Implicit VR Little Endian', tool: 'dcmconv', args: ['+ti'], ts: '1.2.840.10008.1.2' },
  { name: 'Deflated', tool: 'dcmconv', args: ['+td'], ts: '1.2.840.10008.1.2.1.99' },
  // frames split over 1 KiB fragments, without a Basic Offset Table
  { name: 'JPEG Baseline, fragmented, no offset table', tool: 'dcmcjpeg', args: ['+eb', '+fs', '1', '-ot'], ts: '1.2.840.10008.1.2.4.50' },
];

(noReference ? describe.skip : describe)('phantoms encoded by DCMTK decode like DCMTK decodes them', () => {
  let dir: string;
  const sources: Record<string, { path: string; original: Uint8Array[] | null }> = {};

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sonogate-decode-'));
    const mono = join(dir, 'mono.dcm');
    writeFileSync(mono, writePart10(phantomDataset({ frames: 2, rows: 120, columns: 160, seed: 3 })));
    sources.mono = { path: mono, original: phantomPixels({ frames: 2, rows: 120, columns: 160, seed: 3 }) };
    const colour = join(dir, 'colour.dcm');
    writeFileSync(colour, colourPhantomFile());
    sources.colour = { path: colour, original: null };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases = ENCODINGS.flatMap((e) => ['mono', 'colour'].map((source) => [e.name, source, e] as const));
  test.each(cases)('%s (%s)', async (name, source, encoding) => {
    const input = sources[source].path;
    const output = join(dir, `${source}-${name.replace(/\W+/g, '_')}.dcm`);
    const r = spawnSync(encoding.tool, [...encoding.args, input, output], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(transferSyntaxOf(output)).toBe(encoding.ts);

    const ours = await decodeFile(output);
    const ref = referenceGray(output);
    expectClose(difference(ours.frames, ref.frames), LOSSY.includes(encoding.ts));
    const original = sources[source].original;
    if (original && !LOSSY.includes(encoding.ts)) expect(difference(ours.frames, original).max).toBe(0);
  });

  test('native YBR_FULL_422 with an odd number of columns: pixel pairs run on across rows, as DCMTK and pydicom read them', async () => {
    // 7 x 4: each odd row ends in the middle of a Y1 Y2 Cb Cr group; a decoder that paired pixels
    // within rows would get the last pixel of such a row (and everything after it) wrong
    const rows = 4;
    const columns = 7;
    let x = 11;
    const packed = Uint8Array.from({ length: rows * columns * 2 }, () => (x = (x * 1103515245 + 12345) & 0x7fffffff) >> 23);
    const ds = { ...phantomDataset({ frames: 1, rows, columns, seed: 1 }), SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL_422', PlanarConfiguration: 0, PixelData: [packed.buffer] };
    const output = join(dir, 'ybr422-odd.dcm');
    writeFileSync(output, writePart10(ds));
    const ours = await decodeFile(output);
    expect([ours.columns, ours.rows]).toEqual([columns, rows]);
    // DCMTK's YBR formula truncates (see the vendor-file test): within one level of it, and of pydicom
    expect(difference(ours.frames, referenceGray(output, ['--decoder', 'dcmtk']).frames).max).toBeLessThanOrEqual(1);
    expect(difference(ours.frames, referenceGray(output, ['--decoder', 'pydicom']).frames).max).toBeLessThanOrEqual(1);
  });

  test('JPEG 2000 lossless (dcmjs-codecs encoder) matches pydicom + OpenJPEG', async () => {
    await NativeCodecs.initializeAsync();
    const bytes = readFileSync(sources.colour.path);
    const transcoder = new Transcoder(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    transcoder.transcode('1.2.840.10008.1.2.4.90');
    const output = join(dir, 'colour-j2k.dcm');
    writeFileSync(output, Buffer.from(transcoder.getDicomPart10()));
    const ours = await decodeFile(output);
    const original = await decodeFile(sources.colour.path);
    expect(difference(ours.frames, referenceGray(output).frames).max).toBe(0);
    expect(difference(ours.frames, original.frames.map((f) => f.data)).max).toBe(0);
  });
});
