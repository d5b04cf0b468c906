/** The shapes the store returns (camelCase views of the SQLite rows in schema.ts). */

export type StudyStatus = 'receiving' | 'queued' | 'processing' | 'processed' | 'failed';
export type InstanceStatus = 'received' | 'analysed' | 'failed' | 'skipped';
export type JobStatus = 'queued' | 'running' | 'done' | 'failed';
export type SendStatus = 'pending' | 'sent' | 'failed';

export interface StudyRow {
  studyUid: string;
  status: StudyStatus;
  patientName: string | null;
  patientId: string | null;
  accessionNumber: string | null;
  studyDate: string | null;
  studyDescription: string | null;
  callingAe: string | null;
  callingHost: string | null;
  firstReceivedAt: number;
  lastReceivedAt: number;
  processedAt: number | null;
  label: string | null;
  malignancyProbability: number | null;
  errorReason: string | null;
  errorMessage: string | null;
  runCount: number;
  updatedAt: number;
}

export interface InstanceRow {
  sopInstanceUid: string;
  studyUid: string | null;
  seriesUid: string | null;
  sopClassUid: string | null;
  transferSyntaxUid: string | null;
  path: string;
  bytes: number;
  receivedAt: number;
  callingAe: string | null;
  callingHost: string | null;
  status: InstanceStatus;
  reason: string | null;
  message: string | null;
  label: string | null;
  probability: number | null;
  malignancyProbability: number | null;
  lesionCount: number | null;
  lesionJson: string | null;
  frames: number | null;
  timingsJson: string | null;
  /** InstanceOutcome.networkSpread; NULL where the model has no such output or the instance was not analysed */
  networkSpread: number | null;
  /** SQLite has no boolean: 1 = the networks disagree (above the model's cut), 0 = they agree */
  lowAgreement: 0 | 1 | null;
}

export interface JobRow {
  id: number;
  studyUid: string;
  status: JobStatus;
  run: number | null;
  attempts: number;
  outDir: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  timingsJson: string | null;
  errorReason: string | null;
  errorMessage: string | null;
}

export interface OutputRow {
  sopInstanceUid: string;
  studyUid: string;
  seriesUid: string | null;
  sopClassUid: string;
  kind: 'seg' | 'sr' | 'overlay' | 'kos';
  path: string;
  sourceSopInstanceUid: string | null;
  jobId: number | null;
  createdAt: number;
}

export interface SendRow {
  id: number;
  outputSopUid: string;
  studyUid: string;
  destination: string;
  aeTitle: string;
  host: string;
  port: number;
  status: SendStatus;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  lastStatus: number | null;
  sentAt: number | null;
  generation: number;
  createdAt: number;
  updatedAt: number;
}

/** A pending send joined with the file it delivers. */
export interface DueSend extends SendRow {
  path: string;
  sopClassUid: string;
}

export interface EventRow {
  id: number;
  at: number;
  studyUid: string | null;
  kind: string;
  detail: string | null;
}

/** What the listener knows about an instance it has just written to disk. */
export interface ReceivedInstance {
  sopInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  studyUid: string;
  seriesUid: string;
  path: string;
  bytes: number;
  callingAe: string;
  callingHost: string;
  /**
   * subject CN of the caller's verified client certificate; null (or absent) without one. Routing
   * matches allowedCallers entries that pin a CN by it, as the listener did when it let them in.
   */
  callingCN?: string | null;
  patientName?: string | null;
  patientId?: string | null;
  accessionNumber?: string | null;
  studyDate?: string | null;
  studyDescription?: string | null;
}

/** An instance kept under dataDir/failed/ because its header could not be read. */
export interface RejectedInstance {
  sopInstanceUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  path: string;
  bytes: number;
  callingAe: string;
  callingHost: string;
  reason: string;
  message: string;
}

/** Where one output goes: a configured destination or the caller's return-to-sender address. */
export interface SendTarget {
  destination: string;
  aeTitle: string;
  host: string;
  port: number;
}
