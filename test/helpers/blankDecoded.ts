/**
 * A decoded multi-frame instance of blank frames, the whole frame analysed and uncalibrated: for
 * pipeline tests whose predictor decides what each frame holds.
 */
import { DecodedInstance } from '../../src/types/domain';

export const blankDecoded = (frames: number, width: number, height: number): DecodedInstance => ({
  sopInstanceUid: '1.2.3',
  sopClassUid: '1.2.840.10008.5.1.4.1.1.3.1',
  rows: height,
  columns: width,
  frames: Array.from({ length: frames }, () => ({ width, height, data: new Uint8Array(width * height) })),
  region: { rect: { x0: 0, y0: 0, x1: width, y1: height }, calibration: null, source: 'whole-frame' },
});
