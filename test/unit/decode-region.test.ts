/**
 * The analysed region and its calibration come from SequenceOfUltrasoundRegions (PS3.3 C.8.5.5):
 * the largest 2D tissue region, with mm per pixel only when both axes are in centimetres.
 */
import { analysisRegion, decodeInstance } from '../../src/dicom/decode';
import { Dataset } from '../../src/types/domain';
import { phantomFile, phantomRegion } from '../helpers/phantom';

function region(attrs: Dataset): Dataset {
  return {
    RegionSpatialFormat: 1,
    RegionDataType: 1,
    RegionLocationMinX0: 10,
    RegionLocationMinY0: 20,
    RegionLocationMaxX1: 109,
    RegionLocationMaxY1: 79,
    PhysicalUnitsXDirection: 3,
    PhysicalUnitsYDirection: 3,
    PhysicalDeltaX: 0.01,
    PhysicalDeltaY: 0.02,
    ...attrs,
  };
}

const image = (...regions: Dataset[]): Dataset => ({ Rows: 200, Columns: 300, SequenceOfUltrasoundRegions: regions });

describe('analysis region', () => {
  test('the phantom scan: its B-mode region at 0.1 mm per pixel', async () => {
    const out = await decodeInstance(phantomFile());
    expect(out.region.source).toBe('ultrasound-region');
    expect(out.region.rect).toEqual(phantomRegion(251, 333));
    expect(out.region.calibration?.mmPerPixelX).toBeCloseTo(0.1, 12);
    expect(out.region.calibration?.mmPerPixelY).toBeCloseTo(0.1, 12);
  });

  test('MaxX1 / MaxY1 are inclusive; the rect is exclusive; cm become mm', () => {
    expect(analysisRegion(image(region({})))).toEqual({
      rect: { x0: 10, y0: 20, x1: 110, y1: 80 },
      calibration: { mmPerPixelX: 0.1, mmPerPixelY: 0.2 },
      source: 'ultrasound-region',
    });
  });

  test('the largest 2D tissue region wins; Doppler, M-mode and non-tissue regions are skipped', () => {
    const small = region({});
    const large = region({ RegionLocationMinX0: 0, RegionLocationMinY0: 0, RegionLocationMaxX1: 199, RegionLocationMaxY1: 99, PhysicalDeltaX: 0.05, PhysicalDeltaY: 0.05 });
    const spectral = region({ RegionSpatialFormat: 3, RegionLocationMaxX1: 299, RegionLocationMaxY1: 199 }); // spectral, whole image
    const colourFlow = region({ RegionDataType: 2, RegionLocationMaxX1: 299, RegionLocationMaxY1: 199 }); // colour flow
    const out = analysisRegion(image(small, spectral, large, colourFlow));
    expect(out.rect).toEqual({ x0: 0, y0: 0, x1: 200, y1: 100 });
    expect(out.calibration?.mmPerPixelX).toBeCloseTo(0.5, 12);
  });

  test('a region without RegionDataType is taken as tissue', () => {
    expect(analysisRegion(image(region({ RegionDataType: undefined }))).source).toBe('ultrasound-region');
  });

  test('units other than cm give no calibration (sizes stay in pixels)', () => {
    const seconds = analysisRegion(image(region({ PhysicalUnitsXDirection: 4 })));
    expect(seconds.rect).toEqual({ x0: 10, y0: 20, x1: 110, y1: 80 });
    expect(seconds.calibration).toBeNull();
    expect(analysisRegion(image(region({ PhysicalDeltaY: 0 }))).calibration).toBeNull();
  });

  test('a negative delta (the axis runs upwards) is the same pixel size, not uncalibrated', () => {
    expect(analysisRegion(image(region({ PhysicalDeltaY: -0.02 }))).calibration).toEqual(analysisRegion(image(region({}))).calibration);
  });

  test('a region reaching past the image is clamped to it, and its scale not trusted (it was written for another picture)', () => {
    const out = analysisRegion(image(region({ RegionLocationMinX0: 250, RegionLocationMaxX1: 800, RegionLocationMaxY1: 300 })));
    expect(out.rect).toEqual({ x0: 250, y0: 20, x1: 300, y1: 200 });
    expect(out.calibration).toBeNull();
    // MaxX1 = Columns (one past the last column) is a common off-by-one: still calibrated
    expect(analysisRegion(image(region({ RegionLocationMaxX1: 300, RegionLocationMaxY1: 200 }))).calibration).not.toBeNull();
    expect(analysisRegion(image(region({ RegionLocationMaxY1: 201 }))).calibration).toBeNull();
  });

  test('no usable region: the whole frame, uncalibrated', () => {
    const whole = { rect: { x0: 0, y0: 0, x1: 300, y1: 200 }, calibration: null, source: 'whole-frame' };
    expect(analysisRegion({ Rows: 200, Columns: 300 })).toEqual(whole);
    expect(analysisRegion(image())).toEqual(whole);
    expect(analysisRegion(image(region({ RegionSpatialFormat: 2 })))).toEqual(whole); // M-mode only
    expect(analysisRegion(image(region({ RegionLocationMinX0: 400 })))).toEqual(whole); // outside the image
    expect(analysisRegion(image(region({ RegionLocationMaxY1: undefined })))).toEqual(whole);
  });
});
