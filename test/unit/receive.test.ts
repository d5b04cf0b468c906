/**
 * One received C-STORE data set → durable file + row + status, driven without sockets: the
 * Writable that dcmjs-dimse would fill is fed directly, with real or failing file operations.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readHeader } from '../../src/dicom/header';
import { IncomingMeta, InstanceReceiver, ReceiveOutcome, StoreStatus, isSafeUid } from '../../src/dicom/receive';
import { FileOps, nodeFileOps } from '../../src/store/files';
import type { ReceivedInstance, RejectedInstance } from '../../src/store/rows';
import { errno, spyFileOps } from '../helpers/fileOps';
import { silentLogger, tempDir } from '../helpers/gatewayHarness';
import { phantomDataset, phantomFile } from '../helpers/phantom';
import { writePart10 } from '../../src/dicom/part10';

/** The data set bytes of a Part 10 file (what travels in P-DATA): after preamble, DICM and group 0002. */
function datasetBytes(part10: Buffer): Buffer {
  const groupLength = part10.readUInt32LE(132 + 8); // (0002,0000) UL, explicit VR: tag 4 + VR 2 + length 2
  return part10.subarray(132 + 12 + groupLength);
}

const US = '1.2.840.10008.5.1.4.1.1.6.1';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

function setup(opts: { fileOps?: FileOps; maxInstanceBytes?: number; failRecord?: boolean; bufferBytes?: number } = {}) {
  const dataDir = tempDir('receive');
  const stored: ReceivedInstance[] = [];
  const rejected: RejectedInstance[] = [];
  const log: string[] = (opts.fileOps as { log?: string[] })?.log ?? [];
  const receiver = new InstanceReceiver({
    dataDir,
    maxInstanceBytes: opts.maxInstanceBytes ?? 100 * 1024 * 1024,
    bufferBytes: opts.bufferBytes,
    logger: silentLogger(),
    fileOps: opts.fileOps,
    onStored: (i) => {
      if (opts.failRecord) throw new Error('SQLITE_FULL: database or disk is full');
      log.push('record');
      stored.push(i);
      return { previousPath: null };
    },
    onRejected: (r) => {
      rejected.push(r);
      return { previousPath: null };
    },
  });
  return { dataDir, receiver, stored, rejected, log };
}

async function receive(receiver: InstanceReceiver, bytes: Buffer, meta: Partial<IncomingMeta> = {}, chunk = 16 * 1024): Promise<ReceiveOutcome> {
  await receiver.prepare();
  const incoming = receiver.begin({ sopClassUid: US, sopInstanceUid: '2.25.10007.1.7', transferSyntaxUid: EXPLICIT_LE, callingAe: 'US_SCANNER', callingHost: '127.0.0.1', ...meta });
  for (let i = 0; i < bytes.length; i += chunk) incoming.write(bytes.subarray(i, i + chunk));
  incoming.end();
  return incoming.outcome;
}

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
}

const phantom = () => phantomFile({ seed: 7 });

/** The real file operations, each write 15 ms late: a disk slower than the network. */
function slowDisk(): FileOps {
  return {
    ...nodeFileOps,
    async openForWrite(file) {
      const h = await nodeFileOps.openForWrite(file);
      return { ...h, write: async (d) => (await new Promise((r) => setTimeout(r, 15)), h.write(d)) };
    },
  };
}

test('a received instance is written, synced and moved into study/series before it is recorded and answered', async () => {
  const ops = spyFileOps();
  const { dataDir, receiver, stored, log } = setup({ fileOps: ops });
  const outcome = await receive(receiver, datasetBytes(phantom()));
  expect(outcome).toEqual({ status: StoreStatus.Success, sopInstanceUid: '2.25.10007.1.7', studyUid: '2.25.10007' });
  const target = path.join(dataDir, 'instances', '2.25.10007', '2.25.10007.1', '2.25.10007.1.7.dcm');
  expect(stored).toEqual([expect.objectContaining({ studyUid: '2.25.10007', seriesUid: '2.25.10007.1', path: target, patientName: 'Phantom^Patient', callingAe: 'US_SCANNER' })]);
  expect(stored[0].bytes).toBe(fs.statSync(target).size);
  // the stored file is a valid Part 10 file with the sender's data set, byte for byte
  const h = await readHeader(target);
  expect(h).toMatchObject({ sopInstanceUid: '2.25.10007.1.7', transferSyntaxUid: EXPLICIT_LE });
  expect(datasetBytes(fs.readFileSync(target)).equals(datasetBytes(phantom()))).toBe(true);
  expect(h.meta.SourceApplicationEntityTitle).toBe('US_SCANNER');
  // order: data synced → renamed into place → folder synced → row committed
  const i = (re: RegExp) => log.findIndex((l) => re.test(l));
  const lastSync = log.map((l) => l.startsWith('sync:')).lastIndexOf(true);
  const rename = i(/^rename:.*\.part->2\.25\.10007\.1\.7\.dcm$/);
  expect(lastSync).toBeGreaterThan(-1);
  expect(lastSync).toBeLessThan(rename);
  expect(log[rename + 1]).toBe('syncDir:2.25.10007.1');
  expect(log.indexOf('record')).toBeGreaterThan(rename + 1);
  expect(filesUnder(path.join(dataDir, 'incoming'))).toEqual([]);
});

test('a full disk while writing answers Out of Resources (A700) and leaves no partial file', async () => {
  const ops = spyFileOps((op, _f, n) => (op === 'write' && n === 3 ? errno('ENOSPC') : null));
  const { dataDir, receiver, stored } = setup({ fileOps: ops });
  const outcome = await receive(receiver, datasetBytes(phantom()), {}, 8 * 1024);
  expect(outcome).toMatchObject({ status: 0xa700, reason: 'receive.out_of_space' });
  expect(stored).toEqual([]);
  expect(filesUnder(dataDir)).toEqual([]);
  expect(ops.log.some((l) => l.startsWith('write!'))).toBe(true);
});

test('a full disk at fsync answers A700 too', async () => {
  const { dataDir, receiver, stored } = setup({ fileOps: spyFileOps((op) => (op === 'sync' ? errno('ENOSPC') : null)) });
  expect(await receive(receiver, datasetBytes(phantom()))).toMatchObject({ status: 0xa700, reason: 'receive.out_of_space' });
  expect(stored).toEqual([]);
  expect(filesUnder(dataDir)).toEqual([]);
});

test('any other write error (EIO) answers A700 and the receiver keeps working', async () => {
  let broken = true;
  const { dataDir, receiver, stored } = setup({ fileOps: spyFileOps((op) => (op === 'open' && broken ? errno('EIO') : null)) });
  expect(await receive(receiver, datasetBytes(phantom()))).toMatchObject({ status: 0xa700, reason: 'receive.write_failed' });
  broken = false;
  expect(await receive(receiver, datasetBytes(phantom()))).toMatchObject({ status: 0x0000 });
  expect(stored).toHaveLength(1);
  expect(filesUnder(path.join(dataDir, 'instances'))).toHaveLength(1);
});

test('a database failure after the move answers A700 and removes the file', async () => {
  const { dataDir, receiver } = setup({ failRecord: true });
  expect(await receive(receiver, datasetBytes(phantom()))).toMatchObject({ status: 0xa700, reason: 'receive.write_failed' });
  expect(filesUnder(dataDir)).toEqual([]);
});

test('two copies of one instance filed at once: when the second copy\'s row fails, the acknowledged first copy keeps its file', async () => {
  const dataDir = tempDir('receive-twice');
  let calls = 0;
  const stored: ReceivedInstance[] = [];
  const receiver = new InstanceReceiver({
    dataDir,
    maxInstanceBytes: 100 * 1024 * 1024,
    logger: silentLogger(),
    // the first copy's row commits; the second's fails (a lock held too long, a full disk)
    onStored: (i) => {
      if (calls++ > 0) throw new Error('SQLITE_BUSY: database is locked');
      stored.push(i);
      return { previousPath: null };
    },
    onRejected: () => ({ previousPath: null }),
  });
  await receiver.prepare();
  const bytes = datasetBytes(phantom());
  const meta = { sopClassUid: US, sopInstanceUid: '2.25.10007.1.7', transferSyntaxUid: EXPLICIT_LE, callingAe: 'US_SCANNER', callingHost: '127.0.0.1' };
  const a = receiver.begin(meta);
  const b = receiver.begin(meta);
  a.write(bytes);
  b.write(bytes);
  a.end();
  b.end();
  const outcomes = await Promise.all([a.outcome, b.outcome]);
  expect(outcomes.map((o) => o.status).sort()).toEqual([StoreStatus.Success, StoreStatus.OutOfResources]);
  expect(stored).toHaveLength(1);
  // the copy that was answered Success is on disk where its row says, whole
  expect(fs.existsSync(stored[0].path)).toBe(true);
  expect(datasetBytes(fs.readFileSync(stored[0].path)).equals(bytes)).toBe(true);
  expect(filesUnder(path.join(dataDir, 'instances'))).toHaveLength(1);
});

test('an instance larger than dicom.maxInstanceBytes is refused with A700 and not kept', async () => {
  const ops = spyFileOps();
  const { dataDir, receiver, stored } = setup({ fileOps: ops, maxInstanceBytes: 20_000 });
  expect(await receive(receiver, datasetBytes(phantom()), {}, 4096)).toMatchObject({ status: 0xa700, reason: 'receive.too_large' });
  expect(stored).toEqual([]);
  expect(filesUnder(dataDir)).toEqual([]);
  // it stopped writing once over the limit instead of filling the disk
  expect(ops.log.filter((l) => l.startsWith('write:')).length).toBeLessThanOrEqual(7);
});

test('a data set that cannot be parsed is kept under failed/ with its reason and answered C000', async () => {
  const { dataDir, receiver, stored, rejected } = setup();
  const outcome = await receive(receiver, Buffer.from('this is not a DICOM data set at all'.repeat(10)));
  expect(outcome).toMatchObject({ status: 0xc000, reason: 'decode.malformed' });
  expect(stored).toEqual([]);
  const kept = path.join(dataDir, 'failed', '2.25.10007.1.7.dcm');
  expect(fs.existsSync(kept)).toBe(true);
  expect(JSON.parse(fs.readFileSync(`${kept}.json`, 'utf8'))).toMatchObject({ reason: 'decode.malformed', callingAe: 'US_SCANNER' });
  expect(rejected).toEqual([expect.objectContaining({ path: kept, reason: 'decode.malformed' })]);
  expect(filesUnder(path.join(dataDir, 'incoming'))).toEqual([]);
});

test('an instance without a Study Instance UID is kept under failed/ (C000)', async () => {
  const ds = phantomDataset({ seed: 7 });
  delete ds.StudyInstanceUID;
  const { receiver, rejected } = setup();
  expect(await receive(receiver, datasetBytes(writePart10(ds)))).toMatchObject({ status: 0xc000, reason: 'decode.malformed' });
  expect(rejected[0].message).toMatch(/Study/);
});

test('a data set whose SOP Instance UID differs from the C-STORE request is refused (A900)', async () => {
  const { receiver, stored } = setup();
  expect(await receive(receiver, datasetBytes(phantom()), { sopInstanceUid: '2.25.999' })).toMatchObject({ status: 0xa900, reason: 'receive.uid_mismatch' });
  expect(stored).toEqual([]);
});

test('a transfer that ends with the association leaves nothing behind', async () => {
  const { dataDir, receiver, stored } = setup();
  await receiver.prepare();
  const incoming = receiver.begin({ sopClassUid: US, sopInstanceUid: '2.25.10007.1.7', transferSyntaxUid: EXPLICIT_LE, callingAe: 'A', callingHost: 'h' });
  incoming.write(datasetBytes(phantom()).subarray(0, 10_000));
  incoming.abandon();
  expect(await incoming.outcome).toMatchObject({ reason: 'receive.aborted' });
  await receiver.drain();
  expect(stored).toEqual([]);
  expect(filesUnder(dataDir)).toEqual([]);
});

test('a data set received whole is filed even if the association ends while its disk writes are still queued', async () => {
  const slow = slowDisk();
  const { receiver, stored } = setup({ fileOps: slow });
  await receiver.prepare();
  const incoming = receiver.begin({ sopClassUid: US, sopInstanceUid: '2.25.10007.1.7', transferSyntaxUid: EXPLICIT_LE, callingAe: 'A', callingHost: 'h' });
  const data = datasetBytes(phantom());
  for (let i = 0; i < data.length; i += 8192) incoming.write(data.subarray(i, i + 8192));
  incoming.end();
  expect(incoming.writableFinished).toBe(false); // the last byte is in, the disk is behind
  incoming.abandon(); // what a graceful shutdown or the peer's close does
  expect(await incoming.outcome).toMatchObject({ status: 0 });
  expect(stored).toHaveLength(1);
  expect(datasetBytes(fs.readFileSync(stored[0].path)).equals(data)).toBe(true);
});

test('a disk slower than the network pauses the sender instead of buffering the data set in memory', async () => {
  const slow = slowDisk();
  const { receiver } = setup({ fileOps: slow, bufferBytes: 16 * 1024 });
  await receiver.prepare();
  const flow = { paused: false, pauses: 0, resumes: 0, maxBuffered: 0 };
  const incoming = receiver.begin(
    { sopClassUid: US, sopInstanceUid: '2.25.10007.1.7', transferSyntaxUid: EXPLICIT_LE, callingAe: 'A', callingHost: 'h' },
    { pause: () => ((flow.paused = true), flow.pauses++), resume: () => ((flow.paused = false), flow.resumes++) },
  );
  const data = datasetBytes(phantom());
  // feed like a socket: 8 KiB at a time, but only while not paused
  for (let i = 0; i < data.length; i += 8192) {
    while (flow.paused) await new Promise((r) => setTimeout(r, 2));
    incoming.write(data.subarray(i, i + 8192));
    flow.maxBuffered = Math.max(flow.maxBuffered, incoming.writableLength);
  }
  incoming.end();
  expect(await incoming.outcome).toMatchObject({ status: 0 });
  expect(flow.pauses).toBeGreaterThan(0);
  expect(flow.resumes).toBe(flow.pauses);
  expect(flow.maxBuffered).toBeLessThanOrEqual(16 * 1024 + 8192);
});

test('temp files of a crashed process are removed at start', async () => {
  const { dataDir, receiver } = setup();
  fs.mkdirSync(path.join(dataDir, 'incoming'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'incoming', 'x.part'), 'half');
  await receiver.prepare();
  expect(fs.readdirSync(path.join(dataDir, 'incoming'))).toEqual([]);
});

test('UIDs are only used as file names when they are plain UIDs', () => {
  expect(isSafeUid('1.2.840.10008.5.1.4.1.1.6.1')).toBe(true);
  expect(isSafeUid('../../etc/passwd')).toBe(false);
  expect(isSafeUid('1.2.3/4')).toBe(false);
  expect(isSafeUid('')).toBe(false);
  expect(isSafeUid('1.'.repeat(40) + '1')).toBe(false);
});
