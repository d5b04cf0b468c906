/** The DICOM C-STORE destination against real peers: what each kind of refusal looks like, and byte-exact delivery. */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { part10DatasetOffset, writePart10 } from '../../src/dicom/part10';
import { DicomStoreDestination } from '../../src/dispatch/dicomStore';
import { Gateway, startGateway } from '../../src/gateway';
import { copyProcessor, silentLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { StoreScpPeer, eventually, freePort, startHungPeer, startStoreScp, storescu } from '../helpers/peers';
import { phantomDataset, phantomFile } from '../helpers/phantom';

const SC = '1.2.840.10008.5.1.4.1.1.7';

let dir: string;
let pacs: StoreScpPeer | undefined;
let gw: Gateway | undefined;
beforeEach(() => {
  dir = tempDir('dispatch');
});
afterEach(async () => {
  await pacs?.stop();
  await gw?.close();
  pacs = undefined;
  gw = undefined;
});

/**
 * A Secondary Capture whose bytes dcmjs would not reproduce when re-encoding: a trailing
 * sequence (FFFA,FFFA) holding one empty item, the kind of thing a parse/re-write drops.
 */
function unusualFile(seed: number): { file: string; sop: string } {
  const ds: Record<string, any> = { ...phantomDataset({ seed, mmPerPixel: null }), SOPClassUID: SC, Modality: 'OT', ConversionType: 'WSD' };
  const base = writePart10(ds);
  const emptyItemSequence = Buffer.from([0xfa, 0xff, 0xfa, 0xff, 0x53, 0x51, 0, 0, 8, 0, 0, 0, 0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0]);
  const file = writeTemp(dir, `sc-${seed}.dcm`, Buffer.concat([base, emptyItemSequence]));
  return { file, sop: ds.SOPInstanceUID };
}

test('files reach the destination byte for byte, over one association', async () => {
  pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
  const a = unusualFile(31);
  const b = unusualFile(32);
  const dest = new DicomStoreDestination({ name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: pacs.port }, 'SONOGATE', 5000);
  const results = await dest.send([
    { path: a.file, sopClassUid: SC, sopInstanceUid: a.sop },
    { path: b.file, sopClassUid: SC, sopInstanceUid: b.sop },
  ]);
  expect(results).toEqual([
    { sopInstanceUid: a.sop, delivered: true, status: 0 },
    { sopInstanceUid: b.sop, delivered: true, status: 0 },
  ]);
  const got = await pacs.waitForFiles(2);
  for (const { file, sop } of [a, b]) {
    const theirs = fs.readFileSync(got.find((g) => g.sopInstanceUid === sop)!.file);
    const mine = fs.readFileSync(file);
    expect(theirs.subarray(part10DatasetOffset(theirs)).equals(mine.subarray(part10DatasetOffset(mine)))).toBe(true);
  }
  expect(pacs.log().match(/Association Acknowledged/g)).toHaveLength(1);
});

test('C-ECHO reports success, and a dead port as a network error', async () => {
  pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
  expect(await new DicomStoreDestination({ name: 'p', aeTitle: 'PACS', host: '127.0.0.1', port: pacs.port }, 'SONOGATE', 5000).echo()).toMatchObject({ ok: true });
  const dead = await new DicomStoreDestination({ name: 'p', aeTitle: 'PACS', host: '127.0.0.1', port: await freePort() }, 'SONOGATE', 5000).echo();
  // the message names the peer as configured (dcmjs-dimse's own prefix has no AE before an association)
  expect(dead).toMatchObject({ ok: false, error: expect.stringMatching(/^send\.network_error: PACS@127\.0\.0\.1:\d+: Connection error: connect ECONNREFUSED/) });
});

test('a C-ECHO to a PACS that accepts the connection and never answers times out and lets the connection go', async () => {
  const hung = await startHungPeer();
  // our sockets to it still open (process handles: what a leak would keep)
  const ours = () =>
    (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof net.Socket && h.remotePort === hung.port && !h.destroyed).length;
  try {
    const dest = new DicomStoreDestination({ name: 'p', aeTitle: 'PACS', host: '127.0.0.1', port: hung.port }, 'SONOGATE', 300);
    for (let i = 0; i < 3; i++) expect(await dest.echo()).toMatchObject({ ok: false, error: expect.stringMatching(/^send\.(timeout|network_error)/) });
    expect(hung.held).toHaveLength(3);
    await new Promise((r) => setTimeout(r, 200));
    // every press of "Test" let its socket go
    expect(ours()).toBe(0);
  } finally {
    await hung.close();
  }
});

test('a send to a PACS that stopped answering ends at its timeout, not when the peer wakes up or the whole batch bound runs out', async () => {
  // a PACS process that hangs (SIGSTOP, a deadlock): the kernel accepts the connection, nothing
  // answers the A-ASSOCIATE-RQ and nothing ever closes. dcmjs-dimse reports "Exceeded association
  // timeout" at timeoutMs and ends its side, but the close it then waits for never comes: the
  // send used to return only when the PACS woke up, or after the whole batch's bound (here 10
  // files: 10 × (0.5 s + size at 128 KiB/s) + 1 s ≈ 15 s; 28 min for 50 files with the defaults),
  // holding every other result for that destination meanwhile.
  const hung = await startHungPeer(49541);
  try {
    const dest = new DicomStoreDestination({ name: 'p', aeTitle: 'PACS', host: '127.0.0.1', port: hung.port }, 'SONOGATE', 500, 128 * 1024);
    const files = Array.from({ length: 10 }, (_, i) => ({
      path: writeTemp(dir, `hung-${i}.dcm`, writePart10(phantomDataset({ seed: 50 + i }))),
      sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1',
      sopInstanceUid: `2.25.1000${50 + i}.1.${50 + i}`,
    }));
    const t0 = Date.now();
    const results = await dest.send(files);
    const took = Date.now() - t0;
    expect(hung.held).toHaveLength(1);
    expect(results).toHaveLength(10);
    for (const r of results) expect(r).toMatchObject({ delivered: false, status: null, error: expect.stringMatching(/^send\.(network_error|timeout).*(timeout|Timeout)/) });
    expect(took).toBeLessThan(3000); // timeout 0.5 s, then 0.5 s for a late answer
  } finally {
    await hung.close();
  }
}, 30_000);

test('the outbound associations gauge counts a send to a PACS that stopped answering while it lasts, and drops back when it is given up', async () => {
  const hung = await startHungPeer();
  try {
    const destinations = [{ name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: hung.port }];
    gw = await startGateway(testConfig({ dataDir: path.join(dir, 'data'), port: await freePort(), send: { timeoutSeconds: 0.5 }, destinations }), copyProcessor(), silentLogger());
    const g = gw;
    expect((await storescu([writeTemp(dir, 'us.dcm', phantomFile({ seed: 61 }))], { port: g.dicomPort })).code).toBe(0);
    await eventually(() => g.associations().outboundOpen === 1, 20_000, 'a send in progress');
    await eventually(() => g.associations().outboundOpen === 0 && g.store.listSends().some((s) => s.attempts > 0), 20_000, 'the send given up, to be retried');
    await g.close(); // a retry may be on the wire: shutdown aborts it
    expect(g.associations().outboundOpen).toBe(0);
  } finally {
    await hung.close();
  }
});

test('abort() ends a send to a PACS that stopped answering at once (shutdown), reporting the files not delivered', async () => {
  const hung = await startHungPeer();
  try {
    const dest = new DicomStoreDestination({ name: 'p', aeTitle: 'PACS', host: '127.0.0.1', port: hung.port }, 'SONOGATE', 60_000);
    const file = writeTemp(dir, 'abort.dcm', writePart10(phantomDataset({ seed: 41 })));
    const t0 = Date.now();
    const sending = dest.send([{ path: file, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', sopInstanceUid: '2.25.10041.1.41' }]);
    for (let i = 0; i < 100 && !hung.held.length; i++) await new Promise((r) => setTimeout(r, 20));
    dest.abort();
    const [r] = await sending;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r).toMatchObject({ delivered: false, error: expect.stringMatching(/^send\.aborted/) });
  } finally {
    await hung.close();
  }
});

test('a refused association, an unaccepted SOP class and an unreadable file each get their reason', async () => {
  // our own listener as the peer: it accepts ultrasound only, and only calls to SONOGATE
  gw = await startGateway(testConfig({ dataDir: path.join(dir, 'data'), port: await freePort() }), copyProcessor(), silentLogger());
  const sc = unusualFile(33);
  const wrongAe = new DicomStoreDestination({ name: 'x', aeTitle: 'NOT_IT', host: '127.0.0.1', port: gw.dicomPort }, 'PACS_SCU', 5000);
  expect((await wrongAe.send([{ path: sc.file, sopClassUid: SC, sopInstanceUid: sc.sop }]))[0]).toMatchObject({
    delivered: false,
    status: null,
    error: 'send.association_rejected: result 1, source 1, reason 7',
  });
  const right = new DicomStoreDestination({ name: 'x', aeTitle: 'SONOGATE', host: '127.0.0.1', port: gw.dicomPort }, 'PACS_SCU', 5000);
  const [noContext, missing] = await right.send([
    { path: sc.file, sopClassUid: SC, sopInstanceUid: sc.sop },
    { path: path.join(dir, 'gone.dcm'), sopClassUid: SC, sopInstanceUid: '1.2.3' },
  ]);
  expect(noContext).toMatchObject({ delivered: false, status: null, error: expect.stringMatching(/^send\.no_presentation_context/) });
  expect(missing).toMatchObject({ delivered: false, permanent: true, error: expect.stringMatching(/^send\.file_unreadable: .*ENOENT/) });
});

/** A TCP relay that passes the gateway's bytes on at most `bytesPerSecond` (a slow WAN link). */
async function throttledRelay(toPort: number, bytesPerSecond: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(toPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    // 10 slices a second: pause the client while its budget is spent (a chunk larger than a
    // slice leaves a debt that later slices pay off)
    let budget = bytesPerSecond / 10;
    const refill = setInterval(() => {
      budget = Math.min(budget + bytesPerSecond / 10, bytesPerSecond / 10);
      if (budget > 0) client.resume();
    }, 100);
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      budget -= chunk.length;
      if (budget <= 0) client.pause();
    });
    const end = () => {
      clearInterval(refill);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test('a large object over a slow link gets time in proportion to its size, not the bare timeout', async () => {
  pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
  const ds = { ...phantomDataset({ seed: 41, rows: 600, columns: 800, mmPerPixel: null }), SOPClassUID: SC, Modality: 'OT', ConversionType: 'WSD' };
  const file = writeTemp(dir, 'big.dcm', writePart10(ds));
  const bytes = fs.statSync(file).size; // about 480 kB: 6 s at 80 kB/s, with nothing coming back meanwhile
  expect(bytes).toBeGreaterThan(400_000);
  const relay = await throttledRelay(pacs.port, 80_000);
  let second: StoreScpPeer | undefined;
  let relay2: { port: number; close(): void } | undefined;
  try {
    const item = [{ path: file, sopClassUid: SC, sopInstanceUid: ds.SOPInstanceUID as string }];
    const target = { name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: relay.port };
    // a 1 s timeout and a floor rate far above the link's: given up after about 3 s, long before
    // the object is through (the limits every large send used to get)
    const strict = await new DicomStoreDestination(target, 'SONOGATE', 1000, 10_000_000).send(item);
    expect(strict[0].delivered).toBe(false);
    expect(strict[0].error).toMatch(/send\.timeout|send\.network_error: .*timeout/i);
    // the same timeout with the size allowed for at 32 KiB/s (15.6 s per object): delivered (to a
    // second PACS: storescp serves one association at a time, and the first is still draining)
    second = await startStoreScp({ dir: path.join(dir, 'pacs2') });
    relay2 = await throttledRelay(second.port, 80_000);
    const scaled = await new DicomStoreDestination({ ...target, port: relay2.port }, 'SONOGATE', 1000, 32 * 1024).send(item);
    expect(scaled).toEqual([{ sopInstanceUid: ds.SOPInstanceUID, delivered: true, status: 0 }]);
  } finally {
    relay.close();
    relay2?.close();
    await second?.stop();
  }
}, 60_000);
