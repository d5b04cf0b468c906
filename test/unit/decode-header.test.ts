/**
 * readHeader gives the listener identity and transfer syntax without reading Pixel Data.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { DecodeError, decodeInstance, readHeader } from '../../src/dicom/decode';
import { writePart10 } from '../../src/dicom/part10';
import { phantomDataset, phantomFile } from '../helpers/phantom';
import { deflatedFile } from '../helpers/dicomBuild';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sonogate-header-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const identity = {
  sopClassUid: '1.2.840.10008.5.1.4.1.1.3.1',
  sopInstanceUid: '2.25.10003.1.3',
  studyInstanceUid: '2.25.10003',
  seriesInstanceUid: '2.25.10003.1',
  transferSyntaxUid: '1.2.840.10008.1.2.1',
  modality: 'US',
  frames: 4,
};

describe('character sets dcmjs cannot decode', () => {
  // ISO 2022 IR 87 (Japanese, as Japanese scanners write names) is 7-bit: escape sequences in ASCII
  const JAPANESE = 'Yamada^Tarou=\u001b$B;3ED\u001b(B^\u001b$BB@O:\u001b(B';
  const file = () => writePart10({ ...phantomDataset({ seed: 3, rows: 20, columns: 30 }), SpecificCharacterSet: ['', 'ISO 2022 IR 87'], PatientName: JAPANESE });

  test('an image whose names are in ISO 2022 IR 87 is read and decoded, not refused; the undecodable name parts are dropped', async () => {
    const header = await readHeader(file());
    expect(header.sopInstanceUid).toBe('2.25.10003.1.3');
    expect(header.dataset.PatientName).toEqual([{ Alphabetic: 'Yamada^Tarou' }]);
    const decoded = await decodeInstance(file());
    expect(decoded.frames.length).toBe(1);
  });

  test('other malformed input in such a file is still refused', async () => {
    const whole = file();
    // cut inside an element's value: not a character set problem
    await expect(decodeInstance(whole.subarray(0, whole.length - 20 * 30 - 2))).rejects.toThrow(DecodeError);
  });
});

describe('readHeader', () => {
  test('from bytes', async () => {
    const header = await readHeader(phantomFile({ seed: 3, frames: 4, rows: 20, columns: 30 }));
    expect(header).toMatchObject(identity);
    expect(header.dataset.PatientID).toBe('PHANTOM1');
    expect(header.dataset.PixelData).toBeUndefined();
  });

  test('from a path whose Pixel Data is cut short: the header does not need it', async () => {
    const whole = phantomFile({ seed: 3, frames: 4, rows: 200, columns: 300 });
    const path = join(dir, 'cut.dcm');
    writeFileSync(path, whole.subarray(0, whole.length - 100_000));
    expect(await readHeader(path)).toMatchObject(identity);
    await expect(decodeInstance(whole.subarray(0, whole.length - 100_000))).rejects.toMatchObject({ reason: 'decode.malformed' });
  });

  test('a header longer than the first read, with an icon whose own Pixel Data must not stop it', async () => {
    const ds = phantomDataset({ seed: 3, frames: 4, rows: 20, columns: 30 });
    ds.IconImageSequence = [
      { SamplesPerPixel: 1, PhotometricInterpretation: 'MONOCHROME2', Rows: 300, Columns: 300, BitsAllocated: 8, BitsStored: 8, HighBit: 7, PixelRepresentation: 0, PixelData: [new ArrayBuffer(90_000)] },
    ];
    ds.SeriesDescription = 'after the icon';
    const path = join(dir, 'icon.dcm');
    writeFileSync(path, writePart10(ds));
    const header = await readHeader(path);
    expect(header).toMatchObject(identity);
    expect(header.dataset.IconImageSequence).toHaveLength(1);
    expect(header.dataset.SeriesDescription).toBe('after the icon');
  });

  test('a Deflated file, from a path', async () => {
    const path = join(dir, 'deflated.dcm');
    writeFileSync(path, deflatedFile(phantomDataset({ seed: 3, frames: 4, rows: 20, columns: 30 })));
    expect(await readHeader(path)).toMatchObject({ ...identity, transferSyntaxUid: '1.2.840.10008.1.2.1.99' });
  });

  test('not DICOM, or no file at all: DecodeError', async () => {
    const path = join(dir, 'text.dcm');
    writeFileSync(path, 'hello '.repeat(50_000));
    await expect(readHeader(path)).rejects.toBeInstanceOf(DecodeError);
    await expect(readHeader(join(dir, 'missing.dcm'))).rejects.toMatchObject({ reason: 'decode.malformed' });
    await expect(readHeader(new Uint8Array(10))).rejects.toBeInstanceOf(DecodeError);
  });
});
