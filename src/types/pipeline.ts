/**
 * The seam between the gateway's I/O (listener, store, sender) and the analysis pipeline:
 * the store hands a complete study to a StudyProcessor and files what it returns.
 */
import type { AnalyzeRules } from '../config/schema';
import { KeyImageCandidate, Label } from './domain';

/** Reason codes travel to the database, the dashboard and the metrics (STYLE.md). */
export type ReasonCode =
  | 'decode.malformed'
  | 'decode.unsupported_transfer_syntax'
  | 'decode.unsupported_photometric'
  | 'decode.too_large'
  | 'decode.no_pixel_data'
  | 'route.not_ultrasound'
  | 'route.filtered'
  | 'inference.failed'
  | 'report.failed'
  | 'internal';

export interface StudyJobInput {
  studyInstanceUid: string;
  /** Part 10 files as stored by the listener */
  instances: { sopInstanceUid: string; path: string }[];
  /** folder for this run's output files (created by the caller, emptied before each run) */
  outDir: string;
  /**
   * the analyse rules in force when the job started (config merged with the dashboard's
   * overrides); absent = the processor's own (routing.analyze of the config it was built with)
   */
  analyze?: AnalyzeRules;
}

export interface InstanceOutcome {
  sopInstanceUid: string;
  status: 'analysed' | 'failed' | 'skipped';
  reason?: ReasonCode;
  message?: string;
  label?: Label;
  /** probability of the reported label */
  probability?: number;
  malignancyProbability?: number;
  lesionCount?: number;
  /** long axis of the largest lesion (mm if calibrated, else pixels, see unit) */
  largestLesion?: { longAxis: number; shortAxis: number; area: number; unit: 'mm' | 'px' } | null;
  frames?: number;
  timingsMs?: Record<string, number>;
  /**
   * how far the model's networks disagree on P(malignant) on the reported frame, and whether that is
   * above the model's cut (InstanceResult.agreement); absent for a model without outputs.spread
   */
  networkSpread?: number;
  lowAgreement?: boolean;
  /** what the study's key object selection needs of an analysed instance (not stored) */
  keyImage?: KeyImageCandidate;
}

export interface OutputObject {
  /** seg, sr and overlay are made per source instance; kos (key object selection) once per study */
  kind: 'seg' | 'sr' | 'overlay' | 'kos';
  path: string;
  sopClassUid: string;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  /** the source instance; null for the study's key object selection */
  sourceSopInstanceUid: string | null;
  /** the file's size, set by the job runner once the file is synced (housekeeping.maxStorageGB sums them) */
  bytes?: number;
}

export interface StudyJobOutput {
  outputs: OutputObject[];
  instances: InstanceOutcome[];
  /** most suspicious label over the analysed instances (null when none was analysed) */
  label: Label | null;
  malignancyProbability: number | null;
  timingsMs: Record<string, number>;
  /** why the study's key object selection could not be made (its other results stand) */
  keyImagesError?: string;
}

export type StudyProcessor = (input: StudyJobInput) => Promise<StudyJobOutput>;
