/**
 * One incoming C-STORE data set → one durable Part 10 file + one database row, and the DIMSE
 * status to answer. The data set streams to a temp file as it arrives (dcmjs-dimse's default keeps
 * it in memory: 3+ GB for a long cine, NOTES.md), then:
 *   fsync → read header → move to instances/<study>/<series>/<sop>.dcm (fsync folder) → row
 * and only then is Success answered (SPEC: nothing acknowledged may be lost).
 *
 * Failures never throw out of here: a full disk or any write error answers Out of Resources
 * (A700) and removes the partial file; a header that cannot be read is kept under failed/ with
 * its reason and answered "cannot understand" (C000).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Logger } from '../log';
import { FileOps, WritableFile, ensureDirDurable, isOutOfSpace, moveDurable, nodeFileOps, removeQuietly, writeFileDurable } from '../store/files';
import type { ReceivedInstance, RejectedInstance } from '../store/rows';
import { DicomHeader, readHeader } from './header';
import { part10Header } from './part10';

/** C-STORE statuses (PS3.4 B.2.3). */
export const StoreStatus = {
  Success: 0x0000,
  /** Refused: SOP Class not supported (PS3.7 C.4.2.1.4; PS3.4 B.2.3) */
  SopClassNotSupported: 0x0122,
  OutOfResources: 0xa700,
  DataSetDoesNotMatchSopClass: 0xa900,
  CannotUnderstand: 0xc000,
} as const;

export interface IncomingMeta {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  callingAe: string;
  callingHost: string;
  /** subject CN of the caller's client certificate, verified against dicom.tls.ca; null without one */
  callingCN?: string | null;
}

export interface ReceiveOutcome {
  status: number;
  sopInstanceUid: string;
  studyUid?: string;
  /** reason code for failures ("receive.out_of_resources", "decode.malformed", ...) */
  reason?: string;
  message?: string;
}

export interface ReceiverOptions {
  dataDir: string;
  maxInstanceBytes: number;
  logger: Logger;
  fileOps?: FileOps;
  /** bytes buffered in memory per incoming data set before the sender is paused (default 4 MiB) */
  bufferBytes?: number;
  /** commits the instance row (synchronously durable); the returned earlier copy is deleted */
  onStored(instance: ReceivedInstance): { previousPath: string | null };
  onRejected(instance: RejectedInstance): { previousPath: string | null };
}

/** A UID usable as a file name: digits and dots only, at most 64 characters (PS3.5 9.1). */
export function isSafeUid(uid: string): boolean {
  return uid.length > 0 && uid.length <= 64 && /^[0-9]+(\.[0-9]+)*$/.test(uid);
}

function text(v: unknown): string | null {
  const x = Array.isArray(v) ? v[0] : v;
  if (x === undefined || x === null) return null;
  if (typeof x === 'object') {
    const alpha = (x as { Alphabetic?: unknown }).Alphabetic;
    return alpha === undefined ? null : String(alpha);
  }
  const s = String(x).replace(/\0/g, '').trim();
  return s.length ? s : null;
}

export class InstanceReceiver {
  readonly incomingDir: string;
  readonly instancesDir: string;
  readonly failedDir: string;
  readonly ops: FileOps;
  private readonly inFlight = new Set<Promise<ReceiveOutcome>>();
  /** instance paths being filed right now (two copies of one instance arriving at once) */
  private readonly filing = new Set<string>();

  constructor(readonly opts: ReceiverOptions) {
    this.ops = opts.fileOps ?? nodeFileOps;
    this.incomingDir = path.join(opts.dataDir, 'incoming');
    this.instancesDir = path.join(opts.dataDir, 'instances');
    this.failedDir = path.join(opts.dataDir, 'failed');
  }

  /** Creates the folders and removes temp files left by a crash (never acknowledged, so not owed). */
  async prepare(): Promise<void> {
    await ensureDirDurable(this.incomingDir, this.ops);
    await ensureDirDurable(this.instancesDir, this.ops);
    for (const f of await fsp.readdir(this.incomingDir)) await removeQuietly(path.join(this.incomingDir, f), this.ops);
  }

  /**
   * `flow` pauses the association's socket while the disk is behind (real backpressure).
   * With `refusal`, the data set is read off the wire and dropped, nothing is written, and the
   * refusal is the answer (a C-STORE on a presentation context that was not accepted).
   */
  begin(meta: IncomingMeta, flow?: FlowControl, refusal?: { status: number; reason: string; message: string }): IncomingInstance {
    const incoming = new IncomingInstance(meta, this, flow, refusal && { ...refusal, sopInstanceUid: meta.sopInstanceUid });
    const p = incoming.outcome;
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
    return incoming;
  }

  /** Waits until every instance being written or filed has its answer (graceful shutdown). */
  async drain(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /** Finishes a fully received temp file: header, final place, row. Never throws. */
  async file(meta: IncomingMeta, tmp: string, bytes: number): Promise<ReceiveOutcome> {
    const log = this.opts.logger;
    let header: DicomHeader;
    try {
      header = await readHeader(tmp);
    } catch (e) {
      return this.keepFailed(meta, tmp, bytes, StoreStatus.CannotUnderstand, 'decode.malformed', (e as Error).message);
    }
    if (header.sopInstanceUid !== meta.sopInstanceUid || header.sopClassUid !== meta.sopClassUid) {
      // PS3.4 B.2.3: the data set must match the command's Affected SOP Class / Instance
      return this.keepFailed(meta, tmp, bytes, StoreStatus.DataSetDoesNotMatchSopClass, 'receive.uid_mismatch', 'SOP Class or Instance UID in the data set differs from the C-STORE request');
    }
    const study = header.studyInstanceUid;
    const series = header.seriesInstanceUid;
    if (!isSafeUid(study) || !isSafeUid(series) || !isSafeUid(meta.sopInstanceUid)) {
      return this.keepFailed(meta, tmp, bytes, StoreStatus.CannotUnderstand, 'decode.malformed', 'Study, Series or SOP Instance UID missing or not a valid UID');
    }
    const base = path.join(this.instancesDir, study, series, meta.sopInstanceUid);
    // A resend never lands on the path of the copy on record: retention or a study delete may be
    // unlinking that path at this moment, and must not take the new, acknowledged copy with it.
    // Nor on the path of a copy being filed at this moment (the same instance on two associations):
    // should this copy's row then fail, removing its file must not remove the other's.
    const plain = `${base}.dcm`;
    const target = this.filing.has(plain) || fs.existsSync(plain) ? `${base}.${crypto.randomBytes(6).toString('hex')}.dcm` : plain;
    this.filing.add(target);
    try {
      return await this.fileAt(meta, tmp, bytes, header, target);
    } finally {
      this.filing.delete(target);
    }
  }

  private async fileAt(meta: IncomingMeta, tmp: string, bytes: number, header: DicomHeader, target: string): Promise<ReceiveOutcome> {
    const log = this.opts.logger;
    const study = header.studyInstanceUid;
    const series = header.seriesInstanceUid;
    try {
      await moveDurable(tmp, target, this.ops);
    } catch (e) {
      await removeQuietly(tmp, this.ops);
      return this.outOfResources(meta, e, 'moving into the instance store');
    }
    const ds = header.dataset;
    try {
      const { previousPath } = this.opts.onStored({
        sopInstanceUid: meta.sopInstanceUid,
        sopClassUid: meta.sopClassUid,
        transferSyntaxUid: meta.transferSyntaxUid,
        studyUid: study,
        seriesUid: series,
        path: target,
        bytes,
        callingAe: meta.callingAe,
        callingHost: meta.callingHost,
        callingCN: meta.callingCN ?? null,
        patientName: text(ds.PatientName),
        patientId: text(ds.PatientID),
        accessionNumber: text(ds.AccessionNumber),
        studyDate: text(ds.StudyDate),
        studyDescription: text(ds.StudyDescription),
      });
      if (previousPath) await removeQuietly(previousPath, this.ops);
    } catch (e) {
      // no row, no acknowledgement: drop the new file (it is never the copy on record)
      await removeQuietly(target, this.ops);
      return this.outOfResources(meta, e, 'recording in the database');
    }
    log.debug({ sopInstanceUid: meta.sopInstanceUid, studyInstanceUid: study, bytes }, 'instance stored');
    return { status: StoreStatus.Success, sopInstanceUid: meta.sopInstanceUid, studyUid: study };
  }

  outOfResources(meta: IncomingMeta, e: unknown, during: string): ReceiveOutcome {
    const err = e as NodeJS.ErrnoException;
    const reason = isOutOfSpace(e) ? 'receive.out_of_space' : 'receive.write_failed';
    this.opts.logger.error({ sopInstanceUid: meta.sopInstanceUid, reason, code: err?.code, err: err?.message, during }, 'instance not stored');
    return { status: StoreStatus.OutOfResources, sopInstanceUid: meta.sopInstanceUid, reason, message: `${during}: ${err?.message ?? String(e)}` };
  }

  /** Keeps an unusable file under failed/ with a .json beside it saying why, and records it. */
  private async keepFailed(meta: IncomingMeta, tmp: string, bytes: number, status: number, reason: string, message: string): Promise<ReceiveOutcome> {
    const name = isSafeUid(meta.sopInstanceUid) ? meta.sopInstanceUid : `unnamed-${crypto.randomBytes(8).toString('hex')}`;
    const target = path.join(this.failedDir, `${name}.dcm`);
    this.opts.logger.warn({ sopInstanceUid: meta.sopInstanceUid, callingAe: meta.callingAe, reason, message }, 'instance refused, kept under failed/');
    try {
      await moveDurable(tmp, target, this.ops);
      const why = { sopInstanceUid: meta.sopInstanceUid, sopClassUid: meta.sopClassUid, transferSyntaxUid: meta.transferSyntaxUid, callingAe: meta.callingAe, reason, message, at: new Date().toISOString() };
      await writeFileDurable(`${target}.json`, Buffer.from(JSON.stringify(why, null, 2)), this.ops);
      const { previousPath } = this.opts.onRejected({ ...meta, path: target, bytes, reason, message });
      if (previousPath) await removeQuietly(previousPath, this.ops);
    } catch (e) {
      await removeQuietly(tmp, this.ops);
      this.opts.logger.error({ sopInstanceUid: meta.sopInstanceUid, err: (e as Error).message }, 'could not keep the refused instance');
    }
    return { status, sopInstanceUid: meta.sopInstanceUid, reason, message };
  }
}

/** Pauses and resumes whatever feeds the stream (the association's socket). */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

/**
 * The Writable that dcmjs-dimse fills with one C-STORE data set (Scp.createStoreWritableStream).
 * It never emits 'error' (dcmjs-dimse would have no handler, and a crash loses other
 * associations): write failures are remembered, later chunks are dropped, and `outcome` carries
 * the answer once the stream has ended.
 */
export class IncomingInstance extends Writable {
  readonly outcome: Promise<ReceiveOutcome>;
  readonly tmpPath: string;
  private handle: WritableFile | null = null;
  private readonly opening: Promise<void>;
  private failure: unknown = null;
  private tooLarge = false;
  private bytes = 0;
  private headerBytes = 0;
  private abandoned = false;
  private resolveAbandon!: (o: ReceiveOutcome) => void;

  constructor(
    readonly meta: IncomingMeta,
    private readonly receiver: InstanceReceiver,
    private readonly flow?: FlowControl,
    private readonly refusal?: ReceiveOutcome,
  ) {
    super({ highWaterMark: receiver.opts.bufferBytes ?? 4 * 1024 * 1024 });
    const tmp = path.join(receiver.incomingDir, `${crypto.randomUUID()}.part`);
    this.tmpPath = tmp;
    const ops = receiver.ops;
    this.opening = refusal ? Promise.resolve() : (async () => {
      this.handle = await ops.openForWrite(tmp);
      const header = part10Header({ ...meta, sourceAeTitle: meta.callingAe });
      this.headerBytes = header.length;
      await this.handle.write(header);
    })().catch((e) => {
      this.failure ??= e;
    });
    const finished = new Promise<void>((resolve) => this.once('finish', () => resolve()));
    const abandoned = new Promise<ReceiveOutcome>((resolve) => (this.resolveAbandon = resolve));
    this.on('error', () => undefined);
    this.outcome = Promise.race([finished.then(() => this.settle()), abandoned]).catch((e) =>
      this.receiver.outOfResources(this.meta, e, 'filing the instance'),
    );
  }

  /**
   * dcmjs-dimse waits for 'drain' only on a data set's first chunk (NOTES.md), so a disk slower
   * than the network would pile the rest of a cine up in memory: pause the socket instead.
   */
  override write(chunk: any, encoding?: any, cb?: any): boolean {
    const ok = super.write(chunk, encoding, cb);
    if (!ok && this.flow && !this.paused) {
      this.paused = true;
      this.flow.pause();
      // one pair of listeners per pause, both removed by whichever fires first: a long cine onto
      // a slow disk pauses about once per 4 MiB buffered, and a 'close' listener left behind at each pause
      // piled up until Node warned of a leak (MaxListenersExceededWarning, on stderr)
      const resume = () => {
        this.off('drain', resume);
        this.off('close', resume);
        this.resumeFlow();
      };
      this.on('drain', resume);
      this.on('close', resume);
    }
    return ok;
  }

  private paused = false;
  private resumeFlow(): void {
    if (!this.paused) return;
    this.paused = false;
    this.flow!.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.refusal || this.failure || this.tooLarge || this.abandoned) return cb();
    if (this.bytes > this.receiver.opts.maxInstanceBytes) {
      // stop filling the disk now; the rest of the data set is read off the wire and dropped
      this.tooLarge = true;
      void this.discard();
      return cb();
    }
    this.opening
      .then(() => (this.failure ? undefined : this.handle!.write(chunk)))
      .then(
        () => cb(),
        (e) => {
          this.failure ??= e;
          void this.discard();
          cb();
        },
      );
  }

  /**
   * The association ended before the data set did: nothing to answer, nothing to keep. A data set
   * that arrived whole (ended, even with disk writes still queued) is not abandoned: it is filed.
   */
  abandon(): void {
    if (this.abandoned || this.writableEnded) return;
    this.abandoned = true;
    void this.discard().then(() =>
      this.resolveAbandon({ status: StoreStatus.OutOfResources, sopInstanceUid: this.meta.sopInstanceUid, reason: 'receive.aborted', message: 'association ended mid-transfer' }),
    );
    this.destroy();
  }

  private discarding: Promise<void> | null = null;
  private discard(): Promise<void> {
    this.discarding ??= (async () => {
      await this.opening;
      if (this.handle) await this.handle.close().catch(() => undefined);
      this.handle = null;
      await removeQuietly(this.tmpPath, this.receiver.ops);
    })();
    return this.discarding;
  }

  private async settle(): Promise<ReceiveOutcome> {
    await this.opening;
    if (this.refusal) {
      this.receiver.opts.logger.warn({ sopInstanceUid: this.meta.sopInstanceUid, callingAe: this.meta.callingAe, reason: this.refusal.reason }, 'instance refused');
      return this.refusal;
    }
    if (this.tooLarge) {
      await this.discard();
      this.receiver.opts.logger.warn({ sopInstanceUid: this.meta.sopInstanceUid, bytes: this.bytes, max: this.receiver.opts.maxInstanceBytes }, 'instance larger than dicom.maxInstanceBytes refused');
      return {
        status: StoreStatus.OutOfResources,
        sopInstanceUid: this.meta.sopInstanceUid,
        reason: 'receive.too_large',
        message: `${this.bytes} bytes exceed dicom.maxInstanceBytes (${this.receiver.opts.maxInstanceBytes})`,
      };
    }
    if (!this.failure) {
      try {
        await this.handle!.sync();
        await this.handle!.close();
        this.handle = null;
      } catch (e) {
        this.failure = e;
      }
    }
    if (this.failure) {
      await this.discard();
      return this.receiver.outOfResources(this.meta, this.failure, 'writing the data set');
    }
    return this.receiver.file(this.meta, this.tmpPath, this.headerBytes + this.bytes);
  }
}
