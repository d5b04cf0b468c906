/**
 * A compressed frame whose own markers announce another size than Rows x Columns is refused before
 * it reaches a decoder (which would allocate what the bitstream says: gigabytes for a small file).
 */
import { Context, NativeCodecs } from 'dcmjs-codecs';
import { bitstreamSize } from '../../src/dicom/bitstreamSize';
import { DecodeError, decodeDataset } from '../../src/dicom/decode';
import { TS } from '../../src/dicom/transferSyntaxes';
import { imageDataset } from '../helpers/dicomBuild';
import { phantomPixels } from '../helpers/phantom';

const ROWS = 48;
const COLUMNS = 64;

beforeAll(async () => {
  if (!NativeCodecs.isInitialized()) await NativeCodecs.initializeAsync();
});

function encode(kind: 'jpeg' | 'jpeg-ls' | 'jpeg2000'): Uint8Array {
  const [frame] = phantomPixels({ frames: 1, rows: ROWS, columns: COLUMNS, seed: 4 });
  const context = new Context({ width: COLUMNS, height: ROWS, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: 1, pixelRepresentation: 0, planarConfiguration: 0, photometricInterpretation: 'MONOCHROME2', decodedBuffer: frame });
  const out = kind === 'jpeg' ? NativeCodecs.encodeJpeg(context, { lossy: true, quality: 90 }) : kind === 'jpeg-ls' ? NativeCodecs.encodeJpegLs(context) : NativeCodecs.encodeJpeg2000(context, { lossy: false });
  return new Uint8Array(out.getEncodedBuffer());
}

/** The same bitstream, its announced size changed to width x height. */
function lie(kind: 'jpeg' | 'jpeg-ls' | 'jpeg2000', bytes: Uint8Array, width: number, height: number): Uint8Array {
  const b = Buffer.from(bytes);
  if (kind === 'jpeg2000') {
    const at = b.indexOf(Buffer.from([0xff, 0x4f, 0xff, 0x51]));
    b.writeUInt32BE(width + b.readUInt32BE(at + 16), at + 8);
    b.writeUInt32BE(height + b.readUInt32BE(at + 20), at + 12);
    return b;
  }
  for (let i = 2; i + 9 < b.length; i++) {
    if (b[i] === 0xff && ((b[i + 1] >= 0xc0 && b[i + 1] <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(b[i + 1])) || b[i + 1] === 0xf7)) {
      b.writeUInt16BE(height, i + 5);
      b.writeUInt16BE(width, i + 7);
      return b;
    }
  }
  throw new Error('no SOF');
}

const SYNTAX = { jpeg: TS.JpegBaseline, 'jpeg-ls': TS.JpegLsLossless, jpeg2000: TS.Jpeg2000Lossless } as const;

for (const kind of ['jpeg', 'jpeg-ls', 'jpeg2000'] as const) {
  test(`${kind}: the size is read from the bitstream; a frame announcing 40000 x 40000 is refused at once`, async () => {
    const good = encode(kind);
    expect(bitstreamSize(kind, good)).toEqual({ width: COLUMNS, height: ROWS });
    const ds = (frame: Uint8Array) => imageDataset([Uint8Array.from(frame).buffer], { Rows: ROWS, Columns: COLUMNS });
    expect((await decodeDataset(ds(good), SYNTAX[kind])).frames).toHaveLength(1);
    const bad = lie(kind, good, 40000, 40000);
    expect(bitstreamSize(kind, bad)).toEqual({ width: 40000, height: 40000 });
    const t0 = Date.now();
    const error = await decodeDataset(ds(bad), SYNTAX[kind]).catch((e) => e);
    expect(error).toBeInstanceOf(DecodeError);
    expect(error.message).toMatch(/announces 40000x40000, the header says 64x48/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
}

test('RLE and unreadable bitstreams announce nothing', () => {
  expect(bitstreamSize('rle', new Uint8Array(64))).toBeNull();
  expect(bitstreamSize('jpeg', new Uint8Array([1, 2, 3, 4]))).toBeNull();
  expect(bitstreamSize('jpeg2000', new Uint8Array(30))).toBeNull();
});
