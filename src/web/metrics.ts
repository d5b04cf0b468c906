/**
 * Prometheus metrics (prom-client), derived from the gateway's database so that they need no
 * hooks inside the pipeline: every scrape first reads what happened since the last one (new
 * events, changed sends, newly received instances) into counters and histograms, and the
 * gauges are read from the tables at scrape time. Counters start at zero with the process, as
 * Prometheus expects. Labels are bounded: stage names, reason codes, labels, destination names.
 * DICOM associations are not in the database: their counts are read from the listener and the
 * sender at scrape time (src/dicom/associationStats.ts).
 */
import client from 'prom-client';
import type { AssociationCounts } from '../dicom/associationStats';
import type { Store } from '../store/store';

const STAGE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export interface ModelLabels {
  name: string;
  version: string;
  provider: string;
}

/** Counts kept outside the database, read at scrape time. */
export interface MetricSources {
  /** the gateway's DICOM associations; without it the sonogate_dicom_associations* metrics are absent */
  associations?: () => AssociationCounts;
  /** inference workers retired for their memory (inference.workerRecycleRssMB); without it the metric is absent */
  workersRecycled?: () => number;
  /** housekeeping.maxStorageGB in bytes, for sonogate_storage_cap_bytes (absent or 0: no cap) */
  storageCapBytes?: number;
  /** the last storage cap run ended over the cap with nothing more it may remove; without it sonogate_storage_cap_unmet is absent */
  storageCapUnmet?: () => boolean;
}

interface SendSeen {
  generation: number;
  attempts: number;
}

export class PipelineMetrics {
  readonly registry = new client.Registry();
  private lastEventId: number;
  private lastReceivedAt: number;
  private lastSendSweepAt: number;
  private readonly startedAt: number;
  /** sends not yet delivered, as last seen: attempts made since then are failures or the success */
  private readonly sends = new Map<number, SendSeen>();
  /** sends delivered or given up lately (generation, updated_at), so the sweeps' overlap does not count them twice */
  private readonly settled = new Map<number, { generation: number; updatedAt: number }>();

  private readonly stageSeconds: client.Histogram<'stage'>;
  private readonly inferencePerFrame: client.Histogram;
  private readonly studies: client.Counter<'outcome' | 'label' | 'reason'>;
  private readonly instancesReceived: client.Counter;
  private readonly instanceOutcomes: client.Counter<'status' | 'reason'>;
  private readonly sendAttempts: client.Counter<'destination' | 'result'>;
  private readonly sendFailures: client.Counter<'destination'>;
  private readonly events: client.Counter<'kind'>;
  private readonly retentionFiles: client.Counter<'what'>;
  private readonly retentionBytes: client.Counter<'what'>;
  private readonly retentionStudies: client.Counter;
  private readonly capStudies: client.Counter;
  private readonly capBytes: client.Counter<'what'>;

  constructor(
    private readonly store: Store,
    model: ModelLabels,
    sources: MetricSources = {},
    now = Date.now(),
  ) {
    const r = this.registry;
    client.collectDefaultMetrics({ register: r, prefix: 'sonogate_' });
    this.lastEventId = (store.db.prepare('SELECT IFNULL(MAX(id), 0) AS id FROM events').get() as { id: number }).id;
    this.lastReceivedAt = now - 1000;
    this.lastSendSweepAt = now;
    this.startedAt = now;
    for (const s of store.db.prepare("SELECT id, generation, attempts FROM sends WHERE status = 'pending'").all() as (SendSeen & { id: number })[]) {
      this.sends.set(s.id, { generation: s.generation, attempts: s.attempts });
    }

    this.stageSeconds = new client.Histogram({
      name: 'sonogate_stage_duration_seconds',
      help: 'Time per pipeline stage: per instance (decode, preprocess, inference, upsample, report, total) and per study (queue_wait, job)',
      labelNames: ['stage'],
      buckets: STAGE_BUCKETS,
      registers: [r],
    });
    this.inferencePerFrame = new client.Histogram({
      name: 'sonogate_inference_seconds_per_frame',
      help: 'Model inference time per frame (instance inference time / frames)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [r],
    });
    this.studies = new client.Counter({
      name: 'sonogate_studies_total',
      help: 'Studies whose analysis finished, by outcome (processed / failed), label and failure reason',
      labelNames: ['outcome', 'label', 'reason'],
      registers: [r],
    });
    this.instancesReceived = new client.Counter({ name: 'sonogate_instances_received_total', help: 'Instances received and stored', registers: [r] });
    this.instanceOutcomes = new client.Counter({
      name: 'sonogate_instance_outcomes_total',
      help: 'Analysed, skipped and failed instances, by reason code (instances refused at reception included)',
      labelNames: ['status', 'reason'],
      registers: [r],
    });
    this.sendAttempts = new client.Counter({
      name: 'sonogate_send_attempts_total',
      help: 'C-STORE attempts of result objects, by destination and result (sent / failed)',
      labelNames: ['destination', 'result'],
      registers: [r],
    });
    this.sendFailures = new client.Counter({
      name: 'sonogate_send_failures_total',
      help: 'Failed C-STORE attempts of result objects, by destination',
      labelNames: ['destination'],
      registers: [r],
    });
    this.events = new client.Counter({ name: 'sonogate_events_total', help: 'Pipeline events recorded, by kind', labelNames: ['kind'], registers: [r] });
    this.retentionFiles = new client.Counter({
      name: 'sonogate_retention_deleted_files_total',
      help: 'Files deleted by housekeeping retention: received images (images) and the results of removed studies (results)',
      labelNames: ['what'],
      registers: [r],
    });
    this.retentionBytes = new client.Counter({ name: 'sonogate_retention_deleted_bytes_total', help: 'Bytes freed by housekeeping retention (images / results)', labelNames: ['what'], registers: [r] });
    this.retentionStudies = new client.Counter({ name: 'sonogate_retention_removed_studies_total', help: 'Studies removed entirely (results and records) by result retention', registers: [r] });
    this.capStudies = new client.Counter({ name: 'sonogate_storage_cap_removed_studies_total', help: 'Studies removed entirely (results and records) by the storage cap (housekeeping.maxStorageGB)', registers: [r] });
    this.capBytes = new client.Counter({
      name: 'sonogate_storage_cap_freed_bytes_total',
      help: 'Bytes freed by the storage cap: received images (images) and the results of removed studies (results)',
      labelNames: ['what'],
      registers: [r],
    });
    for (const what of ['images', 'results']) this.capBytes.inc({ what }, 0);

    const db = store.db;
    const gaugeRows = <T>(sql: string) => (store.isClosed ? [] : (db.prepare(sql).all() as T[]));
    new client.Gauge({
      name: 'sonogate_studies',
      help: 'Studies by current status',
      labelNames: ['status'],
      registers: [r],
      collect() {
        this.reset();
        for (const s of ['receiving', 'queued', 'processing', 'processed', 'failed']) this.set({ status: s }, 0);
        for (const row of gaugeRows<{ status: string; n: number }>('SELECT status, COUNT(*) AS n FROM studies GROUP BY status')) this.set({ status: row.status }, row.n);
      },
    });
    new client.Gauge({
      name: 'sonogate_jobs',
      help: 'Analysis jobs waiting (queued) or running',
      labelNames: ['status'],
      registers: [r],
      collect() {
        this.set({ status: 'queued' }, 0);
        this.set({ status: 'running' }, 0);
        for (const row of gaugeRows<{ status: string; n: number }>("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued','running') GROUP BY status")) {
          this.set({ status: row.status }, row.n);
        }
      },
    });
    new client.Gauge({
      name: 'sonogate_sends',
      help: 'Result sends by destination and state: pending (not yet tried or waiting for a retry), retrying (pending after a failure), failed (given up)',
      labelNames: ['destination', 'state'],
      registers: [r],
      collect() {
        this.reset();
        const rows = gaugeRows<{ destination: string; pending: number; retrying: number; failed: number }>(
          `SELECT destination, SUM(status = 'pending') AS pending, SUM(status = 'pending' AND attempts > 0) AS retrying,
             SUM(status = 'failed') AS failed FROM sends GROUP BY destination`,
        );
        for (const row of rows) {
          this.set({ destination: row.destination, state: 'pending' }, row.pending);
          this.set({ destination: row.destination, state: 'retrying' }, row.retrying);
          this.set({ destination: row.destination, state: 'failed' }, row.failed);
        }
      },
    });
    new client.Gauge({
      name: 'sonogate_oldest_pending_send_age_seconds',
      help: 'Age of the oldest result not yet delivered (0 when none)',
      registers: [r],
      collect() {
        const row = gaugeRows<{ t: number | null }>("SELECT MIN(created_at) AS t FROM sends WHERE status = 'pending'")[0];
        this.set(row?.t ? Math.max(0, (Date.now() - row.t) / 1000) : 0);
      },
    });
    new client.Gauge({
      name: 'sonogate_storage_bytes',
      help: "Bytes the data folder holds by the database's account: received images not yet deleted (refused files included) and result files; what housekeeping.maxStorageGB bounds (not the database itself, nor files no row points to)",
      registers: [r],
      collect() {
        if (!store.isClosed) this.set(store.storageBytes().total);
      },
    });
    new client.Gauge({ name: 'sonogate_storage_cap_bytes', help: 'housekeeping.maxStorageGB in bytes (0: no cap)', registers: [r] }).set(sources.storageCapBytes ?? 0);
    if (sources.storageCapUnmet) {
      const unmet = sources.storageCapUnmet;
      new client.Gauge({
        name: 'sonogate_storage_cap_unmet',
        help: '1 when the last storage cap run ended over the cap with nothing more it may remove (the rest belongs to studies that owe something), else 0',
        registers: [r],
        collect() {
          this.set(unmet() ? 1 : 0);
        },
      });
    }
    if (sources.associations) registerAssociationMetrics(r, sources.associations);
    if (sources.workersRecycled) {
      const recycled = sources.workersRecycled;
      readCounter(r, 'sonogate_inference_worker_recycles_total', 'Inference workers replaced by a fresh one after a request because their resident memory was above inference.workerRecycleRssMB', () => ({ '': recycled() }));
    }
    new client.Gauge({ name: 'sonogate_model_info', help: 'The model in use and the inference provider', labelNames: ['name', 'version', 'provider'], registers: [r] }).set(
      { name: model.name, version: model.version, provider: model.provider },
      1,
    );
  }

  /** Reads what happened since the last sweep, then renders all metrics. */
  async render(): Promise<string> {
    if (!this.store.isClosed) this.sweep();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  sweep(now = Date.now()): void {
    const db = this.store.db;
    // one second behind: a row stamped with this very millisecond may still be on its way in
    const upTo = Math.max(this.lastReceivedAt, now - 1000);
    const received = (db.prepare('SELECT COUNT(*) AS n FROM instances WHERE received_at > ? AND received_at <= ? AND study_uid IS NOT NULL').get(this.lastReceivedAt, upTo) as { n: number }).n;
    this.instancesReceived.inc(received);
    this.lastReceivedAt = upTo;

    for (;;) {
      const events = db.prepare('SELECT id, study_uid AS studyUid, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT 1000').all(this.lastEventId) as {
        id: number;
        studyUid: string | null;
        kind: string;
        detail: string | null;
      }[];
      for (const e of events) this.onEvent(e);
      if (events.length) this.lastEventId = events[events.length - 1].id;
      if (events.length < 1000) break;
    }

    // sends changed since the last sweep (1 s of overlap: updated_at has millisecond resolution)
    const changed = db
      .prepare('SELECT id, destination, status, attempts, generation, updated_at AS updatedAt FROM sends WHERE updated_at >= ?')
      .all(this.lastSendSweepAt - 1000) as { id: number; destination: string; status: string; attempts: number; generation: number; updatedAt: number }[];
    this.lastSendSweepAt = now;
    for (const s of changed) {
      const done = this.settled.get(s.id);
      if (done && done.generation === s.generation && s.status !== 'pending') continue;
      const seen = this.sends.get(s.id);
      const before = seen && seen.generation === s.generation ? seen.attempts : 0;
      if (!seen && s.updatedAt < this.startedAt) continue; // settled before this process counted
      const attempts = Math.max(0, s.attempts - before);
      const failures = s.status === 'sent' ? Math.max(0, attempts - 1) : attempts;
      if (failures) {
        this.sendFailures.inc({ destination: s.destination }, failures);
        this.sendAttempts.inc({ destination: s.destination, result: 'failed' }, failures);
      }
      if (s.status === 'sent' || s.status === 'failed') {
        if (s.status === 'sent' && attempts > 0) this.sendAttempts.inc({ destination: s.destination, result: 'sent' });
        this.sends.delete(s.id);
        this.settled.set(s.id, { generation: s.generation, updatedAt: s.updatedAt });
      } else {
        this.sends.set(s.id, { generation: s.generation, attempts: s.attempts });
      }
    }
    for (const [id, d] of this.settled) if (d.updatedAt < now - 2000) this.settled.delete(id);
    if (this.sends.size > 20_000) this.prune();
  }

  private prune(): void {
    const live = new Set((this.store.db.prepare("SELECT id FROM sends WHERE status = 'pending'").all() as { id: number }[]).map((r) => r.id));
    for (const id of this.sends.keys()) if (!live.has(id)) this.sends.delete(id);
  }

  private onEvent(e: { studyUid: string | null; kind: string; detail: string | null }): void {
    this.events.inc({ kind: e.kind });
    let detail: Record<string, unknown> = {};
    try {
      detail = e.detail ? (JSON.parse(e.detail) as Record<string, unknown>) : {};
    } catch {
      /* plain text detail */
    }
    if (e.kind === 'job.failed') {
      this.studies.inc({ outcome: 'failed', label: '', reason: String(detail.reason ?? 'unknown') });
    } else if (e.kind === 'instance.failed') {
      this.instanceOutcomes.inc({ status: 'failed', reason: String(detail.reason ?? 'unknown') });
    } else if (e.kind === 'housekeeping.retention' || e.kind === 'housekeeping.result_retention') {
      const what = e.kind === 'housekeeping.retention' ? 'images' : 'results';
      this.retentionFiles.inc({ what }, Number(detail.files) || 0);
      this.retentionBytes.inc({ what }, Number(detail.bytes) || 0);
      if (what === 'results') this.retentionStudies.inc(Number(detail.studies) || 0);
    } else if (e.kind === 'housekeeping.storage_cap') {
      this.capStudies.inc(Number(detail.studies) || 0);
      this.capBytes.inc({ what: 'images' }, Number(detail.imageBytes) || 0);
      this.capBytes.inc({ what: 'results' }, Number(detail.bytes) || 0);
    } else if (e.kind === 'job.done' && e.studyUid) {
      this.studies.inc({ outcome: 'processed', label: String(detail.label ?? 'none'), reason: '' });
      this.observeJob(e.studyUid, Number(detail.jobId));
    }
  }

  /** Per-stage times of a finished job, from the job row and its instances' recorded timings. */
  private observeJob(studyUid: string, jobId: number): void {
    const db = this.store.db;
    const job = db.prepare('SELECT created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt FROM jobs WHERE id = ?').get(jobId) as
      | { createdAt: number; startedAt: number | null; finishedAt: number | null }
      | undefined;
    if (job?.startedAt && job.finishedAt) {
      this.stageSeconds.observe({ stage: 'queue_wait' }, Math.max(0, job.startedAt - job.createdAt) / 1000);
      this.stageSeconds.observe({ stage: 'job' }, Math.max(0, job.finishedAt - job.startedAt) / 1000);
    }
    const rows = db.prepare('SELECT status, reason, frames, timings_json AS timings FROM instances WHERE study_uid = ?').all(studyUid) as {
      status: string;
      reason: string | null;
      frames: number | null;
      timings: string | null;
    }[];
    for (const i of rows) {
      if (i.status === 'received') continue;
      this.instanceOutcomes.inc({ status: i.status, reason: i.reason ?? '' });
      if (!i.timings) continue;
      let t: Record<string, number>;
      try {
        t = JSON.parse(i.timings) as Record<string, number>;
      } catch {
        continue;
      }
      for (const [stage, ms] of Object.entries(t)) if (typeof ms === 'number' && ms >= 0) this.stageSeconds.observe({ stage }, ms / 1000);
      if (typeof t.inference === 'number' && i.frames) this.inferencePerFrame.observe(t.inference / 1000 / i.frames);
    }
  }
}

/**
 * A counter whose running total is kept elsewhere (the listener, the inference pool), read at
 * scrape time: one series per key of what `read` returns, under `label` ('' for a single series).
 */
function readCounter(r: client.Registry, name: string, help: string, read: () => Record<string, number>, label?: string): void {
  new client.Counter({
    name,
    help,
    labelNames: label ? [label] : [],
    registers: [r],
    collect() {
      this.reset();
      for (const [value, n] of Object.entries(read())) this.inc(label ? { [label]: value } : {}, n);
    },
  });
}

/**
 * Open associations (gauge) and what became of the inbound ones (counters, one series per reason
 * code even at zero, so an alert on a rate never sees a series appear from nothing).
 */
function registerAssociationMetrics(r: client.Registry, read: () => AssociationCounts): void {
  new client.Gauge({
    name: 'sonogate_dicom_associations',
    help: 'DICOM associations open now: inbound (connections holding a dicom.maxAssociations slot, negotiating or associated), outbound (result sends in progress)',
    labelNames: ['direction'],
    registers: [r],
    collect() {
      const a = read();
      this.set({ direction: 'inbound' }, a.inbound.open);
      this.set({ direction: 'outbound' }, a.outboundOpen);
    },
  });
  readCounter(r, 'sonogate_dicom_associations_accepted_total', 'Inbound DICOM associations accepted (at least one presentation context accepted)', () => ({ '': read().inbound.accepted }));
  readCounter(
    r,
    'sonogate_dicom_associations_rejected_total',
    'Inbound DICOM associations refused, by reason: called_ae, calling_ae, max_associations, no_presentation_context, tls_handshake, tls_certificate',
    () => read().inbound.rejected,
    'reason',
  );
  readCounter(
    r,
    'sonogate_dicom_associations_aborted_total',
    'Accepted inbound DICOM associations that ended without an A-RELEASE, by reason: peer_abort, timeout, pdu_too_long, connection_lost, shutdown',
    () => read().inbound.aborted,
    'reason',
  );
}
