/**
 * Worker thread for dashboard previews (src/web/previewRenderer.ts): reads, parses and decodes a
 * DICOM file's first frame and encodes the PNG away from the event loop that the DICOM listener
 * and the API share. One request at a time; the PNG goes back as a transferred buffer.
 */
import { parentPort } from 'node:worker_threads';
import { NotRenderable, renderPng } from './images';

export interface PreviewRequest {
  id: number;
  file: string;
  maxWidth: number;
}

export type PreviewReply = { id: number; png: Uint8Array } | { id: number; error: string; notRenderable: boolean };

parentPort?.on('message', (req: PreviewRequest) => {
  renderPng(req.file, req.maxWidth).then(
    (png) => {
      const out = new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
      parentPort!.postMessage({ id: req.id, png: out } satisfies PreviewReply);
    },
    (e: Error) => parentPort!.postMessage({ id: req.id, error: e.message, notRenderable: e instanceof NotRenderable } satisfies PreviewReply),
  );
});
