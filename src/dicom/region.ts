/**
 * The analysis region of an ultrasound image, from the US Region Calibration module
 * (PS3.3 C.8.5.5, SequenceOfUltrasoundRegions).
 *
 * Scanners burn annotations, rulers and colour bars around the B-mode picture; the model must see
 * only the picture, and measurements are only meaningful inside a calibrated region. We therefore
 * take the largest region that is 2D (RegionSpatialFormat 1, C.8.5.5.1.1) and, when the scanner
 * says what it holds, tissue (RegionDataType 1, C.8.5.5.1.2). Doppler, M-mode and waveform regions
 * are skipped. Without such a region we fall back to the whole frame, uncalibrated.
 */
import { AnalysisRegion, Calibration, Dataset, Rect } from '../types/domain';

const SPATIAL_FORMAT_2D = 1;
const DATA_TYPE_TISSUE = 1;
/** PhysicalUnits{X,Y}Direction code for centimetres (C.8.5.5.1.15) */
const UNITS_CM = 3;

function num(v: unknown): number | undefined {
  const x = Array.isArray(v) ? v[0] : v;
  const n = typeof x === 'string' ? Number(x) : x;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

/**
 * A region reaching past the image (beyond the last row or column; MaxX1 = Columns, one past, is a
 * common off-by-one and tolerated) was written for another picture — typically the image was
 * resized and the regions were not. Its place is clamped to the image; its scale cannot be trusted.
 */
function reachesPast(r: Dataset, columns: number, rows: number): boolean {
  const maxX = num(r.RegionLocationMaxX1);
  const maxY = num(r.RegionLocationMaxY1);
  return (maxX !== undefined && maxX > columns) || (maxY !== undefined && maxY > rows);
}

function regionRect(r: Dataset, columns: number, rows: number): Rect | null {
  const minX = num(r.RegionLocationMinX0);
  const minY = num(r.RegionLocationMinY0);
  const maxX = num(r.RegionLocationMaxX1);
  const maxY = num(r.RegionLocationMaxY1);
  if (minX === undefined || minY === undefined || maxX === undefined || maxY === undefined) return null;
  // MaxX1 / MaxY1 are the last pixel inside the region (inclusive); Rect's x1 / y1 are exclusive.
  const rect = {
    x0: Math.max(0, Math.min(columns, Math.floor(minX))),
    y0: Math.max(0, Math.min(rows, Math.floor(minY))),
    x1: Math.max(0, Math.min(columns, Math.floor(maxX) + 1)),
    y1: Math.max(0, Math.min(rows, Math.floor(maxY) + 1)),
  };
  return rect.x1 > rect.x0 && rect.y1 > rect.y0 ? rect : null;
}

/**
 * mm per pixel when both axes are in cm; other units (e.g. seconds, cm/s) are not a spatial scale.
 * A negative delta (the axis runs the other way, PS3.3 C.8.5.5.1) has the same pixel size.
 */
function calibration(r: Dataset): Calibration | null {
  if (num(r.PhysicalUnitsXDirection) !== UNITS_CM || num(r.PhysicalUnitsYDirection) !== UNITS_CM) return null;
  const dx = num(r.PhysicalDeltaX);
  const dy = num(r.PhysicalDeltaY);
  if (dx === undefined || dy === undefined || !Number.isFinite(dx) || !Number.isFinite(dy) || dx === 0 || dy === 0) return null;
  return { mmPerPixelX: Math.abs(dx) * 10, mmPerPixelY: Math.abs(dy) * 10 };
}

const area = (r: Rect) => (r.x1 - r.x0) * (r.y1 - r.y0);

export function analysisRegion(dataset: Dataset): AnalysisRegion {
  const columns = num(dataset.Columns) ?? 0;
  const rows = num(dataset.Rows) ?? 0;
  const whole: AnalysisRegion = { rect: { x0: 0, y0: 0, x1: columns, y1: rows }, calibration: null, source: 'whole-frame' };
  const regions: unknown = dataset.SequenceOfUltrasoundRegions;
  if (!Array.isArray(regions)) return whole;

  let best: AnalysisRegion | null = null;
  for (const r of regions as Dataset[]) {
    if (!r || typeof r !== 'object') continue;
    if (num(r.RegionSpatialFormat) !== SPATIAL_FORMAT_2D) continue;
    const dataType = num(r.RegionDataType);
    if (dataType !== undefined && dataType !== DATA_TYPE_TISSUE) continue;
    const rect = regionRect(r, columns, rows);
    if (!rect) continue;
    // sizes in mm only from a region that fits the image: one written for a larger picture would
    // report a lesion several times too small (a 640x480 region on a 320x240 image: half the size)
    const scale = reachesPast(r, columns, rows) ? null : calibration(r);
    if (!best || area(rect) > area(best.rect)) best = { rect, calibration: scale, source: 'ultrasound-region' };
  }
  return best ?? whole;
}
