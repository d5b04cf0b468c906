/**
 * Secondary Capture (PS3.3 A.8.1) for viewers that show neither SEG nor SR: the reported frame in
 * RGB, in its own colours (a Doppler box stays in colour; a grayscale frame as its gray frame shows
 * it), with the lesion contour and axes burned in, and a caption band below the image with the
 * disclaimer, the classification and the sizes. The caption sits outside the picture so that it
 * never hides anatomy and stays legible whatever the image looks like.
 */
import sharp from 'sharp';
import { reachedFromEdge } from '../postprocess/edgeFill';
import { Dataset, GrayFrame, InstanceResult, Lesion, ModelInfo, RgbFrame } from '../types/domain';
import { Codes } from './codes';
import { BuildOptions, LOW_AGREEMENT, MANUFACTURER, NOT_FOR_DIAGNOSIS, noOutlineText, commonAttributes, imageReference, reportedLesions, side } from './common';

const CONTOUR = [255, 255, 0]; // yellow, as the SEG's recommended display colour
const AXIS = '#00e5ff';
/** lesion numbers: the contour's yellow */
const LABEL = '#ffff00';
const MAX_LESION_LINES = 3;
const LINE_HEIGHT = 1.25;
/** DejaVu Sans (bold) is at most about 0.62 em per character on average */
const EM_PER_CHAR = 0.62;

export interface OverlayOptions extends BuildOptions {
  /**
   * The reported frame in its own colours, for a colour source (dicom/decode decodeColourFrame):
   * the pipeline's gray frames are the model's input and have lost the colour. Absent or null for a
   * grayscale source, which is drawn from its gray frame.
   */
  colourFrame?: RgbFrame | null;
}

const pct = (p: number) => `${(p * 100).toFixed(1)} %`;
const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The caption lines: disclaimer first, then the model's call (and whether its networks disagree), then one line per lesion. */
export function captionLines(result: InstanceResult, model: ModelInfo): string[] {
  const label = result.label[0].toUpperCase() + result.label.slice(1);
  let call = `${label} ${pct(result.classProbabilities[result.label])}`;
  if (result.label !== 'malignant') call += ` · malignancy ${pct(result.malignancyProbability)}`;
  const lines = [NOT_FOR_DIAGNOSIS, call];
  if (result.agreement?.low) lines.push(LOW_AGREEMENT);
  // a cine is called by its most suspicious frame, the one drawn here
  if (result.masks.length > 1) lines.push(`Frame ${result.reportedFrameIndex + 1} of ${result.masks.length}, the most suspicious`);
  const lesions = reportedLesions(result);
  if (lesions.length === 0) lines.push(noOutlineText(result));
  for (const l of lesions.slice(0, MAX_LESION_LINES)) lines.push(`Lesion ${l.index}: ${sizeText(l)}`);
  const more = lesions.length - MAX_LESION_LINES;
  if (more > 0) lines.push(`+ ${more} more ${more === 1 ? 'lesion' : 'lesions'} (see SR)`);
  lines.push(`${model.name} ${model.version}`);
  return lines;
}

/** mm when calibrated; otherwise pixels, flagged as uncalibrated rather than passed off as mm */
function sizeText(l: Lesion): string {
  if (l.longAxisMm !== null && l.shortAxisMm !== null && l.areaMm2 !== null) {
    return `${l.longAxisMm.toFixed(1)} × ${l.shortAxisMm.toFixed(1)} mm, ${l.areaMm2.toFixed(1)} mm²`;
  }
  return `${Math.round(l.longAxisPixels)} × ${Math.round(l.shortAxisPixels)} px, uncalibrated`;
}

/**
 * Paints the outline of the mask into an RGB buffer: a ring `thickness` pixels wide just outside
 * the lesion (pixels within that Chebyshev distance of it), so that the lesion's own margin, which
 * the reader judges, stays as the scanner showed it. A hole in a lesion gets no ring of its own,
 * which would look like a second lesion inside the first.
 */
function paintContour(rgb: Uint8Array, mask: Uint8Array, width: number, height: number, thickness: number): void {
  // what lies outside the lesions, not in their holes
  const outside = reachedFromEdge(width, height, (i) => !mask[i]);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
      if (!edge) continue;
      for (let dy = -thickness; dy <= thickness; dy++) {
        for (let dx = -thickness; dx <= thickness; dx++) {
          const px = x + dx;
          const py = y + dy;
          if (px < 0 || py < 0 || px >= width || py >= height || !outside[py * width + px]) continue;
          rgb.set(CONTOUR, (py * width + px) * 3);
        }
      }
    }
  }
}

function grayToRgb(frame: GrayFrame): Uint8Array {
  const rgb = new Uint8Array(frame.width * frame.height * 3);
  for (let i = 0; i < frame.data.length; i++) rgb.fill(frame.data[i], i * 3, i * 3 + 3);
  return rgb;
}

/** The picture the contour is drawn on: the colour frame when there is one (a copy: it is drawn on), else the gray frame. */
function basePicture(frame: GrayFrame, colour: RgbFrame | null | undefined): Uint8Array {
  if (!colour) return grayToRgb(frame);
  if (colour.width !== frame.width || colour.height !== frame.height || colour.data.length !== frame.width * frame.height * 3) {
    throw new Error(`overlay: the colour frame is ${colour.width}x${colour.height}, the gray frame ${frame.width}x${frame.height}`);
  }
  return colour.data.slice();
}

/** Breaks a caption line at spaces so that it fits `maxChars`, rather than shrinking the font. */
export function wrap(text: string, maxChars: number): string[] {
  const out: string[] = [];
  let line = '';
  // a word longer than a line (a model name on a very narrow image) is broken, not cut off
  const words = text.split(' ').flatMap((w) => (w.length > maxChars ? w.match(new RegExp(`.{1,${maxChars}}`, 'gu')) ?? [w] : [w]));
  for (const word of words) {
    if (line && line.length + 1 + word.length > maxChars) {
      out.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  out.push(line);
  return out;
}

/** SVG drawn over the extended canvas: axis lines on the image, caption rows in the band below. */
function overlaySvg(width: number, height: number, band: number, fontSize: number, rows: { text: string; warning: boolean }[], lesions: Lesion[], stroke: number): string {
  const parts: string[] = [];
  for (const l of lesions) {
    // SVG coordinates are pixel corners; the axes run between pixel centres
    const [a, b, c, d] = l.longAxisLine.map((v) => v + 0.5);
    const [e, f, g, h] = l.shortAxisLine.map((v) => v + 0.5);
    parts.push(`<line x1="${a}" y1="${b}" x2="${c}" y2="${d}" stroke="${AXIS}" stroke-width="${stroke}"/>`);
    parts.push(`<line x1="${e}" y1="${f}" x2="${g}" y2="${h}" stroke="${AXIS}" stroke-width="${stroke}" stroke-dasharray="${4 * stroke},${2 * stroke}"/>`);
  }
  // with several lesions, each contour gets its number (as in the caption and the SR), outside
  // its top-left corner where there is room, in the contour's colour with a dark edge
  if (lesions.length > 1) {
    for (const l of lesions) {
      const x = Math.max(0, Math.min(width - fontSize, l.bbox.x0 - fontSize * 0.8));
      const y = l.bbox.y0 - fontSize * 0.2 >= fontSize ? l.bbox.y0 - fontSize * 0.2 : Math.min(height - 2, l.bbox.y0 + fontSize);
      parts.push(
        `<text x="${Math.round(x)}" y="${Math.round(y)}" font-family="DejaVu Sans, sans-serif" font-weight="bold" font-size="${fontSize}" fill="${LABEL}" stroke="#000000" stroke-width="${Math.max(1, Math.round(fontSize / 12))}" paint-order="stroke">${l.index}</text>`,
      );
    }
  }
  const pad = Math.round(fontSize * 0.5);
  rows.forEach(({ text, warning }, i) => {
    const y = height + pad + Math.round(fontSize * LINE_HEIGHT * (i + 1)) - Math.round(fontSize * 0.3);
    const style = warning ? 'fill="#ffd000" font-weight="bold"' : 'fill="#ffffff"';
    parts.push(`<text x="${pad}" y="${y}" font-family="DejaVu Sans, sans-serif" font-size="${fontSize}" ${style}>${escapeXml(text)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + band}">${parts.join('')}</svg>`;
}

/** Renders the overlay picture: RGB, 8 bits, interleaved; the image plus the caption band below it. */
export async function renderOverlay(result: InstanceResult, model: ModelInfo, colourFrame?: RgbFrame | null): Promise<{ width: number; height: number; rgb: Buffer }> {
  const f = result.reportedFrameIndex;
  const frame = result.reportedFrame;
  const { width, height } = frame;
  const stroke = Math.max(1, Math.round(Math.min(width, height) / 250));
  // the font follows the image width but never drops below 12 px: long lines wrap instead
  const fontSize = Math.max(12, Math.min(40, Math.round(width / 28)));
  const maxChars = Math.max(8, Math.floor((width - fontSize) / (EM_PER_CHAR * fontSize)));
  // the disclaimer, and the networks' disagreement, in the warning colour
  const rows = captionLines(result, model).flatMap((line, i) => wrap(line, maxChars).map((text) => ({ text, warning: i === 0 || line === LOW_AGREEMENT })));
  const band = Math.round(fontSize * LINE_HEIGHT * rows.length + fontSize);

  const rgb = basePicture(frame, colourFrame);
  if (f < result.masks.length) paintContour(rgb, result.masks.frame(f), width, height, stroke);
  const lesions = result.lesions.filter((l) => l.frameIndex === f);
  const svg = overlaySvg(width, height, band, fontSize, rows, lesions, stroke);

  const { data, info } = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
    .extend({ bottom: band, background: { r: 0, g: 0, b: 0 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`overlay: expected 3 channels, got ${info.channels}`);
  return { width: info.width, height: info.height, rgb: data };
}

export async function buildOverlay(source: Dataset, result: InstanceResult, model: ModelInfo, opts: OverlayOptions = {}): Promise<Dataset> {
  const { width, height, rgb } = await renderOverlay(result, model, opts.colourFrame);
  const ds = commonAttributes(source, model, 'overlay', opts);
  const pixels = new Uint8Array(rgb.length + (rgb.length % 2)); // OB: even length
  pixels.set(rgb);
  return {
    ...ds,
    ImageType: ['DERIVED', 'SECONDARY'],
    // the source's body part, or none: an image the scanner did not call breast is not made one here
    ...(source.BodyPartExamined ? { BodyPartExamined: source.BodyPartExamined } : {}),
    // General Series: type 2C for a paired body part, so present, empty when the side is unknown
    Laterality: side(source) ?? '',
    // General Image module: type 2C, required without a Frame of Reference; empty is allowed
    PatientOrientation: '',
    BurnedInAnnotation: 'YES',
    ImageComments: NOT_FOR_DIAGNOSIS,
    DerivationDescription: `Lesion contour and axes from ${model.name} ${model.version} drawn on frame ${result.reportedFrameIndex + 1}, caption band added below`,
    SourceImageSequence: [{ ...imageReference(source, result.reportedFrameIndex), PurposeOfReferenceCodeSequence: [Codes.sourceImageForProcessing] }],
    // SC Equipment module (PS3.3 C.8.6.1): WSD = workstation
    ConversionType: 'WSD',
    SecondaryCaptureDeviceManufacturer: MANUFACTURER,
    SecondaryCaptureDeviceManufacturerModelName: model.name,
    SecondaryCaptureDeviceSoftwareVersions: [`${model.name} ${model.version}`],
    DateOfSecondaryCapture: ds.ContentDate,
    TimeOfSecondaryCapture: ds.ContentTime,
    LossyImageCompression: '00',
    SamplesPerPixel: 3,
    PhotometricInterpretation: 'RGB',
    PlanarConfiguration: 0,
    Rows: height,
    Columns: width,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: [pixels.buffer],
    _vrMap: { PixelData: 'OB' },
  };
}
