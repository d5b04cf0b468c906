import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import sharp from 'sharp';
import { readPart10 } from '../../src/dicom/part10';
import { FrameMasks } from '../../src/postprocess/frameMasks';
import { buildOverlay, captionLines, renderOverlay, wrap } from '../../src/report/overlay';
import { checkFile, tempDir, writeDataset } from '../helpers/dicomTools';
import { LesionCaseOptions, lesionCase } from '../helpers/lesionResult';

const model = { name: 'attention-unet-busi', version: '1.0.0' };
const now = new Date(2026, 10, 26, 14, 30, 0);
const OUTPUT = join(__dirname, '..', '..', 'test-output');
let dir: string;
beforeAll(() => {
  dir = tempDir();
  mkdirSync(OUTPUT, { recursive: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function overlayFor(name: string, opts: LesionCaseOptions) {
  const c = lesionCase(opts);
  const ds = await buildOverlay(c.source, c.result, model, { now });
  const path = writeDataset(dir, `${name}.dcm`, ds);
  const check = checkFile(path);
  expect(check.errors).toEqual([]);
  expect(check.dcmdumpStatus).toBe(0);
  const px = check.pydicom.pixels!;
  // an example for people to look at (test-output/ is gitignored)
  const png = await sharp(px, { raw: { width: ds.Columns, height: ds.Rows, channels: 3 } }).png().toBuffer();
  writeFileSync(join(OUTPUT, `overlay-${name}.png`), png);
  const rgbAt = (x: number, y: number) => Array.from(px.subarray((y * ds.Columns + x) * 3, (y * ds.Columns + x) * 3 + 3));
  return { ...c, ds, read: readPart10(readFileSync(path)).dataset, pydicom: check.pydicom, rgbAt };
}

describe('Secondary Capture overlay', () => {
  test('burns the contour into the reported frame and captions it below, with the disclaimer', async () => {
    const { source, result, masks, read, pydicom, rgbAt } = await overlayFor('calibrated', {});
    const frame = result.reportedFrame;
    expect(pydicom.sopClassUid).toBe('1.2.840.10008.5.1.4.1.1.7');
    expect(read.PhotometricInterpretation).toBe('RGB');
    expect(read.PlanarConfiguration).toBe(0);
    expect(read.SamplesPerPixel).toBe(3);
    expect(read.BitsAllocated).toBe(8);
    expect(read.ConversionType).toBe('WSD');
    expect(read.BurnedInAnnotation).toBe('YES');
    expect(read.ImageComments).toBe('AI result — not for diagnostic use');
    expect(read.StudyInstanceUID).toBe(source.StudyInstanceUID);
    expect(read.PatientID).toBe(source.PatientID);
    expect(read.Manufacturer).toBe('Sonogate');
    expect(read.SourceImageSequence[0].ReferencedSOPInstanceUID).toBe(source.SOPInstanceUID);
    expect(read.SourceImageSequence[0].ReferencedFrameNumber).toBeUndefined();
    expect(read.Columns).toBe(frame.width);
    expect(read.Rows).toBeGreaterThan(frame.height); // the caption band
    expect(pydicom.shape).toEqual([read.Rows, read.Columns, 3]);

    // the image itself is the source frame in grey, except where the contour and axes are drawn
    expect(rgbAt(3, 3)).toEqual([frame.data[3 * frame.width + 3], frame.data[3 * frame.width + 3], frame.data[3 * frame.width + 3]]);
    const lesion = result.lesions[0];
    const mask = masks[0];
    const y = lesion.bbox.y0 + Math.round((lesion.bbox.y1 - lesion.bbox.y0) / 4); // clear of the long axis line
    let leftEdge = lesion.bbox.x0;
    while (!mask[y * frame.width + leftEdge]) leftEdge++;
    // the contour lies just outside the lesion: its own edge pixel keeps the scanner's grey, so the
    // margin the reader judges is not painted over
    expect(rgbAt(leftEdge - 1, y)).toEqual([255, 255, 0]);
    const g = frame.data[y * frame.width + leftEdge];
    expect(rgbAt(leftEdge, y)).toEqual([g, g, g]);
    expect(g).not.toBe(255);
    // caption band: black with text in it
    const band = pydicom.pixels!.subarray(frame.height * frame.width * 3);
    expect(band.filter((v) => v > 200).length).toBeGreaterThan(500);
  });

  test('caption: label with probability, mm sizes when calibrated, "px, uncalibrated" otherwise', async () => {
    const calibrated = lesionCase({});
    const lines = captionLines(calibrated.result, model);
    expect(lines[0]).toBe('AI result — not for diagnostic use');
    expect(lines[1]).toBe('Malignant 83.0 %');
    expect(lines[2]).toMatch(/^Lesion 1: 10\.2 × 6\.4 mm, \d+\.\d mm²$/);

    const { result } = await overlayFor('uncalibrated', { mmPerPixel: null, label: 'benign', seed: 2 });
    const uncal = captionLines(result, model);
    expect(uncal[1]).toMatch(/^Benign \d+\.\d % · malignancy 12\.0 %$/);
    expect(uncal[2]).toBe('Lesion 1: 102 × 64 px, uncalibrated');
    expect(uncal.join('\n')).not.toMatch(/mm/);

    // a cine: which frame is drawn and called, out of how many
    const cine = lesionCase({ frames: 3, seed: 8 });
    expect(captionLines(cine.result, model)[2]).toBe(`Frame ${cine.result.reportedFrameIndex + 1} of 3, the most suspicious`);
    expect(captionLines(calibrated.result, model).join('\n')).not.toMatch(/^Frame /m);
  });

  test("caption: a line under the call where the model's networks disagree, none where they agree", () => {
    const low = captionLines(lesionCase({ label: 'benign', agreement: { spread: 0.2, lowAbove: 0.0667, low: true } }).result, model);
    expect(low.slice(1, 3)).toEqual(['Benign 79.2 % · malignancy 12.0 %', 'Networks disagree: uncertain call']);
    const agree = captionLines(lesionCase({ label: 'benign', agreement: { spread: 0.01, lowAbove: 0.0667, low: false } }).result, model);
    expect(agree.join('\n')).not.toMatch(/disagree/);
  });

  test("the disagreement line is drawn in the warning colour, like the disclaimer", async () => {
    const amber = async (name: string, low: boolean) => {
      const { result, pydicom } = await overlayFor(name, { label: 'benign', agreement: { spread: low ? 0.2 : 0.01, lowAbove: 0.0667, low } });
      const f = result.reportedFrame;
      const band = pydicom.pixels!.subarray(f.height * f.width * 3);
      let n = 0;
      for (let i = 0; i < band.length; i += 3) if (band[i] > 200 && band[i + 1] > 150 && band[i + 1] < 240 && band[i + 2] < 80) n++;
      return n;
    };
    const usual = await amber('agreement-usual', false);
    expect(usual).toBeGreaterThan(100); // the disclaimer
    expect(await amber('agreement-low', true)).toBeGreaterThan(usual * 1.4);
  });

  test('no lesion: says so, and draws no contour', async () => {
    const { result, rgbAt } = await overlayFor('no-lesion', { lesion: false, seed: 3 });
    expect(captionLines(result, model)).toContain('No lesion found');
    // a benign or malignant call without an outline must not say "No lesion found"
    const called = captionLines(lesionCase({ lesion: false, seed: 3, label: 'malignant' }).result, model);
    expect(called).toContain("No lesion outlined: the call is the whole image's");
    expect(called).not.toContain('No lesion found');
    const frame = result.reportedFrame;
    for (let y = 0; y < frame.height; y += 7) {
      for (let x = 0; x < frame.width; x += 7) {
        const [r, g, b] = rgbAt(x, y);
        expect(r === g && g === b).toBe(true);
      }
    }
  });

  test('multi-frame: draws the reported frame and references it', async () => {
    const { read } = await overlayFor('multi', { frames: 3, emptyFrames: [0], seed: 4 });
    expect(read.SourceImageSequence[0].ReferencedFrameNumber).toBe(2);
    expect(read.DerivationDescription).toContain('frame 2');
  });

  test('several lesions on the frame: each contour carries its number, as the caption and the SR count them', async () => {
    const c = lesionCase({ seed: 9 });
    const one = c.result.lesions[0];
    // a second lesion: the first one's mask shifted right by 150 px
    const frame = c.result.reportedFrame;
    const mask = c.masks[0];
    const shifted = new Uint8Array(mask.length);
    for (let y = 0; y < frame.height; y++) for (let x = 0; x + 150 < frame.width; x++) shifted[y * frame.width + x + 150] = mask[y * frame.width + x] | 0;
    const moved = (v: number[]) => [v[0] + 150, v[1], v[2] + 150, v[3]];
    const second = { ...one, index: 2, bbox: { ...one.bbox, x0: one.bbox.x0 + 150, x1: one.bbox.x1 + 150 }, longAxisLine: moved(one.longAxisLine), shortAxisLine: moved(one.shortAxisLine) };
    const yellowNear = async (lesions: typeof c.result.lesions, masks: Uint8Array[]) => {
      const { width, rgb } = await renderOverlay({ ...c.result, lesions, masks: FrameMasks.of(masks, mask.length) }, model);
      // yellow text pixels above-left of each lesion's box, clear of the contour's ring around it
      return lesions.map((l) => {
        let n = 0;
        for (let y = Math.max(0, l.bbox.y0 - 30); y < l.bbox.y0 - 2; y++)
          for (let x = Math.max(0, l.bbox.x0 - 25); x < l.bbox.x0 - 2; x++) {
            const i = (y * width + x) * 3;
            if (rgb[i] > 200 && rgb[i + 1] > 200 && rgb[i + 2] < 80) n++;
          }
        return n;
      });
    };
    expect(one.bbox.y0).toBeGreaterThan(40); // room for the number above it
    const merged = mask.map((v, i) => v | shifted[i]);
    const [n1, n2] = await yellowNear([one, second], [merged]);
    expect(n1).toBeGreaterThan(5);
    expect(n2).toBeGreaterThan(5);
    expect(await yellowNear([one], [mask])).toEqual([0]); // a single lesion needs no number
  });

  test('a hole in a lesion gets no ring of its own (it would look like a second lesion)', async () => {
    const c = lesionCase({ seed: 13 });
    const frame = c.result.reportedFrame;
    const l = c.result.lesions[0];
    const mask = c.masks[0].slice();
    const cx = Math.round((l.bbox.x0 + l.bbox.x1) / 2);
    const cy = Math.round((l.bbox.y0 + l.bbox.y1) / 2);
    for (let y = cy - 6; y < cy + 6; y++) for (let x = cx - 6; x < cx + 6; x++) mask[y * frame.width + x] = 0;
    const { width, rgb } = await renderOverlay({ ...c.result, masks: FrameMasks.of([mask], mask.length), lesions: [{ ...l, longAxisLine: [0, 0, 0, 0], shortAxisLine: [0, 0, 0, 0] }] }, model);
    const yellow = (x: number, y: number) => rgb[(y * width + x) * 3] === 255 && rgb[(y * width + x) * 3 + 1] === 255 && rgb[(y * width + x) * 3 + 2] === 0;
    let inHole = 0;
    for (let y = cy - 6; y < cy + 6; y++) for (let x = cx - 6; x < cx + 6; x++) inHole += yellow(x, y) ? 1 : 0;
    expect(inHole).toBe(0);
    // the ring outside the lesion is still drawn
    let leftEdge = l.bbox.x0;
    while (!mask[cy * frame.width + leftEdge]) leftEdge++;
    expect(yellow(leftEdge - 1, cy)).toBe(true);
  });

  test('small image: caption lines wrap rather than shrink below 12 px', async () => {
    expect(wrap('AI result — not for diagnostic use', 25)).toEqual(['AI result — not for', 'diagnostic use']);
    expect(wrap('short', 25)).toEqual(['short']);
    // a word longer than the line is broken, not cut off
    expect(wrap('attention-unet-busi 1.8.0', 8)).toEqual(['attentio', 'n-unet-b', 'usi', '1.8.0']);
    const { read } = await overlayFor('small', { rows: 150, columns: 200, seed: 7 });
    // 12 px font, 1.25 line height: more than the 4 caption lines once wrapped
    expect(read.Rows - 150).toBeGreaterThan(Math.round(12 * 1.25 * 4 + 12));
  });

  test('large image: text scales with the image', async () => {
    const { read } = await overlayFor('large', { rows: 503, columns: 601, frames: 2, seed: 5 });
    expect(read.Rows - 503).toBeGreaterThan(100); // caption band of a 20 px font, 4 lines
  });

  test('UIDs are the same when built again and differ per model version', async () => {
    const c = lesionCase({ seed: 6 });
    const a = await buildOverlay(c.source, c.result, model, { now });
    const b = await buildOverlay(c.source, c.result, model, { now: new Date(2027, 0, 1) });
    const v2 = await buildOverlay(c.source, c.result, { ...model, version: '2.0.0' }, { now });
    expect(b.SOPInstanceUID).toBe(a.SOPInstanceUID);
    expect(b.SeriesInstanceUID).toBe(a.SeriesInstanceUID);
    expect(v2.SOPInstanceUID).not.toBe(a.SOPInstanceUID);
  });
});
