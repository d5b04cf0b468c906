/**
 * PNG renderings for the dashboard: the overlay Secondary Capture in colour as it was sent, and
 * grey previews of received instances (any one frame, the first by default, decoded by the
 * pipeline's own decoder, so any transfer syntax it accepts). Kept in a small in-memory cache
 * keyed by path, modification time, frame and size (a re-run writes a new run folder; a resent
 * instance replaces its file).
 */
import fsp from 'node:fs/promises';
import sharp from 'sharp';
import { decodeInstance } from '../dicom/decode';
import { readPart10, TransferSyntax } from '../dicom/part10';

const NATIVE: readonly string[] = [TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRLittleEndian];

/** One frame of an 8-bit RGB image in a native transfer syntax (what report/overlay writes), as interleaved RGB. */
function nativeRgb(bytes: Buffer, frame: number): { data: Buffer; width: number; height: number } | null {
  const { dataset: ds, transferSyntaxUid } = readPart10(bytes);
  if (!NATIVE.includes(String(transferSyntaxUid)) || ds.SamplesPerPixel !== 3 || ds.BitsAllocated !== 8 || ds.PhotometricInterpretation !== 'RGB') return null;
  const width = Number(ds.Columns);
  const height = Number(ds.Rows);
  const raw = Array.isArray(ds.PixelData) ? ds.PixelData[0] : ds.PixelData;
  if (!raw || !width || !height) return null;
  const n = width * height;
  const all = Buffer.from(raw as ArrayBuffer);
  if (frame >= Math.max(1, Number(ds.NumberOfFrames) || 1) || all.length < (frame + 1) * n * 3) return null;
  const px = all.subarray(frame * n * 3, (frame + 1) * n * 3);
  if (Number(ds.PlanarConfiguration ?? 0) === 0) return { data: px, width, height };
  const out = Buffer.alloc(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = px[i];
    out[i * 3 + 1] = px[n + i];
    out[i * 3 + 2] = px[2 * n + i];
  }
  return { data: out, width, height };
}

async function grayFrame(bytes: Buffer, frame: number): Promise<{ data: Uint8Array; width: number; height: number }> {
  const d = await decodeInstance(bytes, { frame });
  const f = d.frames[0];
  return { data: f.data, width: f.width, height: f.height };
}

/** Larger files are not rendered: the whole file is read and parsed (only the one frame is decoded). */
export const MAX_RENDER_BYTES = 64 * 1024 * 1024;

export class NotRenderable extends Error {}

/** Renders one frame of a DICOM file (0-based, the first by default) as PNG, at most maxWidth pixels wide. */
export async function renderPng(file: string, maxWidth: number, frame = 0): Promise<Buffer> {
  const { size } = await fsp.stat(file);
  if (size > MAX_RENDER_BYTES) throw new NotRenderable(`${Math.round(size / 1048576)} MB is too large for a preview`);
  const bytes = await fsp.readFile(file);
  const rgb = nativeRgb(bytes, frame);
  const img = rgb
    ? sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } })
    : await grayFrame(bytes, frame).then((g) => sharp(Buffer.from(g.data.buffer, g.data.byteOffset, g.data.byteLength), { raw: { width: g.width, height: g.height, channels: 1 } }));
  return img.resize({ width: maxWidth, withoutEnlargement: true }).png({ compressionLevel: 6 }).toBuffer();
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
