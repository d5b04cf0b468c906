/** The PDU length check that runs before dcmjs-dimse buffers a PDU (src/dicom/pduGuard.ts). */
import { MAX_PDU_LENGTH, PduLengthGuard } from '../../src/dicom/pduGuard';

const pdu = (type: number, length: number, body = length) => {
  const b = Buffer.alloc(6 + body);
  b[0] = type;
  b.writeUInt32BE(length, 2);
  return b;
};

test('PDUs within the limits pass, however the stream is cut into chunks', () => {
  const small = Buffer.concat([pdu(0x01, 300), pdu(0x04, 10), pdu(0x02, 0), pdu(0x05, 4)]);
  const large = Buffer.concat([pdu(0x01, 300), pdu(0x04, MAX_PDU_LENGTH), pdu(0x04, 10), pdu(0x05, 4)]);
  for (const [stream, sizes] of [[small, [1, 5, 6, 7]], [large, [4096, 65536, large.length]]] as const) {
    for (const size of sizes) {
      const g = new PduLengthGuard();
      const verdicts = new Set<string | null>();
      for (let i = 0; i < stream.length; i += size) verdicts.add(g.feed(stream.subarray(i, i + size)));
      expect([...verdicts]).toEqual([null]);
    }
  }
});

test('a P-DATA-TF over the maximum we advertise, or any PDU over 1 MiB, is refused as soon as its header is in', () => {
  expect(new PduLengthGuard().feed(pdu(0x04, MAX_PDU_LENGTH + 1, 0))).toMatch(/type 4 announces 262145 bytes/);
  expect(new PduLengthGuard().feed(pdu(0x01, 0xfffffff0, 0))).toMatch(/type 1 announces 4294967280 bytes/);
  // the header split across chunks, after a good PDU
  const g = new PduLengthGuard();
  const bad = pdu(0x04, 5_000_000, 0);
  expect(g.feed(Buffer.concat([pdu(0x04, 10), bad.subarray(0, 3)]))).toBeNull();
  expect(g.feed(bad.subarray(3))).toMatch(/5000000/);
});
