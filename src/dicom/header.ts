/**
 * Reads what the listener and the study assembler need from a stored file (identity and transfer
 * syntax) without touching the pixels: dcmjs stops at (7FE0,0010), and for a path only a prefix
 * of the file is read, so a 400 MB cine costs a few kilobytes.
 */
import { open, readFile } from 'fs/promises';
import { Dataset } from '../types/domain';
import { readPart10 } from './part10';
import { DecodeError } from './errors';
import { checkDeflatedSize, isDeflated } from './deflate';
import { DEFAULT_MAX_PIXELS, maxInflatedBytes } from './limits';

export interface DicomHeader {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  transferSyntaxUid: string;
  modality: string;
  /** NumberOfFrames, 1 when absent */
  frames: number;
  /** File Meta Information, naturalized */
  meta: Dataset;
  /** every attribute before Pixel Data, naturalized */
  dataset: Dataset;
}

const PIXEL_DATA = '7FE00010';

function text(v: unknown): string {
  const x = Array.isArray(v) ? v[0] : v;
  return x === undefined || x === null ? '' : String(x).replace(/\0/g, '').trim();
}

/**
 * Parses the header from bytes. `complete` says the bytes are the whole file; otherwise the parse
 * only counts when it reached Pixel Data (dcmjs reads a cut-off prefix without complaint).
 */
function parseHeader(bytes: Uint8Array, complete: boolean): DicomHeader | null {
  let parsed: ReturnType<typeof readPart10>;
  try {
    parsed = readPart10(bytes, { untilTag: PIXEL_DATA });
  } catch (e) {
    if (!complete) return null;
    throw new DecodeError('decode.malformed', `not a readable DICOM Part 10 file: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { meta, dataset } = parsed;
  if (!complete && !('PixelData' in dataset)) return null;
  delete dataset.PixelData; // dcmjs leaves an empty marker where it stopped
  const header: DicomHeader = {
    sopClassUid: text(dataset.SOPClassUID) || text(meta.MediaStorageSOPClassUID),
    sopInstanceUid: text(dataset.SOPInstanceUID) || text(meta.MediaStorageSOPInstanceUID),
    studyInstanceUid: text(dataset.StudyInstanceUID),
    seriesInstanceUid: text(dataset.SeriesInstanceUID),
    transferSyntaxUid: text(meta.TransferSyntaxUID),
    modality: text(dataset.Modality),
    frames: Math.max(1, Number.parseInt(text(dataset.NumberOfFrames), 10) || 1),
    meta,
    dataset,
  };
  if (!header.transferSyntaxUid) throw new DecodeError('decode.malformed', 'File Meta Information has no Transfer Syntax UID');
  if (!header.sopClassUid || !header.sopInstanceUid) throw new DecodeError('decode.malformed', 'SOP Class UID or SOP Instance UID is missing');
  return header;
}

/** Header of a Part 10 file given as bytes or a path. Throws DecodeError only. */
export async function readHeader(source: string | Uint8Array): Promise<DicomHeader> {
  try {
    if (typeof source !== 'string') return await parseWhole(source);
    const file = await open(source, 'r');
    try {
      const size = (await file.stat()).size;
      // Growing prefixes: a header rarely exceeds the first 64 KiB.
      for (let length = 64 * 1024; ; length *= 16) {
        const buffer = Buffer.alloc(Math.min(length, size));
        await file.read(buffer, 0, buffer.length, 0);
        // a Deflated data set cannot be read in part: take the whole file
        if (buffer.length === size || isDeflated(buffer)) {
          const whole = buffer.length === size ? buffer : await readFile(source);
          return await parseWhole(whole);
        }
        const header = parseHeader(buffer, false);
        if (header) return header;
      }
    } finally {
      await file.close();
    }
  } catch (e) {
    if (e instanceof DecodeError) throw e;
    throw new DecodeError('decode.malformed', `cannot read the header of ${typeof source === 'string' ? source : 'the file'}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function parseWhole(bytes: Uint8Array): Promise<DicomHeader> {
  await checkDeflatedSize(bytes, maxInflatedBytes(DEFAULT_MAX_PIXELS));
  return parseHeader(bytes, true) as DicomHeader;
}
