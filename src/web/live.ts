/**
 * Live updates for the dashboard over server-sent events (GET /api/events). While someone
 * listens, the database is polled once a second for a change (new pipeline event, send or study
 * update, audit entry); a change is pushed as `event: change` with the new events' kinds and
 * study UIDs (no patient data), and the page re-reads what it shows. A comment line every 20 s
 * keeps proxies from closing an idle stream. Before anything is written to a stream, its session
 * is checked again: a stream ends when its user signs out, is removed, has the password changed or
 * times out.
 */
import type { Request, Response } from 'express';
import type { Logger } from '../log';
import type { DashboardQueries } from './dashboardQueries';

/** Whether the session that opened a stream is still signed in (checked before each write). */
export type StillSignedIn = () => boolean;

export class LiveFeed {
  private readonly clients = new Map<Response, StillSignedIn>();
  private timer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private stamp = '';
  private lastEventId = 0;
  private closed = false;

  constructor(
    private readonly queries: DashboardQueries,
    private readonly isOpen: () => boolean,
    private readonly logger: Logger,
    private readonly pollMs = 1000,
  ) {}

  get listeners(): number {
    return this.clients.size;
  }

  /** The route handler; `stillSignedIn` is asked before each write to this stream. */
  handler = (req: Request, res: Response, stillSignedIn: StillSignedIn = () => true): void => {
    if (this.closed) {
      res.status(503).end();
      return;
    }
    res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    res.write('retry: 3000\n\n');
    res.write(`event: hello\ndata: ${JSON.stringify({ at: Date.now() })}\n\n`);
    this.clients.set(res, stillSignedIn);
    req.on('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stop();
    });
    this.start();
  };

  private start(): void {
    if (this.timer || this.closed) return;
    try {
      this.stamp = this.queries.changeStamp();
      this.lastEventId = this.queries.lastEventId();
    } catch {
      /* database closing */
    }
    this.timer = setInterval(() => this.poll(), this.pollMs);
    this.heartbeat = setInterval(() => this.broadcast(': keep-alive\n\n'), 20_000);
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.timer = this.heartbeat = null;
  }

  /** Exposed for tests: one poll now. */
  poll(): void {
    if (!this.isOpen()) return;
    try {
      const stamp = this.queries.changeStamp();
      if (stamp === this.stamp) return;
      this.stamp = stamp;
      const events = this.queries.newEvents(this.lastEventId);
      if (events.length) this.lastEventId = events[events.length - 1].id;
      this.broadcast(`event: change\ndata: ${JSON.stringify({ at: Date.now(), events: events.map((e) => ({ kind: e.kind, studyUid: e.studyUid })) })}\n\n`);
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'live update poll failed');
    }
  }

  private broadcast(chunk: string): void {
    for (const [c, stillSignedIn] of this.clients) {
      let ok = false;
      try {
        ok = stillSignedIn();
      } catch {
        /* database closing: end the stream */
      }
      if (ok) {
        c.write(chunk);
      } else {
        this.clients.delete(c);
        c.end();
      }
    }
    if (this.clients.size === 0) this.stop();
  }

  /** Ends every stream (shutdown): browsers reconnect to whatever serves next. */
  close(): void {
    this.closed = true;
    this.stop();
    for (const c of this.clients.keys()) c.end();
    this.clients.clear();
  }
}
