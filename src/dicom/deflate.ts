/**
 * Deflated Explicit VR Little Endian (PS3.5 A.5): everything after the File Meta group is one raw
 * deflate stream, which dcmjs inflates in a single buffer before reading a tag. A few kilobytes
 * can inflate to gigabytes, so we stream-inflate once first, counting bytes without keeping them.
 */
import { createInflateRaw } from 'zlib';
import { DecodeError } from './errors';

const DEFLATED = '1.2.840.10008.1.2.1.99';

/** Where the data set starts, when the File Meta group declares its length and names the Deflated syntax. */
function deflatedDataStart(bytes: Uint8Array): number | null {
  if (bytes.length < 144 || String.fromCharCode(...bytes.subarray(128, 132)) !== 'DICM') return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // (0002,0000) UL, explicit VR little endian: tag 4, VR 2, length 2, value 4
  if (view.getUint16(132, true) !== 0x0002 || view.getUint16(134, true) !== 0x0000) return null;
  const start = 144 + view.getUint32(140, true);
  if (start > bytes.length) return null;
  const meta = Buffer.from(bytes.buffer, bytes.byteOffset + 144, start - 144).toString('latin1');
  return meta.includes(DEFLATED) ? start : null;
}

export function isDeflated(bytes: Uint8Array): boolean {
  return deflatedDataStart(bytes) !== null;
}

/** Rejects with decode.too_large when a Deflated data set inflates to more than limitBytes. */
export function checkDeflatedSize(bytes: Uint8Array, limitBytes: number): Promise<void> {
  const start = deflatedDataStart(bytes);
  if (start === null) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const inflate = createInflateRaw();
    let total = 0;
    inflate.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > limitBytes) {
        inflate.destroy();
        reject(new DecodeError('decode.too_large', `Deflated data set inflates to more than ${limitBytes} bytes`));
      }
    });
    inflate.on('end', () => resolve());
    inflate.on('error', (e) => reject(new DecodeError('decode.malformed', `Deflated data set cannot be inflated: ${e.message}`)));
    inflate.end(Buffer.from(bytes.buffer, bytes.byteOffset + start, bytes.length - start));
  });
}
