/**
 * Worker process for dashboard previews (src/web/previewRenderer.ts): reads, parses and decodes a
 * DICOM file's frame and encodes the PNG away from the event loop that the DICOM listener
 * and the API share.
 */
import { quietDicomLibraries } from '../dicom/libraryLogs';
import { parentChannel } from '../workerProcess';
import { NotRenderable, renderPng } from './images';

export interface PreviewRequest {
  id: number;
  file: string;
  maxWidth: number;
  /** 0-based */
  frame: number;
}

export type PreviewReply = { id: number; png: Uint8Array } | { id: number; error: string; notRenderable: boolean };

quietDicomLibraries();
const reply: (m: PreviewReply) => void = parentChannel();
process.on('message', (req: PreviewRequest) => {
  renderPng(req.file, req.maxWidth, req.frame).then(
    (png) => reply({ id: req.id, png }),
    (e: Error) => reply({ id: req.id, error: e.message, notRenderable: e instanceof NotRenderable }),
  );
});
