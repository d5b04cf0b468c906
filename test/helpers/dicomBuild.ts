/**
 * Small builders for decode tests: synthetic pixel layouts the phantom does not produce
 * (RLE fragments, Deflated files), written by hand so that the tests need no external tools.
 */
import fs from 'node:fs';
import { deflateRawSync } from 'zlib';
import { part10DatasetOffset, writePart10 } from '../../src/dicom/part10';
import { Dataset } from '../../src/types/domain';
import { phantomDataset } from './phantom';

/** A phantom dataset with its pixel attributes and Pixel Data replaced. */
export function imageDataset(pixels: ArrayBufferView | ArrayBuffer | ArrayBuffer[], attrs: Dataset): Dataset {
  const ds = phantomDataset({ rows: 2, columns: 2, mmPerPixel: null }); // attributes only: its pixels are replaced
  delete ds.PlanarConfiguration;
  const buffers = Array.isArray(pixels) ? pixels : [pixels instanceof ArrayBuffer ? pixels : copyBuffer(pixels)];
  return { ...ds, BitsStored: attrs.BitsAllocated ?? 8, HighBit: (attrs.BitsAllocated ?? 8) - 1, ...attrs, PixelData: buffers };
}

function copyBuffer(v: ArrayBufferView): ArrayBuffer {
  const out = new ArrayBuffer(v.byteLength);
  new Uint8Array(out).set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return out;
}

/** One RLE Lossless frame (PS3.5 Annex G): a 64-byte header, then one segment per byte plane, literal runs only. */
export function rleFrame(planes: Uint8Array[]): ArrayBuffer {
  const segments = planes.map((plane) => {
    const out: number[] = [];
    for (let i = 0; i < plane.length; i += 128) {
      const run = plane.subarray(i, Math.min(plane.length, i + 128));
      out.push(run.length - 1, ...run);
    }
    if (out.length % 2) out.push(0x80); // -128 is a no-op; segments have even length
    return out;
  });
  const header = new Uint32Array(16);
  header[0] = segments.length;
  let offset = 64;
  segments.forEach((s, i) => {
    header[i + 1] = offset;
    offset += s.length;
  });
  const frame = new Uint8Array(offset);
  frame.set(new Uint8Array(header.buffer), 0);
  let at = 64;
  for (const s of segments) {
    frame.set(s, at);
    at += s.length;
  }
  return frame.buffer;
}

/**
 * A Deflated Explicit VR Little Endian file (PS3.5 A.5) whose data set is `dataset` followed by
 * an OB element of `extraZeros` zero bytes: a few kilobytes on disk, as large as asked inflated.
 */
export function deflatedFile(dataset: Dataset, extraZeros = 0): Buffer {
  const plain = writePart10(dataset);
  const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const metaEnd = 144 + view.getUint32(140, true);
  const meta = Buffer.from(plain.subarray(132, metaEnd));
  // swap the Transfer Syntax UID value (2 bytes longer) and fix both lengths
  const explicit = Buffer.from('1.2.840.10008.1.2.1\0', 'latin1');
  const at = meta.indexOf(explicit);
  if (at < 0) throw new Error('transfer syntax not found in File Meta');
  const deflated = Buffer.from('1.2.840.10008.1.2.1.99', 'latin1');
  const newMeta = Buffer.concat([meta.subarray(0, at), deflated, meta.subarray(at + explicit.length)]);
  newMeta.writeUInt16LE(deflated.length, at - 2);
  newMeta.writeUInt32LE(newMeta.length - 12, 8);

  let body = Buffer.from(plain.subarray(metaEnd));
  if (extraZeros > 0) {
    // an OB element in an odd (private) group, first in the data set: only its size matters here
    const element = Buffer.alloc(12);
    element.writeUInt16LE(0x0009, 0);
    element.writeUInt16LE(0x1000, 2);
    element.write('OB', 4, 'latin1');
    element.writeUInt32LE(extraZeros, 8);
    body = Buffer.concat([element, Buffer.alloc(extraZeros), body]);
  }
  return Buffer.concat([plain.subarray(0, 132), newMeta, deflateRawSync(body)]);
}

/**
 * A file whose one frame is `rows` x `columns` RGB and as large on disk as its header says, but
 * sparse (zeros, no disk blocks): for limits that must refuse a frame before reading it.
 */
export function claimedFrameFile(file: string, rows: number, columns: number): void {
  const bytes = writePart10(imageDataset(new Uint8Array(16).buffer, { Rows: rows, Columns: columns, SamplesPerPixel: 3, PhotometricInterpretation: 'RGB', PlanarConfiguration: 0 }));
  const at = bytes.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])); // (7FE0,0010), explicit VR LE: tag, OB, 2 reserved, length
  const size = rows * columns * 3;
  const header = Buffer.from(bytes.subarray(0, at + 12));
  header.writeUInt32LE(size, at + 8);
  fs.writeFileSync(file, header);
  fs.truncateSync(file, header.length + size);
}

/**
 * A Part 10 file in any encapsulated transfer syntax (also ones no library here encodes, such as
 * MPEG-4), by hand: the meta group, the data set without Pixel Data as writePart10 encodes it
 * (Explicit VR Little Endian, which every encapsulated syntax uses), then Pixel Data as an empty
 * Basic Offset Table and one item per fragment.
 */
export function encapsulatedFile(dataset: Dataset, transferSyntaxUid: string, fragments: Uint8Array[]): Buffer {
  const even = (s: string) => Buffer.from(s.length % 2 ? `${s}\0` : s, 'latin1');
  const short = (group: number, element: number, vr: string, value: Buffer) => {
    const h = Buffer.alloc(8);
    h.writeUInt16LE(group, 0);
    h.writeUInt16LE(element, 2);
    h.write(vr, 4, 'latin1');
    h.writeUInt16LE(value.length, 6);
    return Buffer.concat([h, value]);
  };
  const long = (group: number, element: number, vr: string, length: number) => {
    const h = Buffer.alloc(12);
    h.writeUInt16LE(group, 0);
    h.writeUInt16LE(element, 2);
    h.write(vr, 4, 'latin1');
    h.writeUInt32LE(length, 8);
    return h;
  };
  const item = (tag: number, value: Uint8Array) => {
    const h = Buffer.alloc(8);
    h.writeUInt16LE(0xfffe, 0);
    h.writeUInt16LE(tag, 2);
    h.writeUInt32LE(value.length, 4);
    return Buffer.concat([h, Buffer.from(value)]);
  };
  const metaBody = Buffer.concat([
    long(0x0002, 0x0001, 'OB', 2),
    Buffer.from([0, 1]),
    short(0x0002, 0x0002, 'UI', even(String(dataset.SOPClassUID))),
    short(0x0002, 0x0003, 'UI', even(String(dataset.SOPInstanceUID))),
    short(0x0002, 0x0010, 'UI', even(transferSyntaxUid)),
    short(0x0002, 0x0012, 'UI', even('1.2.826.0.1.3680043.10.854')),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(metaBody.length, 0);
  const { PixelData: _pixels, ...rest } = dataset;
  const plain = writePart10(rest);
  const body = plain.subarray(part10DatasetOffset(plain));
  const pixelData = Buffer.concat([
    long(0x7fe0, 0x0010, 'OB', 0xffffffff),
    item(0xe000, new Uint8Array(0)),
    ...fragments.map((f) => item(0xe000, f.length % 2 ? Uint8Array.from([...f, 0]) : f)),
    item(0xe0dd, new Uint8Array(0)),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), short(0x0002, 0x0000, 'UL', groupLength), metaBody, body, pixelData]);
}
