/**
 * The lesion masks of every frame of an instance, one bit a pixel, kept as the SEG writes them
 * (PS3.3 C.8.20.2 BINARY, PS3.5 8.1.1): one continuous bit stream over all frames, least
 * significant bit first, so a frame does not start on a byte boundary when rows × columns is not a
 * multiple of 8; padded to an even length (PS3.5 7.1.1). A cine's masks cost an eighth of a byte
 * a pixel while it is analysed, and the SEG's Pixel Data is this stream, not a copy built at the end.
 */
export class FrameMasks {
  private readonly bits: Uint8Array;
  private count = 0;

  /** room for `capacity` frames of `pixelsPerFrame` pixels, all empty */
  constructor(
    readonly pixelsPerFrame: number,
    readonly capacity: number,
  ) {
    this.bits = new Uint8Array(evenBytes(capacity * pixelsPerFrame));
  }

  /** masks given whole (a nonzero byte is lesion) */
  static of(masks: Uint8Array[], pixelsPerFrame: number): FrameMasks {
    const out = new FrameMasks(pixelsPerFrame, masks.length);
    for (const m of masks) out.push(m);
    return out;
  }

  /** frames so far */
  get length(): number {
    return this.count;
  }

  /** appends the next frame's mask (a nonzero byte is lesion); null: a frame without lesion */
  push(mask: Uint8Array | null): void {
    if (this.count >= this.capacity) throw new Error(`masks: room for ${this.capacity} frames only`);
    if (mask && mask.length !== this.pixelsPerFrame) throw new Error(`masks: a mask of ${mask.length} pixels where a frame has ${this.pixelsPerFrame}`);
    if (mask) {
      const { bits } = this;
      for (let i = 0, bit = this.count * this.pixelsPerFrame; i < mask.length; i++, bit++) {
        if (mask[i]) bits[bit >> 3] |= 1 << (bit & 7);
      }
    }
    this.count++;
  }

  /** frame f's mask, one byte a pixel (1 = lesion) */
  frame(f: number): Uint8Array {
    if (!Number.isInteger(f) || f < 0 || f >= this.count) throw new Error(`masks: there is no frame ${f}`);
    const { bits } = this;
    const out = new Uint8Array(this.pixelsPerFrame);
    for (let i = 0, bit = f * this.pixelsPerFrame; i < out.length; i++, bit++) out[i] = (bits[bit >> 3] >> (bit & 7)) & 1;
    return out;
  }

  /** the frames so far as the SEG's Pixel Data: a buffer of its own, exactly that long */
  packed(): Uint8Array {
    const n = evenBytes(this.count * this.pixelsPerFrame);
    return n === this.bits.length ? this.bits : this.bits.slice(0, n);
  }
}

/** bytes for `bits` bits, padded to an even count */
function evenBytes(bits: number): number {
  const bytes = Math.ceil(bits / 8);
  return bytes + (bytes % 2);
}
