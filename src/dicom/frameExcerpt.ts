/**
 * Frames of a stored instance without reading the others: the header (everything before Pixel
 * Data), then only the bytes (native) or fragments (encapsulated) of the frames wanted, found by
 * walking the element headers (PS3.5 7.1 data elements, 7.5 sequences, A.4 encapsulation). A
 * dashboard preview of frame 200 of a 400 MB cine reads about one frame, not the file
 * (readFrameExcerpt); the pipeline reads a cine a few frames at a time (openFrameFile), so the
 * inference worker never holds the file, nor all its frames, at once.
 *
 * readFrameExcerpt gives the header with Pixel Data holding that frame alone and NumberOfFrames 1,
 * so the pipeline's own decoder (decodeDataset) turns it into pixels. A Deflated data set is one
 * deflate stream and cannot be read in part: both return null and the caller reads the file.
 */
import { FileHandle, open } from 'node:fs/promises';
import { Dataset } from '../types/domain';
import { DecodeError } from './errors';
import { checkFrameIndex, concat, groupFragments, nativeFrameBytes, nativeLayout, startsCodestream } from './frames';
import { ImagePixel, readImagePixel } from './imagePixel';
import { readPart10, TransferSyntax } from './part10';
import { isNativeSyntax, TS } from './transferSyntaxes';

export interface FrameExcerpt {
  /** the header, with PixelData holding the one frame and NumberOfFrames 1 */
  dataset: Dataset;
  transferSyntaxUid: string;
  /** NumberOfFrames of the stored instance */
  frames: number;
  /** bytes of the chosen frame (native bytes, or its fragments' payload) */
  frameBytes: number;
  /** bytes read from the file: the header, the element heads walked and the frame */
  bytesRead: number;
}

export interface ExcerptOptions {
  /** refuse a frame whose stored bytes exceed this (decode.too_large) before reading it */
  maxFrameBytes?: number;
}

const UNDEFINED_LENGTH = 0xffffffff;
const ITEM = 0xe000;
const ITEM_END = 0xe00d;
const SEQUENCE_END = 0xe0dd;
/** explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2) */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
/** sequences nest; a crafted file must not recurse without end */
const MAX_DEPTH = 32;
const BLOCK = 64 * 1024;

interface Syntax {
  little: boolean;
  explicit: boolean;
}

interface ElementHead {
  /** where the element starts */
  at: number;
  group: number;
  element: number;
  /** null for items and delimiters, and in implicit VR */
  vr: string | null;
  length: number;
  valueAt: number;
}

/** Reads byte ranges of a file through one cached block, counting what it reads. */
class FileReader {
  bytesRead = 0;
  private block = Buffer.alloc(0);
  private blockAt = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  /** `ahead`: how much to read at once when pos is not cached (sequential walks read blocks; seeks read little) */
  async bytes(pos: number, length: number, ahead = BLOCK): Promise<Buffer> {
    if (pos < 0 || pos + length > this.size) {
      throw new DecodeError('decode.malformed', `the file ends at byte ${this.size}, inside an element that needs bytes ${pos}–${pos + length}: truncated`);
    }
    if (pos >= this.blockAt && pos + length <= this.blockAt + this.block.length) {
      return this.block.subarray(pos - this.blockAt, pos - this.blockAt + length);
    }
    const want = Math.min(this.size - pos, Math.max(length, ahead));
    const buf = Buffer.alloc(want);
    const { bytesRead } = await this.fh.read(buf, 0, want, pos);
    this.bytesRead += bytesRead;
    if (bytesRead < length) throw new DecodeError('decode.malformed', `the file ended while reading bytes ${pos}–${pos + length}: truncated`);
    if (length <= BLOCK) {
      this.block = buf.subarray(0, bytesRead);
      this.blockAt = pos;
    }
    return buf.subarray(0, length);
  }
}

async function head(r: FileReader, pos: number, s: Syntax, ahead?: number): Promise<ElementHead> {
  const b = await r.bytes(pos, 8, ahead);
  const u16 = (at: number) => (s.little ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const u32 = (buf: Buffer, at: number) => (s.little ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const group = u16(0);
  const element = u16(2);
  if (group === 0xfffe || !s.explicit) return { at: pos, group, element, vr: null, length: u32(b, 4), valueAt: pos + 8 };
  const vr = b.toString('latin1', 4, 6);
  if (!/^[A-Z]{2}$/.test(vr)) throw new DecodeError('decode.malformed', `element (${hex(group)},${hex(element)}) at byte ${pos} has no valid VR`);
  if (!LONG_VRS.has(vr)) return { at: pos, group, element, vr, length: u16(6), valueAt: pos + 8 };
  const more = await r.bytes(pos + 8, 4, ahead);
  return { at: pos, group, element, vr, length: u32(more, 0), valueAt: pos + 12 };
}

const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');

/** Where the element whose head is `h` ends. Undefined length: a sequence of items (UN: in implicit VR little endian, PS3.5 6.2.2). */
async function skipValue(r: FileReader, h: ElementHead, s: Syntax, depth: number): Promise<number> {
  if (h.length !== UNDEFINED_LENGTH) return h.valueAt + h.length;
  if (depth >= MAX_DEPTH) throw new DecodeError('decode.malformed', `sequences nested deeper than ${MAX_DEPTH}`);
  const inner: Syntax = h.vr === 'UN' ? { little: true, explicit: false } : s;
  let pos = h.valueAt;
  for (;;) {
    const item = await head(r, pos, inner);
    if (item.group === 0xfffe && item.element === SEQUENCE_END) return item.valueAt;
    if (item.group !== 0xfffe || item.element !== ITEM) {
      throw new DecodeError('decode.malformed', `expected an item in the sequence (${hex(h.group)},${hex(h.element)}) at byte ${pos}`);
    }
    pos = item.length !== UNDEFINED_LENGTH ? item.valueAt + item.length : await skipItem(r, item.valueAt, inner, depth + 1);
  }
}

/** An item of undefined length: its elements up to the Item Delimitation Item. */
async function skipItem(r: FileReader, start: number, s: Syntax, depth: number): Promise<number> {
  let pos = start;
  for (;;) {
    const h = await head(r, pos, s);
    if (h.group === 0xfffe && h.element === ITEM_END) return h.valueAt;
    pos = await skipValue(r, h, s, depth);
  }
}

/** The top-level Pixel Data element's head, walking from the start of the data set; null if it has none. */
async function findPixelData(r: FileReader, start: number, s: Syntax): Promise<ElementHead | null> {
  let pos = start;
  while (pos < r.size) {
    const h = await head(r, pos, s);
    if (h.group === 0x7fe0 && h.element === 0x0010) return h;
    if (h.group > 0x7fe0 && h.group !== 0xfffe) return null;
    pos = await skipValue(r, h, s, 0);
  }
  return null;
}

/**
 * The File Meta group after the preamble and "DICM" (always explicit VR little endian): where the
 * data set starts, and its Transfer Syntax UID.
 */
async function readMeta(r: FileReader): Promise<{ start: number; transferSyntaxUid: string }> {
  if (r.size < 132 || (await r.bytes(128, 4)).toString('latin1') !== 'DICM') {
    throw new DecodeError('decode.malformed', 'not a DICOM Part 10 file (no "DICM" at byte 128)');
  }
  const meta: Syntax = { little: true, explicit: true };
  let pos = 132;
  let transferSyntaxUid = '';
  // the data set after it may use another syntax: look at the group before reading a VR
  while (pos + 2 <= r.size && (await r.bytes(pos, 2)).readUInt16LE(0) === 0x0002) {
    const h = await head(r, pos, meta);
    if (h.element === 0x0010) transferSyntaxUid = (await r.bytes(h.valueAt, h.length)).toString('latin1').replace(/\0/g, '').trim();
    pos = await skipValue(r, h, meta, 0);
  }
  if (!transferSyntaxUid) throw new DecodeError('decode.malformed', 'File Meta Information has no Transfer Syntax UID');
  return { start: pos, transferSyntaxUid };
}

/** Everything before Pixel Data, parsed by dcmjs like any header. */
async function headerBefore(r: FileReader, end: number): Promise<Dataset> {
  const prefix = await r.bytes(0, end);
  try {
    return readPart10(prefix).dataset;
  } catch (e) {
    throw new DecodeError('decode.malformed', `not a readable DICOM Part 10 header: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function syntaxOf(ts: string): Syntax {
  if (ts === TS.ImplicitVRLittleEndian) return { little: true, explicit: false };
  return { little: ts !== TS.ExplicitVRBigEndian, explicit: true };
}

interface Fragment {
  /** where its payload starts */
  at: number;
  length: number;
}

/** The Basic Offset Table (offsets from the first fragment's item tag) and the fragments after it. */
async function fragmentsOf(r: FileReader, pixel: ElementHead): Promise<{ offsets: number[]; first: number; fragments: Fragment[]; end: number }> {
  const le: Syntax = { little: true, explicit: true };
  const bot = await head(r, pixel.valueAt, le);
  if (bot.group !== 0xfffe || bot.element !== ITEM || bot.length === UNDEFINED_LENGTH) {
    throw new DecodeError('decode.malformed', 'encapsulated Pixel Data does not start with a Basic Offset Table item');
  }
  const table = bot.length ? await r.bytes(bot.valueAt, bot.length) : Buffer.alloc(0);
  const offsets = Array.from({ length: Math.floor(table.length / 4) }, (_, i) => table.readUInt32LE(i * 4));
  const first = bot.valueAt + bot.length;
  const fragments: Fragment[] = [];
  let pos = first;
  for (;;) {
    // fragments lie far apart: read just their heads
    const h = await head(r, pos, le, 8);
    if (h.group === 0xfffe && h.element === SEQUENCE_END) return { offsets, first, fragments, end: h.valueAt };
    if (h.group !== 0xfffe || h.element !== ITEM || h.length === UNDEFINED_LENGTH) {
      throw new DecodeError('decode.malformed', `expected a fragment item in Pixel Data at byte ${pos}`);
    }
    fragments.push({ at: h.valueAt, length: h.length });
    pos = h.valueAt + h.length;
  }
}

/**
 * The fragments of frame `frame`: by the Basic Offset Table when it has one entry per frame;
 * otherwise one fragment per frame, or all of them for a single frame, or grouped where a new
 * codestream starts (frames.groupFragments, as for the whole Pixel Data).
 */
async function frameFragments(r: FileReader, pixel: ElementHead, frame: number, frames: number): Promise<Fragment[]> {
  const { offsets, first, fragments } = await fragmentsOf(r, pixel);
  const nonEmpty = fragments.filter((f) => f.length > 0);
  if (nonEmpty.length === 0) throw new DecodeError('decode.no_pixel_data', 'Pixel Data has no fragments');
  if (frames === 1) return nonEmpty;
  if (offsets.length === frames) {
    const from = first + offsets[frame];
    const to = frame + 1 < frames ? first + offsets[frame + 1] : Infinity;
    const picked = fragments.filter((f) => f.at - 8 >= from && f.at - 8 < to && f.length > 0);
    if (picked.length) return picked;
    throw new DecodeError('decode.malformed', `the Basic Offset Table points frame ${frame + 1} at no fragment`);
  }
  if (nonEmpty.length === frames) return [nonEmpty[frame]];
  const starts: boolean[] = [];
  for (const f of nonEmpty) starts.push(startsCodestream(await r.bytes(f.at, Math.min(8, f.length), 8)));
  return groupFragments(nonEmpty, (_, i) => starts[i], frames)[frame];
}

function tooLarge(bytes: number, max: number | undefined): void {
  if (max !== undefined && bytes > max) {
    throw new DecodeError('decode.too_large', `one frame is ${Math.round(bytes / 1048576)} MB, more than the ${Math.round(max / 1048576)} MB allowed`);
  }
}

async function nativeFrame(r: FileReader, pixel: ElementHead, info: ImagePixel, frame: number, ts: string, opts: ExcerptOptions): Promise<Buffer> {
  if (pixel.length === UNDEFINED_LENGTH) throw new DecodeError('decode.malformed', `Pixel Data has an undefined length in the native transfer syntax ${ts}`);
  const layout = nativeLayout(info, pixel.length);
  const frameBytes = nativeFrameBytes(layout);
  const needed = frameBytes * info.frames;
  if (pixel.length < needed) {
    throw new DecodeError('decode.malformed', `Pixel Data holds ${pixel.length} bytes, ${needed} expected for ${info.frames} frame(s) of ${info.columns}x${info.rows}: truncated`);
  }
  tooLarge(frameBytes, opts.maxFrameBytes);
  // Big Endian OW words must not be split: frames of an odd byte count start mid-word after the first
  const odd = ts === TS.ExplicitVRBigEndian && frameBytes % 2 === 1;
  if (odd && frame > 0) throw new DecodeError('decode.malformed', 'frames of an odd byte count in Explicit VR Big Endian cannot be read one by one');
  const length = odd && pixel.length > frameBytes ? frameBytes + 1 : frameBytes;
  return r.bytes(pixel.valueAt + frame * frameBytes, length, 0);
}

/**
 * Header and one frame (0-based) of a Part 10 file; null for a Deflated data set. Throws
 * DecodeError only: a frame the instance lacks, a truncated file, a malformed element.
 */
export async function readFrameExcerpt(file: string, frame: number, opts: ExcerptOptions = {}): Promise<FrameExcerpt | null> {
  const fh = await open(file, 'r').catch((e: Error) => {
    throw new DecodeError('decode.malformed', `cannot open ${file}: ${e.message}`);
  });
  try {
    const r = new FileReader(fh, (await fh.stat()).size);
    const { start, transferSyntaxUid: ts } = await readMeta(r);
    if (ts === TransferSyntax.DeflatedExplicitVRLittleEndian) return null;
    const pixel = await findPixelData(r, start, syntaxOf(ts));
    if (!pixel) throw new DecodeError('decode.no_pixel_data', 'the instance has no Pixel Data');
    const dataset = await headerBefore(r, pixel.at);
    const info = readImagePixel(dataset);
    checkFrameIndex(frame, info.frames);

    let pixelData: ArrayBuffer[];
    let frameBytes: number;
    if (isNativeSyntax(ts)) {
      const bytes = await nativeFrame(r, pixel, info, frame, ts, opts);
      pixelData = [toArrayBuffer(bytes)];
      frameBytes = bytes.length;
    } else {
      const parts = await frameFragments(r, pixel, frame, info.frames);
      frameBytes = parts.reduce((n, f) => n + f.length, 0);
      tooLarge(frameBytes, opts.maxFrameBytes);
      pixelData = [];
      for (const f of parts) pixelData.push(toArrayBuffer(await r.bytes(f.at, f.length, 0)));
    }
    const excerpt: Dataset = {
      ...dataset,
      NumberOfFrames: 1,
      PixelData: pixelData,
      _vrMap: { ...(dataset._vrMap ?? {}), PixelData: pixel.vr ?? 'OW' },
    };
    return { dataset: excerpt, transferSyntaxUid: ts, frames: info.frames, frameBytes, bytesRead: r.bytesRead };
  } finally {
    await fh.close();
  }
}

/** The bytes as an ArrayBuffer of their own (without a copy when they fill theirs, as a large read does). */
function toArrayBuffer(b: Buffer): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  const out = new ArrayBuffer(b.length);
  new Uint8Array(out).set(b);
  return out;
}

/**
 * A stored instance whose frames are read one at a time: its header, and where each frame's bytes
 * lie in the file. See openFrameFile.
 */
export interface FrameFile {
  /**
   * the data set before Pixel Data, exactly as `readPart10(file, { untilTag: '7FE00010' })` gives
   * it (dcmjs's empty PixelData marker included): the same bytes parsed the same way
   */
  header: Dataset;
  transferSyntaxUid: string;
  /** NumberOfFrames */
  frames: number;
  /** native Pixel Data: its value length in bytes; undefined when encapsulated */
  nativeBytes?: number;
  /** Pixel Data's VR as written (explicit VR), or null (implicit VR) */
  vr: string | null;
  /**
   * the stored bytes of frame `f` (0-based): native samples as stored (Big Endian words not yet
   * swapped), or the frame's compressed bitstream, its fragments joined
   */
  frame(f: number): Promise<Uint8Array>;
  /** bytes read from the file so far */
  readonly bytesRead: number;
  close(): Promise<void>;
}

/** Where a stored frame lies: one range (native) or its fragments' payloads (encapsulated). */
type Ranges = Fragment[];

/**
 * Opens a stored instance for reading its frames one at a time, or null where the file is to be
 * read whole as before (then the whole-file decoder gives the same answer it always gave, errors
 * included): a Deflated data set; anything this walk cannot read or that dcmjs might read
 * otherwise (a truncated or odd Pixel Data, a Basic Offset Table that points between fragments,
 * Big Endian frames of an odd byte count, data after Pixel Data that dcmjs cannot parse).
 *
 * What it returns matches a whole-file parse: the header is parsed by dcmjs from the same bytes,
 * and frame f is the bytes the whole-file decoder would decode as frame f (dicom/frames.ts
 * nativeFrames, and encapsulatedFrames over what dcmjs gives: fragments grouped by the Basic
 * Offset Table's windows when it has one, as dcmjs groups them).
 */
export async function openFrameFile(file: string): Promise<FrameFile | null> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch {
    return null;
  }
  try {
    const r = new FileReader(fh, (await fh.stat()).size);
    const { start, transferSyntaxUid: ts } = await readMeta(r);
    if (ts === TransferSyntax.DeflatedExplicitVRLittleEndian) return close(fh);
    const pixel = await findPixelData(r, start, syntaxOf(ts));
    if (!pixel) return close(fh);
    // parsed as the whole-file header read parses it: dcmjs stops at the Pixel Data tag
    const prefix = await r.bytes(0, pixel.valueAt);
    const header = readPart10(prefix, { untilTag: '7FE00010' }).dataset;
    if (!('PixelData' in header)) return close(fh);
    const info = readImagePixel(header);
    // a VR other than OB or OW (UN, say) is read by dcmjs in ways of its own
    if (pixel.vr !== null && pixel.vr !== 'OB' && pixel.vr !== 'OW') return close(fh);
    const layout = isNativeSyntax(ts) ? nativeRanges(r, pixel, info, ts) : await encapsulatedRanges(r, pixel, info.frames);
    if (!layout) return close(fh);
    if (layout.end < r.size && !(await tailParses(r, pixel, layout.end))) return close(fh);
    const { ranges } = layout;
    return {
      header,
      transferSyntaxUid: ts,
      frames: info.frames,
      nativeBytes: isNativeSyntax(ts) ? pixel.length : undefined,
      vr: pixel.vr,
      async frame(f: number): Promise<Uint8Array> {
        checkFrameIndex(f, info.frames);
        const parts: Uint8Array[] = [];
        for (const range of ranges(f)) parts.push(await r.bytes(range.at, range.length, 0));
        return parts.length === 1 ? parts[0] : concat(parts);
      },
      get bytesRead() {
        return r.bytesRead;
      },
      close: () => fh.close(),
    };
  } catch {
    return close(fh);
  }
}

async function close(fh: FileHandle): Promise<null> {
  await fh.close().catch(() => undefined);
  return null;
}

/** Native frames: one range each, where nativeFrames would cut them from the whole Pixel Data. */
function nativeRanges(r: FileReader, pixel: ElementHead, info: ImagePixel, ts: string): { ranges: (f: number) => Ranges; end: number } | null {
  if (pixel.length === UNDEFINED_LENGTH || pixel.length === 0 || pixel.valueAt + pixel.length > r.size) return null;
  const frameBytes = nativeFrameBytes(nativeLayout(info, pixel.length));
  if (pixel.length < frameBytes * info.frames) return null;
  // Big Endian words are swapped over the whole Pixel Data: frame by frame only where frames start on a word
  if (ts === TS.ExplicitVRBigEndian && frameBytes % 2 === 1) return null;
  return { ranges: (f) => [{ at: pixel.valueAt + f * frameBytes, length: frameBytes }], end: pixel.valueAt + pixel.length };
}

/**
 * Encapsulated frames as the whole-file decoder finds them. dcmjs gives one buffer per Basic
 * Offset Table window (the fragments whose items start in it, joined) or, without a table, one per
 * fragment; encapsulatedFrames then drops empty ones and takes one per frame, all of them for a
 * single frame, or groups them where a codestream starts.
 */
async function encapsulatedRanges(r: FileReader, pixel: ElementHead, frames: number): Promise<{ ranges: (f: number) => Ranges; end: number } | null> {
  if (pixel.length !== UNDEFINED_LENGTH) return null;
  const { offsets, first, fragments, end } = await fragmentsOf(r, pixel);
  // dcmjs refuses a Sequence Delimitation Item whose length is not 0
  if ((await head(r, end - 8, { little: true, explicit: true }, 8)).length !== 0) return null;
  let units: Ranges[];
  if (offsets.length > 0) {
    const bot = await head(r, pixel.valueAt, { little: true, explicit: true });
    if (bot.length % 4 !== 0) return null;
    // each window must start on a fragment's item (or the sequence's end), in order
    const itemAt = new Set([...fragments.map((f) => f.at - 8), end - 8]);
    const starts = offsets.map((o) => first + o);
    if (starts.some((s, i) => !itemAt.has(s) || (i > 0 && s < starts[i - 1]))) return null;
    units = starts.map((s, i) => fragments.filter((f) => f.at - 8 >= s && (i + 1 === starts.length || f.at - 8 < starts[i + 1])));
  } else {
    units = fragments.map((f) => [f]);
  }
  const size = (u: Ranges) => u.reduce((n, f) => n + f.length, 0);
  const nonEmpty = units.filter((u) => size(u) > 0);
  if (nonEmpty.length === 0) return null;
  let groups: Ranges[];
  if (frames === 1) groups = [nonEmpty.flat()];
  else if (nonEmpty.length === frames) groups = nonEmpty;
  else {
    const starts: boolean[] = [];
    for (const u of nonEmpty) starts.push(startsCodestream(await firstBytes(r, u, 8)));
    groups = groupFragments(nonEmpty, (_, i) => starts[i], frames).map((g) => g.flat());
  }
  return { ranges: (f) => groups[f], end };
}

/** The first `n` bytes of a unit's joined fragments (fewer if it is shorter). */
async function firstBytes(r: FileReader, unit: Ranges, n: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let left = n;
  for (const f of unit) {
    if (left <= 0) break;
    const take = Math.min(left, f.length);
    parts.push(await r.bytes(f.at, take, 8));
    left -= take;
  }
  return concat(parts);
}

/**
 * Whether dcmjs reads what follows Pixel Data (a whole-file parse reads it, and fails on what it
 * cannot read): the header and that tail parsed as one data set.
 */
async function tailParses(r: FileReader, pixel: ElementHead, from: number): Promise<boolean> {
  try {
    const bytes = Buffer.concat([await r.bytes(0, pixel.at), await r.bytes(from, r.size - from, 0)]);
    readPart10(bytes);
    return true;
  } catch {
    return false;
  }
}
