/**
 * PNG renderings for the dashboard: the overlay Secondary Capture in colour as it was sent, and
 * grey previews of received instances (any one frame, the first by default, decoded by the
 * pipeline's own decoder, so any transfer syntax it accepts). Only the header and the one frame
 * are read (dicom/frameExcerpt), so a frame of a long cine costs one frame; a Deflated file is one
 * deflate stream and is read whole, up to MAX_RENDER_BYTES. Kept in a small in-memory cache keyed
 * by path, modification time, frame and size (a re-run writes a new run folder; a resent instance
 * replaces its file).
 */
import fsp from 'node:fs/promises';
import sharp from 'sharp';
import { decodeDataset, decodeInstance, DecodeError } from '../dicom/decode';
import { readFrameExcerpt } from '../dicom/frameExcerpt';
import { TransferSyntax } from '../dicom/part10';
import { Dataset, GrayFrame } from '../types/domain';

const NATIVE: readonly string[] = [TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRLittleEndian];

/** The one frame of an 8-bit RGB image in a native transfer syntax (what report/overlay writes), as interleaved RGB. */
function nativeRgb(ds: Dataset, transferSyntaxUid: string): { data: Buffer; width: number; height: number } | null {
  if (!NATIVE.includes(transferSyntaxUid) || ds.SamplesPerPixel !== 3 || ds.BitsAllocated !== 8 || ds.PhotometricInterpretation !== 'RGB') return null;
  const width = Number(ds.Columns);
  const height = Number(ds.Rows);
  const raw = Array.isArray(ds.PixelData) ? ds.PixelData[0] : ds.PixelData;
  if (!raw || !width || !height) return null;
  const n = width * height;
  const px = Buffer.from(raw as ArrayBuffer);
  if (px.length < n * 3) return null;
  if (Number(ds.PlanarConfiguration ?? 0) === 0) return { data: px.subarray(0, n * 3), width, height };
  const out = Buffer.alloc(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = px[i];
    out[i * 3 + 1] = px[n + i];
    out[i * 3 + 2] = px[2 * n + i];
  }
  return { data: out, width, height };
}

/** The most a preview reads for one frame (its stored bytes), or for a whole Deflated file. */
export const MAX_RENDER_BYTES = 64 * 1024 * 1024;

export class NotRenderable extends Error {}

/** One frame as RGB (a native colour image, as sent) or as the decoder's gray. */
async function frameImage(file: string, frame: number): Promise<{ data: Buffer | Uint8Array; width: number; height: number; channels: 1 | 3 }> {
  const excerpt = await readFrameExcerpt(file, frame, { maxFrameBytes: MAX_RENDER_BYTES });
  if (excerpt) {
    const rgb = nativeRgb(excerpt.dataset, excerpt.transferSyntaxUid);
    if (rgb) return { ...rgb, channels: 3 };
    return gray((await decodeDataset(excerpt.dataset, excerpt.transferSyntaxUid, { frame: 0 })).frames[0]);
  }
  const { size } = await fsp.stat(file);
  if (size > MAX_RENDER_BYTES) throw new NotRenderable(`a Deflated file of ${Math.round(size / 1048576)} MB is too large for a preview`);
  return gray((await decodeInstance(await fsp.readFile(file), { frame })).frames[0]);
}

const gray = (f: GrayFrame) => ({ data: f.data, width: f.width, height: f.height, channels: 1 as const });

/** Renders one frame of a DICOM file (0-based, the first by default) as PNG, at most maxWidth pixels wide. */
export async function renderPng(file: string, maxWidth: number, frame = 0): Promise<Buffer> {
  const f = await frameImage(file, frame).catch((e: unknown) => {
    if (e instanceof DecodeError && e.reason === 'decode.too_large') throw new NotRenderable(`${e.message}: too large for a preview`);
    throw e;
  });
  const data = Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
  return sharp(data, { raw: { width: f.width, height: f.height, channels: f.channels } })
    .resize({ width: maxWidth, withoutEnlargement: true })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** A tiny LRU cache of rendered PNGs by file (and its modification time), frame and size. */
export class PngCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(
    /** renderPng here, or in a worker process (src/web/previewRenderer.ts) */
    private readonly render: (file: string, maxWidth: number, frame: number) => Promise<Buffer> = renderPng,
    private readonly maxBytes = 32 * 1024 * 1024,
  ) {}

  async get(file: string, maxWidth: number, frame = 0): Promise<Buffer> {
    // a resent instance replaces the file under the same name
    const { mtimeMs, size } = await fsp.stat(file);
    const key = `${maxWidth}:${frame}:${mtimeMs}:${size}:${file}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const png = await this.render(file, maxWidth, frame);
    this.entries.set(key, png);
    this.bytes += png.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
    return png;
  }
}
