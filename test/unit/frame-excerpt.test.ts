/**
 * One frame of a stored file, read without the others (src/dicom/frameExcerpt.ts): for every
 * layout a sender may use (native in three byte orders and VR forms, undefined-length sequences,
 * an icon image with its own Pixel Data before the real one, RLE and JPEG with and without a Basic
 * Offset Table, frames split into several fragments), each frame decodes exactly as the whole-file
 * decoder gives it. The layouts are written by DCMTK (dcmconv, dcmcrle, dcmcjpeg), as a PACS
 * would. A cine larger than the old 64 MB preview limit previews any frame, reading about one
 * frame's bytes; a cut-off file shows the frames it holds and fails with the reason for the rest.
 *
 * The pipeline reads a whole cine the same way, a few frames at a time (openFrameFile,
 * frameSourceOfFile): for the same layouts it gives the header and every gray frame the whole-file
 * decoder gives, and leaves to that decoder (null) what it cannot read in part.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { decodeDataset, decodeInstance, frameSourceOfFile } from '../../src/dicom/decode';
import { openFrameFile, readFrameExcerpt } from '../../src/dicom/frameExcerpt';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { NotRenderable, renderPng } from '../../src/web/images';
import { tempDir } from '../helpers/gatewayHarness';
import { phantomDataset, phantomFile } from '../helpers/phantom';
import { claimedFrameFile, deflatedFile, imageDataset } from '../helpers/dicomBuild';

const haveDcmtk = spawnSync('dcmconv', ['--version']).status === 0;
const US_DIR = path.resolve(__dirname, '..', '..', '..', 'shared', 'dicom-samples', 'us');
const vendorFiles = fs.existsSync(US_DIR) ? fs.readdirSync(US_DIR).filter((f) => f.endsWith('.dcm')).sort() : [];

function dcmtk(tool: string, args: string[], input: string, output: string): string {
  const r = spawnSync(tool, [...args, input, output], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${r.stderr}`);
  return output;
}

async function excerptFrame(file: string, frame: number) {
  const ex = await readFrameExcerpt(file, frame);
  if (!ex) throw new Error('no excerpt');
  const decoded = await decodeDataset(ex.dataset, ex.transferSyntaxUid, { frame: 0 });
  return { ex, data: decoded.frames[0].data };
}

async function expectEveryFrameMatches(file: string, frames: number): Promise<void> {
  const whole = fs.readFileSync(file);
  for (let f = 0; f < frames; f++) {
    const { ex, data } = await excerptFrame(file, f);
    expect(ex.frames).toBe(frames);
    const reference = (await decodeInstance(whole, { frame: f })).frames[0].data;
    expect(Buffer.from(data).equals(Buffer.from(reference))).toBe(true);
  }
  await expectPipelineFramesMatch(file);
}

/** The pipeline's reading of the whole file, two frames at a time, against the whole-file decoder. */
async function expectPipelineFramesMatch(file: string): Promise<void> {
  const whole = fs.readFileSync(file);
  const reference = await decodeInstance(whole);
  const opened = await openFrameFile(file);
  expect([path.basename(file), opened !== null]).toEqual([path.basename(file), true]);
  try {
    expect(opened!.header).toEqual(readPart10(whole, { untilTag: '7FE00010' }).dataset);
    const source = await frameSourceOfFile(opened!);
    const { frames, ...info } = reference;
    const { read: _read, frameCount, ...sourceInfo } = source;
    expect(sourceInfo).toEqual(info);
    expect(frameCount).toBe(frames.length);
    for (let f = 0; f < frameCount; f += 2) {
      const got = await source.read(f, Math.min(frameCount, f + 2));
      got.forEach((g, i) => expect([path.basename(file), f + i, Buffer.from(g.data).equals(Buffer.from(frames[f + i].data))]).toEqual([path.basename(file), f + i, true]));
    }
  } finally {
    await opened?.close();
  }
}

describe('one frame of a stored file', () => {
  let dir: string;
  let cine: string;
  let rgbCine: string;
  beforeAll(() => {
    dir = tempDir('excerpt');
    const ds = phantomDataset({ frames: 4, seed: 3, rows: 64, columns: 80 });
    // an icon image with its own Pixel Data, before the real one (PS3.3 C.7.6.1.1.6)
    ds.IconImageSequence = [
      { SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', Rows: 2, Columns: 2, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: [new Uint8Array([1, 2, 3, 4]).buffer], _vrMap: { PixelData: 'OB' } },
    ];
    cine = path.join(dir, 'cine.dcm');
    fs.writeFileSync(cine, writePart10(ds));
    rgbCine = path.join(dir, 'rgb.dcm');
    fs.writeFileSync(rgbCine, phantomFile({ frames: 3, seed: 4, rows: 48, columns: 60, photometric: 'RGB' }));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('native explicit VR little endian, past a sequence that holds its own Pixel Data', async () => {
    await expectEveryFrameMatches(cine, 4);
    await expectEveryFrameMatches(rgbCine, 3);
    // the frames differ (the phantom's lesion moves), so a wrong offset cannot pass
    const [a, b] = [(await excerptFrame(cine, 0)).data, (await excerptFrame(cine, 1)).data];
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  (haveDcmtk ? test : test.skip).each([
    ['implicit VR little endian', 'dcmconv', ['+ti']],
    ['explicit VR big endian', 'dcmconv', ['+tb']],
    ['undefined-length sequences and items', 'dcmconv', ['-e']],
    ['RLE, with a Basic Offset Table', 'dcmcrle', []],
    ['RLE, without one', 'dcmcrle', ['-ot']],
    ['RLE in 1 KB fragments (not standard; only the Basic Offset Table tells the frames apart)', 'dcmcrle', ['+fs', '1']],
    ['JPEG lossless, one fragment per frame', 'dcmcjpeg', ['+e1']],
    ['JPEG lossless, 1 KB fragments, with a Basic Offset Table', 'dcmcjpeg', ['+e1', '+fs', '1']],
    ['JPEG lossless, 1 KB fragments, without one (grouped where a codestream starts)', 'dcmcjpeg', ['+e1', '+fs', '1', '-ot']],
  ])('%s (written by DCMTK)', async (name, tool, args) => {
    const tag = name.replace(/\W+/g, '-');
    await expectEveryFrameMatches(dcmtk(tool as string, args as string[], cine, path.join(dir, `${tag}.dcm`)), 4);
    await expectEveryFrameMatches(dcmtk(tool as string, args as string[], rgbCine, path.join(dir, `${tag}-rgb.dcm`)), 3);
  });

  (vendorFiles.length ? test : test.skip)('every vendor sample in ../shared/dicom-samples/us: the first and last frames as the whole-file decoder gives them', async () => {
    for (const name of vendorFiles) {
      const file = path.join(US_DIR, name);
      const frames = (await readFrameExcerpt(file, 0))!.frames;
      for (const f of new Set([0, frames - 1])) {
        const reference = (await decodeInstance(fs.readFileSync(file), { frame: f })).frames[0].data;
        const { data } = await excerptFrame(file, f);
        expect([name, f, Buffer.from(data).equals(Buffer.from(reference))]).toEqual([name, f, true]);
      }
      await expectPipelineFramesMatch(file);
    }
  });

  test('a frame the file lacks, and a Deflated file (one stream: null, the caller reads it whole)', async () => {
    await expect(readFrameExcerpt(cine, 4)).rejects.toThrow(/no frame 5: the instance has 4/);
    await expect(readFrameExcerpt(cine, -1)).rejects.toThrow(/no frame 0/);
    const deflated = path.join(dir, 'deflated.dcm');
    fs.writeFileSync(deflated, deflatedFile(phantomDataset({ seed: 2, rows: 20, columns: 30 })));
    expect(await readFrameExcerpt(deflated, 0)).toBeNull();
    expect((await renderPng(deflated, 32)).subarray(1, 4).toString()).toBe('PNG');
  });

  test('a cut-off file: the frames it holds are read, the rest fail with the reason', async () => {
    const whole = fs.readFileSync(cine);
    const cut = path.join(dir, 'cut.dcm');
    const frameBytes = 64 * 80;
    fs.writeFileSync(cut, whole.subarray(0, whole.length - frameBytes - 10)); // inside frame 3
    // the element's length still claims four frames: the Pixel Data is truncated
    await expect(readFrameExcerpt(cut, 0)).resolves.toBeTruthy();
    await expect(readFrameExcerpt(cut, 2)).rejects.toThrow(/truncated/);
    await expect(readFrameExcerpt(path.join(dir, 'missing.dcm'), 0)).rejects.toThrow(/cannot open/);
    fs.writeFileSync(path.join(dir, 'text.dcm'), 'not dicom at all, but longer than a preamble '.repeat(5));
    await expect(readFrameExcerpt(path.join(dir, 'text.dcm'), 0)).rejects.toThrow(/DICOM Part 10 file/);
  });

  test('the pipeline leaves to the whole-file decoder what it cannot read in part, and only that', async () => {
    const leftWhole = async (name: string, bytes: Buffer) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      const opened = await openFrameFile(file);
      await opened?.close();
      return opened === null;
    };
    const whole = fs.readFileSync(cine);
    // one deflate stream
    expect(await leftWhole('p-deflated.dcm', deflatedFile(phantomDataset({ seed: 2, rows: 20, columns: 30, frames: 2 })))).toBe(true);
    // Pixel Data longer than the file: dcmjs reads what there is, and the decoder says how much is missing
    expect(await leftWhole('p-cut.dcm', whole.subarray(0, whole.length - 100))).toBe(true);
    // bytes after Pixel Data that dcmjs cannot parse fail the whole-file read: so they fail as before
    expect(await leftWhole('p-junk.dcm', Buffer.concat([whole, Buffer.from([1, 2, 3])]))).toBe(true);
    // a readable element after it does not
    const padding = Buffer.from('fcfffcff4f4200000400000000000000', 'hex'); // (FFFC,FFFC) OB, 4 bytes
    expect(await leftWhole('p-padding.dcm', Buffer.concat([whole, padding]))).toBe(false);
    await expectPipelineFramesMatch(path.join(dir, 'p-padding.dcm'));
    // not Part 10, not there
    expect(await leftWhole('p-text.dcm', Buffer.from('not dicom at all, but longer than a preamble '.repeat(5)))).toBe(true);
    expect(await openFrameFile(path.join(dir, 'missing.dcm'))).toBeNull();
    if (haveDcmtk) {
      // Big Endian frames of an odd byte count: words run across frames
      const odd = path.join(dir, 'p-odd.dcm');
      fs.writeFileSync(odd, phantomFile({ frames: 3, seed: 5, rows: 7, columns: 9 }));
      expect(await leftWhole('p-odd-be.dcm', fs.readFileSync(dcmtk('dcmconv', ['+tb'], odd, path.join(dir, 'p-odd-be-src.dcm'))))).toBe(true);
      await expectPipelineFramesMatch(dcmtk('dcmconv', ['+ti'], odd, path.join(dir, 'p-odd-implicit.dcm')));
    }
  });

  test('a cine over 64 MB previews any frame, reading about that frame', async () => {
    const rows = 256;
    const columns = 256;
    const frames = 1100; // 72 MB of pixels: the old preview refused the whole file
    const pixels = new Uint8Array(rows * columns * frames);
    for (let f = 0; f < frames; f++) pixels.fill((f * 7) % 251, f * rows * columns, (f + 1) * rows * columns);
    const big = path.join(dir, 'big.dcm');
    fs.writeFileSync(big, writePart10(imageDataset(pixels.buffer, { Rows: rows, Columns: columns, NumberOfFrames: frames, SOPClassUID: '1.2.840.10008.5.1.4.1.1.3.1' })));
    expect(fs.statSync(big).size).toBeGreaterThan(64 * 1024 * 1024);

    const { ex, data } = await excerptFrame(big, 1000);
    expect(ex.frameBytes).toBe(rows * columns);
    expect(ex.bytesRead).toBeLessThan(2 * rows * columns + 256 * 1024);
    expect(data.every((v) => v === (1000 * 7) % 251)).toBe(true);

    const png = await renderPng(big, 64, 1000);
    const { data: shown, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info.width).toBe(64);
    expect(shown.every((v) => v === (1000 * 7) % 251)).toBe(true);
  });

  test('a single frame larger than the preview limit is refused as not renderable, before it is read', async () => {
    // a header that claims a 9000 x 9000 RGB frame (243 MB), sparse on disk: only its length is looked at
    const claim = path.join(dir, 'claim.dcm');
    claimedFrameFile(claim, 9000, 9000);
    await expect(renderPng(claim, 64)).rejects.toBeInstanceOf(NotRenderable);
    await expect(renderPng(claim, 64)).rejects.toThrow(/one frame is 232 MB/);
  });
});
