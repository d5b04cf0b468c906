/**
 * Synthetic breast-ultrasound phantom wrapped as DICOM, so tests run without ../shared.
 * Speckle background, an optional dark elliptical "lesion", black annotation bars outside a
 * calibrated SequenceOfUltrasoundRegions region (0.1 mm per pixel).
 */
import { writePart10 } from '../../src/dicom/part10';
import { mulberry32 } from '../../src/evaluate/metrics';
import { Dataset } from '../../src/types/domain';

export interface PhantomOptions {
  rows?: number;
  columns?: number;
  frames?: number;
  photometric?: 'MONOCHROME2' | 'RGB';
  lesion?: boolean;
  seed?: number;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  patientName?: string;
  patientId?: string;
  sopClassUid?: string;
  /** mm per pixel in the ultrasound region; null = no SequenceOfUltrasoundRegions */
  mmPerPixel?: number | null;
}

export const US_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.6.1';
export const US_MULTIFRAME_STORAGE = '1.2.840.10008.5.1.4.1.1.3.1';

/** The region of the phantom image that holds the ultrasound picture (full-frame pixel coords). */
export function phantomRegion(rows: number, columns: number) {
  return { x0: Math.round(columns * 0.1), y0: Math.round(rows * 0.08), x1: columns - Math.round(columns * 0.05), y1: rows - 4 };
}

/** The lesion ellipse of frame f: centre and semi-axes in pixels. */
export function phantomLesion(rows: number, columns: number, frame = 0) {
  const r = phantomRegion(rows, columns);
  return {
    cx: (r.x0 + r.x1) / 2 + frame * 2,
    cy: (r.y0 + r.y1) / 2,
    ax: (r.x1 - r.x0) * 0.18,
    ay: (r.y1 - r.y0) * 0.14,
  };
}

export function phantomPixels(opts: PhantomOptions = {}): Uint8Array[] {
  const rows = opts.rows ?? 251;
  const columns = opts.columns ?? 333;
  const frames = opts.frames ?? 1;
  const rnd = mulberry32(opts.seed ?? 1);
  const reg = phantomRegion(rows, columns);
  const out: Uint8Array[] = [];
  for (let f = 0; f < frames; f++) {
    const px = new Uint8Array(rows * columns);
    const les = phantomLesion(rows, columns, f);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < columns; x++) {
        let v = 0;
        if (x >= reg.x0 && x < reg.x1 && y >= reg.y0 && y < reg.y1) {
          // Rayleigh-like speckle around a depth-dependent mean
          const u = Math.max(rnd(), 1e-6);
          const speckle = Math.sqrt(-2 * Math.log(u));
          const depth = (y - reg.y0) / (reg.y1 - reg.y0);
          let mean = 110 - 30 * depth;
          if (opts.lesion !== false) {
            const dx = (x - les.cx) / les.ax;
            const dy = (y - les.cy) / les.ay;
            const d = dx * dx + dy * dy;
            if (d < 1) mean = 22;
            else if (d < 1.15) mean = 160; // echogenic rim
          }
          v = Math.min(255, Math.round(mean * speckle * 0.8));
        } else if (y < reg.y0 - 4 && x > 10 && x < 90 && (x + y) % 7 < 3) {
          v = 230; // burnt-in annotation "text" outside the US region
        }
        px[y * columns + x] = v;
      }
    }
    out.push(px);
  }
  return out;
}

/** A naturalized US dataset holding the phantom (uncompressed, Explicit VR LE when written). */
export function phantomDataset(opts: PhantomOptions = {}): Dataset {
  const rows = opts.rows ?? 251;
  const columns = opts.columns ?? 333;
  const frames = opts.frames ?? 1;
  const photometric = opts.photometric ?? 'MONOCHROME2';
  const gray = phantomPixels({ ...opts, rows, columns, frames });
  const spp = photometric === 'RGB' ? 3 : 1;
  const all = new Uint8Array(rows * columns * spp * frames);
  gray.forEach((g, f) => {
    if (spp === 1) all.set(g, f * g.length);
    else for (let i = 0; i < g.length; i++) all.fill(g[i], (f * g.length + i) * 3, (f * g.length + i) * 3 + 3);
  });
  const seed = opts.seed ?? 1;
  const study = opts.studyInstanceUid ?? `2.25.1000${seed}`;
  const mm = opts.mmPerPixel === undefined ? 0.1 : opts.mmPerPixel;
  const reg = phantomRegion(rows, columns);
  const sopClass = opts.sopClassUid ?? (frames > 1 ? US_MULTIFRAME_STORAGE : US_IMAGE_STORAGE);
  const ds: Dataset = {
    SpecificCharacterSet: 'ISO_IR 100',
    ImageType: ['ORIGINAL', 'PRIMARY'],
    SOPClassUID: sopClass,
    SOPInstanceUID: opts.sopInstanceUid ?? `${study}.1.${seed}`,
    StudyDate: '20261126',
    StudyTime: '101500',
    ContentDate: '20261126',
    ContentTime: '101500',
    AccessionNumber: 'ACC0001',
    Modality: 'US',
    Manufacturer: 'Phantom',
    ReferringPhysicianName: '',
    StudyDescription: 'US BREAST',
    SeriesDescription: 'Breast phantom',
    PatientName: opts.patientName ?? 'Phantom^Patient',
    PatientID: opts.patientId ?? 'PHANTOM1',
    PatientBirthDate: '19700101',
    PatientSex: 'F',
    BodyPartExamined: 'BREAST',
    Laterality: 'L',
    StudyInstanceUID: study,
    SeriesInstanceUID: opts.seriesInstanceUid ?? `${study}.1`,
    StudyID: '1',
    SeriesNumber: 1,
    InstanceNumber: seed,
    PatientOrientation: '',
    SamplesPerPixel: spp,
    PhotometricInterpretation: photometric,
    Rows: rows,
    Columns: columns,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: [all.buffer],
    _vrMap: { PixelData: 'OB' },
  };
  if (spp === 3) ds.PlanarConfiguration = 0;
  if (frames > 1) {
    ds.NumberOfFrames = frames;
    ds.FrameIncrementPointer = 0x00181063;
    ds.FrameTime = 33.3;
  }
  if (mm !== null) {
    ds.SequenceOfUltrasoundRegions = [
      {
        RegionSpatialFormat: 1,
        RegionDataType: 1,
        RegionFlags: 0,
        RegionLocationMinX0: reg.x0,
        RegionLocationMinY0: reg.y0,
        RegionLocationMaxX1: reg.x1 - 1,
        RegionLocationMaxY1: reg.y1 - 1,
        PhysicalUnitsXDirection: 3,
        PhysicalUnitsYDirection: 3,
        PhysicalDeltaX: mm / 10,
        PhysicalDeltaY: mm / 10,
        ReferencePixelX0: 0,
        ReferencePixelY0: 0,
      },
    ];
  }
  return ds;
}

export function phantomFile(opts: PhantomOptions = {}): Buffer {
  return writePart10(phantomDataset(opts));
}
