/**
 * PDU lengths checked as the bytes arrive, before dcmjs-dimse buffers a PDU: its reader trusts the
 * 32-bit length in each PDU header and keeps concatenating chunks until that many bytes are in, so
 * one unauthenticated client claiming a 4 GiB PDU could fill the gateway's memory (and stall its
 * event loop) before any AE title is checked. A P-DATA-TF longer than the maximum we advertised,
 * or any other PDU over 1 MiB (an A-ASSOCIATE-RQ holds at most 128 presentation contexts, each a
 * few hundred bytes), ends the connection instead.
 */

/** The largest P-DATA-TF variable field we accept, and advertise in the A-ASSOCIATE-AC (PS3.8 D.1). */
export const MAX_PDU_LENGTH = 256 * 1024;

const PDATA_TF = 0x04;
const MAX_OTHER_PDU_LENGTH = 1024 * 1024;

export class PduLengthGuard {
  private header = Buffer.alloc(0);
  /** bytes of the current PDU still to come after its header */
  private remaining = 0;

  constructor(private readonly maxPDataLength = MAX_PDU_LENGTH) {}

  /** Follows the stream's PDU headers; returns why the stream must end, or null while it is fine. */
  feed(chunk: Buffer): string | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - i);
        this.remaining -= n;
        i += n;
        continue;
      }
      const take = chunk.subarray(i, i + 6 - this.header.length);
      this.header = this.header.length ? Buffer.concat([this.header, take]) : Buffer.from(take);
      i += take.length;
      if (this.header.length < 6) break;
      const type = this.header[0];
      const length = this.header.readUInt32BE(2);
      this.header = Buffer.alloc(0);
      const max = type === PDATA_TF ? this.maxPDataLength : MAX_OTHER_PDU_LENGTH;
      if (length > max) return `PDU of type ${type} announces ${length} bytes, more than the ${max} allowed`;
      this.remaining = length;
    }
    return null;
  }
}
