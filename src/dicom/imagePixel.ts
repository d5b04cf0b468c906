/**
 * The Image Pixel module attributes (PS3.3 C.7.6.3) that say how to read Pixel Data, checked
 * before anything is allocated: a crafted header must fail here, not in a buffer allocation.
 */
import { Dataset } from '../types/domain';
import { DecodeError } from './errors';

export type Photometric =
  | 'MONOCHROME1'
  | 'MONOCHROME2'
  | 'PALETTE COLOR'
  | 'RGB'
  | 'YBR_FULL'
  | 'YBR_FULL_422'
  | 'YBR_RCT'
  | 'YBR_ICT';

const SUPPORTED: Photometric[] = ['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_RCT', 'YBR_ICT'];

export interface ImagePixel {
  rows: number;
  columns: number;
  frames: number;
  samplesPerPixel: 1 | 3;
  bitsAllocated: 8 | 16;
  bitsStored: number;
  signed: boolean;
  /** true: colour-by-plane (RRR…GGG…BBB…), PlanarConfiguration 1 */
  planar: boolean;
  photometric: Photometric;
}

/** A single integer value, or undefined when absent. Several values (VM > 1) are malformed. */
function intAttr(ds: Dataset, name: string): number | undefined {
  let v = ds[name];
  if (v === undefined || v === null || v === '') return undefined;
  if (Array.isArray(v)) {
    if (v.length !== 1) throw new DecodeError('decode.malformed', `${name} must have one value, has ${v.length} (${v.join('\\')})`);
    v = v[0];
  }
  const n = typeof v === 'string' ? Number(v.trim()) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new DecodeError('decode.malformed', `${name} is not an integer: ${String(v)}`);
  return n;
}

function required(ds: Dataset, name: string): number {
  const v = intAttr(ds, name);
  if (v === undefined) throw new DecodeError('decode.malformed', `${name} is missing`);
  return v;
}

function inRange(name: string, v: number, min: number, max: number): number {
  if (v < min || v > max) throw new DecodeError('decode.malformed', `${name} ${v} is out of range ${min}..${max}`);
  return v;
}

export function readImagePixel(ds: Dataset): ImagePixel {
  const rows = inRange('Rows', required(ds, 'Rows'), 1, 65535);
  const columns = inRange('Columns', required(ds, 'Columns'), 1, 65535);
  const frames = inRange('NumberOfFrames', intAttr(ds, 'NumberOfFrames') ?? 1, 1, 2 ** 31 - 1);
  const spp = required(ds, 'SamplesPerPixel');
  const bitsAllocated = required(ds, 'BitsAllocated');
  const bitsStored = intAttr(ds, 'BitsStored') ?? bitsAllocated;
  const pixelRepresentation = intAttr(ds, 'PixelRepresentation') ?? 0;
  const planarConfiguration = intAttr(ds, 'PlanarConfiguration') ?? 0;

  const piValue = Array.isArray(ds.PhotometricInterpretation) ? ds.PhotometricInterpretation[0] : ds.PhotometricInterpretation;
  if (typeof piValue !== 'string' || !piValue.trim()) throw new DecodeError('decode.malformed', 'PhotometricInterpretation is missing');
  const photometric = piValue.replace(/\0/g, '').trim().toUpperCase() as Photometric;
  if (!SUPPORTED.includes(photometric)) {
    throw new DecodeError('decode.unsupported_photometric', `PhotometricInterpretation ${photometric} is not supported`);
  }
  const colour = !photometric.startsWith('MONOCHROME') && photometric !== 'PALETTE COLOR';
  if (spp !== (colour ? 3 : 1)) {
    throw new DecodeError('decode.malformed', `SamplesPerPixel ${spp} does not fit PhotometricInterpretation ${photometric}`);
  }
  if (bitsAllocated !== 8 && bitsAllocated !== 16) {
    throw new DecodeError('decode.unsupported_photometric', `BitsAllocated ${bitsAllocated} is not supported (8 or 16)`);
  }
  if (colour && bitsAllocated !== 8) {
    // Ultrasound colour is 8 bits per sample; deeper colour has no 8-bit training equivalent.
    throw new DecodeError('decode.unsupported_photometric', `${photometric} with BitsAllocated ${bitsAllocated} is not supported`);
  }
  inRange('BitsStored', bitsStored, 1, bitsAllocated);
  inRange('PixelRepresentation', pixelRepresentation, 0, 1);
  inRange('PlanarConfiguration', planarConfiguration, 0, 1);
  return {
    rows,
    columns,
    frames,
    samplesPerPixel: spp as 1 | 3,
    bitsAllocated,
    bitsStored,
    signed: pixelRepresentation === 1,
    planar: colour && planarConfiguration === 1,
    photometric,
  };
}
