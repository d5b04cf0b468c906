/**
 * Hand-made analysis results for the phantom (test/helpers/phantom.ts): the mask is the phantom's
 * known lesion ellipse, the sizes are measured on that mask, so report builders can be tested
 * without the model.
 */
import { FrameMasks } from '../../src/postprocess/frameMasks';
import { Dataset, InstanceResult, Label, Lesion, NetworkAgreement } from '../../src/types/domain';
import { traceOutline } from '../../src/postprocess/outline';
import { PhantomOptions, phantomDataset, phantomLesion, phantomPixels, phantomRegion } from './phantom';

export interface LesionCaseOptions extends PhantomOptions {
  /** frames whose mask is left empty (0-based) */
  emptyFrames?: number[];
  label?: Label;
  malignancyProbability?: number;
  /** the networks' agreement (a model with outputs.spread); absent: a model without it */
  agreement?: NetworkAgreement;
}

export interface LesionCase {
  /** naturalized source dataset, without its PixelData: the builders must not need it */
  source: Dataset;
  result: InstanceResult;
  /** the masks the result holds, one byte a pixel, as made here (what a SEG must give back) */
  masks: Uint8Array[];
  /** every frame's gray pixels */
  gray: Uint8Array[];
}

function ellipseMask(rows: number, columns: number, frame: number): Uint8Array {
  const { cx, cy, ax, ay } = phantomLesion(rows, columns, frame);
  const mask = new Uint8Array(rows * columns);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const dx = (x + 0.5 - cx) / ax;
      const dy = (y + 0.5 - cy) / ay;
      if (dx * dx + dy * dy < 1) mask[y * columns + x] = 1;
    }
  }
  return mask;
}

function lesionFromEllipse(rows: number, columns: number, frame: number, mask: Uint8Array, mmPerPixel: number | null): Lesion {
  const { cx, cy, ax, ay } = phantomLesion(rows, columns, frame);
  let x0 = columns, y0 = rows, x1 = 0, y1 = 0, area = 0;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      if (!mask[y * columns + x]) continue;
      area++;
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1);
    }
  }
  // the phantom ellipse is wider than deep: long axis horizontal, short axis vertical
  const long = 2 * Math.max(ax, ay);
  const short = 2 * Math.min(ax, ay);
  return {
    frameIndex: frame,
    index: 1,
    bbox: { x0, y0, x1, y1 },
    areaPixels: area,
    longAxisPixels: long,
    shortAxisPixels: short,
    longAxisMm: mmPerPixel === null ? null : long * mmPerPixel,
    shortAxisMm: mmPerPixel === null ? null : short * mmPerPixel,
    areaMm2: mmPerPixel === null ? null : area * mmPerPixel * mmPerPixel,
    // the ellipse's extremes in pixel-centre indices (a point x in corner coordinates is index x - 0.5)
    longAxisLine: [cx - ax - 0.5, cy - 0.5, cx + ax - 0.5, cy - 0.5],
    shortAxisLine: [cx - 0.5, cy - ay - 0.5, cx - 0.5, cy + ay - 0.5],
    outline: traceOutline(mask.reduce<number[]>((acc, v, i) => (v ? (acc.push(i), acc) : acc), []), columns),
    meanProbability: 0.9,
  };
}

export function lesionCase(opts: LesionCaseOptions = {}): LesionCase {
  const rows = opts.rows ?? 251;
  const columns = opts.columns ?? 333;
  const frames = opts.frames ?? 1;
  const mmPerPixel = opts.mmPerPixel === undefined ? 0.1 : opts.mmPerPixel;
  const withLesion = opts.lesion !== false;
  const source = phantomDataset({ ...opts, rows, columns, frames });
  delete source.PixelData;
  const gray = phantomPixels({ ...opts, rows, columns, frames });

  const masks: Uint8Array[] = [];
  const lesions: Lesion[] = [];
  for (let f = 0; f < frames; f++) {
    if (!withLesion || opts.emptyFrames?.includes(f)) {
      masks.push(new Uint8Array(rows * columns));
      continue;
    }
    const mask = ellipseMask(rows, columns, f);
    masks.push(mask);
    lesions.push(lesionFromEllipse(rows, columns, f, mask, mmPerPixel));
  }

  const label: Label = opts.label ?? (withLesion ? 'malignant' : 'normal');
  const malignancy = opts.malignancyProbability ?? (label === 'malignant' ? 0.83 : label === 'benign' ? 0.12 : 0.03);
  const rest = 1 - malignancy;
  const classProbabilities: Record<Label, number> =
    label === 'normal' ? { normal: rest * 0.9, benign: rest * 0.1, malignant: malignancy } : { normal: rest * 0.1, benign: rest * 0.9, malignant: malignancy };
  const reportedFrameIndex = lesions.length ? lesions[0].frameIndex : 0;
  const r = phantomRegion(rows, columns);

  return {
    source,
    result: {
      source: {
        sopInstanceUid: source.SOPInstanceUID,
        sopClassUid: source.SOPClassUID,
        rows,
        columns,
        frameCount: frames,
        region: {
          rect: r,
          calibration: mmPerPixel === null ? null : { mmPerPixelX: mmPerPixel, mmPerPixelY: mmPerPixel },
          source: mmPerPixel === null ? 'whole-frame' : 'ultrasound-region',
        },
      },
      masks: FrameMasks.of(masks, rows * columns),
      lesions,
      classProbabilities,
      label,
      malignancyProbability: malignancy,
      reportedFrameIndex,
      reportedFrame: { width: columns, height: rows, data: gray[reportedFrameIndex] },
      ...(opts.agreement ? { agreement: opts.agreement } : {}),
      timingsMs: {},
    },
    masks,
    gray,
  };
}
