/**
 * The sender loop: pending sends that are due, grouped per destination into one association,
 * retried with exponential backoff until delivered. All state is in the sends table, so a
 * restart resumes exactly where the last process stopped.
 */
import type { Logger } from '../log';
import type { DueSend } from '../store/rows';
import type { Store } from '../store/store';
import { backoffMs } from './backoff';
import { type Destination, type FileSendResult, isRefusal, REFUSED_ATTEMPTS } from './destination';

export interface SenderOptions {
  store: Store;
  /** the destination a row goes to; null when it is no longer configured (the row fails) */
  destinationFor(row: DueSend): Destination | null;
  initialDelayMs: number;
  maxDelayMs: number;
  /** files per association */
  batchSize?: number;
  logger: Logger;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export class Sender {
  private readonly busy = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  /** destinations with an association in progress, by name */
  private readonly delivering = new Map<string, Destination>();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private closed = false;
  /**
   * Deliveries the PACS confirmed but the database could not record (a full disk): kept here and
   * written when it can take them, and never sent again meanwhile — a PACS must not get a copy per
   * pass while the disk is full. (A restart before then sends them once more: at least once.)
   */
  private readonly unrecorded = new Map<number, { row: DueSend; status: number; at: number }>();
  /** destinations whose last pass failed outside the PACS's answers (the database): not before this time, with backoff */
  private readonly heldUntil = new Map<string, { until: number; failures: number }>();
  private open = 0;

  constructor(private readonly opts: SenderOptions) {}

  start(): void {
    this.kick();
  }

  /** associations to destinations in progress now (one per destination at most) */
  get openAssociations(): number {
    return this.open;
  }

  /** New sends exist (or a destination became free): look soon. */
  kick(): void {
    this.schedule(0);
  }

  /**
   * Stops scheduling and lets the associations in progress finish for up to graceMs; those still
   * running then (a PACS that stopped answering) are aborted, their files left pending and sent
   * again after the restart, so that a stop never outlasts a service manager's patience.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), graceMs)));
    const settled = (async () => {
      while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
    })();
    if ((await Promise.race([settled, graceOver])) === 'late') {
      this.opts.logger.warn({ destinations: [...this.delivering.keys()] }, 'sends still in progress at shutdown aborted; they stay pending and go out after the restart');
      for (const d of this.delivering.values()) d.abort?.();
      await settled;
    }
    clearTimeout(timer);
  }

  /** Stops without waiting, as a crash would; results of sends in flight are not recorded. */
  halt(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    const at = Date.now() + delayMs;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.pass();
    }, delayMs);
    this.timer.unref();
  }

  private pass(): void {
    const { store, logger } = this.opts;
    if (this.closed || store.isClosed) return;
    // one clock reading for both queries: a row is either due now (sent, or waiting on its busy
    // destination, whose end kicks the next pass) or due later (the timer below)
    const now = Date.now();
    this.flushUnrecorded();
    let due: DueSend[];
    let next: number | null;
    try {
      due = store.dueSends(now);
      next = store.nextSendDueAt(now);
    } catch (e) {
      logger.error({ err: (e as Error).message }, 'could not read pending sends');
      this.schedule(this.opts.initialDelayMs);
      return;
    }
    const groups = new Map<string, DueSend[]>();
    let heldNext = Infinity;
    for (const row of due) {
      if (this.busy.has(row.destination) || this.unrecorded.has(row.id)) continue;
      const held = this.heldUntil.get(row.destination);
      if (held && held.until > now) {
        heldNext = Math.min(heldNext, held.until);
        continue;
      }
      const g = groups.get(row.destination) ?? [];
      g.push(row);
      groups.set(row.destination, g);
    }
    logger.debug({ due: due.length, busy: [...this.busy], nextInMs: next === null ? null : next - now }, 'send pass');
    for (const [name, rows] of groups) {
      this.busy.add(name);
      const p: Promise<void> = this.deliver(rows)
        .then(() => void this.heldUntil.delete(name))
        .catch((e) => {
          // not the PACS's answer (that is recorded per row): the database failed us. Going again at
          // once would send the same files again and again; hold this destination back, with backoff
          const failures = (this.heldUntil.get(name)?.failures ?? 0) + 1;
          const wait = backoffMs(failures, this.opts.initialDelayMs, this.opts.maxDelayMs);
          this.heldUntil.set(name, { until: Date.now() + wait, failures });
          logger.error({ destination: name, err: (e as Error).message, retryInMs: wait }, 'send pass failed');
        })
        .finally(() => {
          this.busy.delete(name);
          this.inFlight.delete(p);
          this.kick();
        });
      this.inFlight.add(p);
    }
    if (next !== null) this.schedule(next - now);
    if (heldNext < Infinity) this.schedule(heldNext - now);
    if (this.unrecorded.size) this.schedule(this.opts.initialDelayMs);
  }

  /** Writes the confirmed deliveries the database could not take before; keeps those it still cannot. */
  private flushUnrecorded(): void {
    for (const [id, u] of this.unrecorded) {
      try {
        this.opts.store.markSendSent(id, u.row.generation, u.status, u.at);
        this.unrecorded.delete(id);
      } catch {
        return; // still full: the next pass tries again
      }
    }
  }

  private async deliver(rows: DueSend[]): Promise<void> {
    const { store, logger } = this.opts;
    const destination = this.opts.destinationFor(rows[0]);
    if (!destination) {
      for (const r of rows) store.markSendFailed(r.id, r.generation, `send.destination_unknown: "${r.destination}" is no longer configured`);
      logger.warn({ destination: rows[0].destination, sends: rows.length }, 'destination no longer configured, sends failed');
      return;
    }
    const size = this.opts.batchSize ?? 50;
    this.delivering.set(destination.name, destination);
    try {
      await this.deliverTo(destination, rows, size);
    } finally {
      this.delivering.delete(destination.name);
    }
  }

  private async deliverTo(destination: Destination, rows: DueSend[], size: number): Promise<void> {
    const { store, logger } = this.opts;
    for (let i = 0; i < rows.length; i += size) {
      if (this.closed && i > 0) return; // let the next start carry on
      const batch = rows.slice(i, i + size);
      let results: FileSendResult[];
      logger.debug({ destination: destination.name, files: batch.length }, 'association start');
      // counted until send() settles: a DICOM destination settles only once the association's
      // connection has closed or been destroyed (timeouts and aborts included), and the finally
      // below runs on every path, so the gauge cannot keep a finished association
      this.open++;
      try {
        results = await destination.send(batch.map((r) => ({ path: r.path, sopClassUid: r.sopClassUid, sopInstanceUid: r.outputSopUid })));
      } catch (e) {
        const error = `send.internal: ${(e as Error)?.message ?? String(e)}`;
        results = batch.map((r) => ({ sopInstanceUid: r.outputSopUid, delivered: false, status: null, error }));
      } finally {
        this.open--;
      }
      logger.debug({ destination: destination.name, errors: results.filter((r) => !r.delivered).length }, 'association end');
      if (store.isClosed) return;
      this.record(destination.name, batch, results);
      const down = results.length > 0 && results.every((r) => !r.delivered && /^send\.(network_error|association_rejected|timeout)/.test(r.error ?? ''));
      if (down && i + size < rows.length) {
        // the destination is unreachable: the rest of its backlog waits for the same backoff
        // instead of costing one connection timeout per batch (and holding the sender)
        const rest = rows.slice(i + size);
        this.record(destination.name, rest, rest.map((r) => ({ sopInstanceUid: r.outputSopUid, delivered: false, status: null, error: results[0].error })));
        return;
      }
    }
  }

  private record(destination: string, batch: DueSend[], results: FileSendResult[]): void {
    const { store, logger } = this.opts;
    const now = Date.now();
    const failedByStudy = new Map<string, { files: number; error: string; attempt: number }>();
    const delivered = new Map<string, number>();
    let sent = 0;
    // a row that changed meanwhile (re-run, re-sent, or its study deleted) is not updated: no event
    // or log line for it either, so a deleted study leaves nothing behind
    batch.forEach((row, i) => {
      const r = results[i];
      if (r?.delivered) {
        let marked: boolean;
        try {
          marked = store.markSendSent(row.id, row.generation, r.status ?? 0, now);
        } catch (e) {
          this.unrecorded.set(row.id, { row, status: r.status ?? 0, at: now });
          if (this.unrecorded.size === 1) logger.error({ destination, err: (e as Error).message }, 'delivered, but the database cannot record it: kept in memory and not sent again');
          return;
        }
        if (marked) {
          sent++;
          delivered.set(row.studyUid, (delivered.get(row.studyUid) ?? 0) + 1);
        }
      } else if (r?.permanent || (r?.status != null && isRefusal(r.status) && row.attempts + 1 >= REFUSED_ATTEMPTS)) {
        const error = r.permanent ? (r.error ?? 'send.failed') : `${r.error ?? 'send.status_failure'}; refused ${REFUSED_ATTEMPTS} times, not retried (retry from the Failures page)`;
        if (store.markSendFailed(row.id, row.generation, error, now)) store.addEvent('send.failed', row.studyUid, { destination, sopInstanceUid: row.outputSopUid, error }, now);
      } else {
        const attempt = row.attempts + 1;
        const error = r?.error ?? 'send.no_result';
        if (!store.markSendRetry(row.id, row.generation, error, r?.status ?? null, now + backoffMs(attempt, this.opts.initialDelayMs, this.opts.maxDelayMs), now)) return;
        const f = failedByStudy.get(row.studyUid) ?? { files: 0, error, attempt };
        f.files++;
        failedByStudy.set(row.studyUid, f);
      }
    });
    if (sent) logger.info({ destination, sent }, 'results delivered');
    for (const [studyUid, f] of failedByStudy) {
      logger.warn({ destination, studyInstanceUid: studyUid, files: f.files, attempt: f.attempt, error: f.error }, 'send failed, will retry');
      // first failure, then 2nd, 4th, 8th...: visible on the dashboard without flooding the events table
      if (isPowerOfTwo(f.attempt)) store.addEvent('send.retry', studyUid, { destination, ...f }, now);
    }
    for (const [studyUid, files] of delivered) store.addEvent('send.sent', studyUid, { destination, files }, now);
  }
}
