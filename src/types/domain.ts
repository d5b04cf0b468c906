/**
 * The typed values that travel between the stages of the pipeline (SPEC.md "data flow").
 * Each stage takes one of these and returns another; no stage reaches into another's internals.
 */

import type { FrameMasks } from '../postprocess/frameMasks';

/** A naturalized dcmjs dataset (keyword → value), as produced by DicomMetaDictionary.naturalizeDataset. */
export type Dataset = Record<string, any>;

/** One 8-bit grayscale frame, row-major, width × height bytes. */
export interface GrayFrame {
  width: number;
  height: number;
  data: Uint8Array;
}

/** One 8-bit RGB frame as it looks (colour sources only), row-major, interleaved: width × height × 3 bytes. */
export interface RgbFrame {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Pixel rectangle inside the full frame, inclusive min / exclusive max. */
export interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Physical calibration of a region (mm per pixel), from SequenceOfUltrasoundRegions (PS3.3 C.8.5.5). */
export interface Calibration {
  mmPerPixelX: number;
  mmPerPixelY: number;
}

/** The part of the image that is analysed: the B-mode ultrasound region, or the whole frame. */
export interface AnalysisRegion {
  rect: Rect;
  /** null when the image has no usable calibration: sizes are then reported in pixels. */
  calibration: Calibration | null;
  /** where the rect came from */
  source: 'ultrasound-region' | 'whole-frame';
}

/** Output of dicom/decode: the frames of one instance, ready for inference. */
export interface DecodedInstance {
  sopInstanceUid: string;
  sopClassUid: string;
  rows: number;
  columns: number;
  /** one GrayFrame per source frame, at full frame size */
  frames: GrayFrame[];
  region: AnalysisRegion;
}

/**
 * An instance's frames, decoded to gray on demand a range at a time (dicom/decode frameSourceOfFile):
 * the pipeline analyses a cine a batch of frames at a time and never holds all of them.
 */
export interface FrameSource extends Omit<DecodedInstance, 'frames'> {
  /** NumberOfFrames */
  frameCount: number;
  /** frames first … end − 1 (0-based), at full frame size */
  read(first: number, end: number): Promise<GrayFrame[]>;
}

/** What an analysis keeps of its instance: no pixels (InstanceResult.reportedFrame holds the one the overlay needs). */
export type InstanceInfo = Omit<DecodedInstance, 'frames'> & { frameCount: number };

/** Output of inference for one frame, at the analysed region's size. */
export interface FramePrediction {
  /** lesion probability per pixel of the analysis region, width × height */
  probability: Float32Array;
  width: number;
  height: number;
  /** softmax over model.json's class labels */
  classProbabilities: number[];
  /**
   * how far the model's networks disagree on this frame (model.json outputs.spread: the standard
   * deviation of their P(malignant)); undefined for a model without that output
   */
  classSpread?: number;
}

/** One lesion found by postprocessing, in full-frame pixel coordinates. */
export interface Lesion {
  frameIndex: number;
  /** 1-based index within the frame, ordered by decreasing area */
  index: number;
  bbox: Rect;
  areaPixels: number;
  /**
   * major / minor axis of the lesion in pixels, edge to edge: the largest diameter of its pixels'
   * union (Feret diameter) and its largest width perpendicular to that
   */
  longAxisPixels: number;
  shortAxisPixels: number;
  /** in mm / mm² when the region is calibrated, else null */
  longAxisMm: number | null;
  shortAxisMm: number | null;
  areaMm2: number | null;
  /**
   * end points of the long and short axis, [x0, y0, x1, y1], on the lesion's outer edge (pixel
   * corners), in full-frame column and row index coordinates: the top-left pixel's centre is 0, 0
   * and its top-left corner −0.5, −0.5
   */
  longAxisLine: [number, number, number, number];
  shortAxisLine: [number, number, number, number];
  /**
   * the lesion's outer outline along its pixels' edges, [x0, y0, x1, y1, …], not closed, in
   * full-frame pixel-corner coordinates (the top-left pixel's top-left corner is 0, 0)
   */
  outline: number[];
  /** mean lesion probability inside the component */
  meanProbability: number;
}

export type Label = 'normal' | 'benign' | 'malignant';

/** how suspicious a label is, for "the most suspicious" of several calls */
export const LABEL_SEVERITY: Readonly<Record<Label, number>> = { normal: 0, benign: 1, malignant: 2 };

/** The analysis of one source instance: masks and lesions per frame, and one classification. */
export interface InstanceResult {
  source: InstanceInfo;
  /** the lesion mask of every frame at full frame size (1 = lesion), after postprocessing: one bit a pixel */
  masks: FrameMasks;
  lesions: Lesion[];
  /** class probabilities of the reported frame */
  classProbabilities: Record<Label, number>;
  label: Label;
  /** probability of malignancy reported in the SR */
  malignancyProbability: number;
  /** frame whose classification and lesion are reported (the most suspicious one) */
  reportedFrameIndex: number;
  /** that frame's gray pixels: the overlay's picture for a grayscale source */
  reportedFrame: GrayFrame;
  /** the networks' agreement on the reported frame; undefined for a model without outputs.spread */
  agreement?: NetworkAgreement;
  timingsMs: Record<string, number>;
}

/**
 * The spread of the model's networks' P(malignant) on the reported frame, and the cut above which it
 * counts as low agreement (chosen on val: model/EXPERIMENTS.md, rule 29). Wrong calls gather there: on BUSI
 * val 26.7 % of the calls above the cut were wrong, 1.1 % of those at or below it.
 */
export interface NetworkAgreement {
  spread: number;
  lowAbove: number;
  low: boolean;
  /**
   * where low, the class probabilities are those of the network that finds the image most
   * suspicious, not the average's (model.json outputs.spread.classFromMostSuspiciousNetwork)
   */
  fromMostSuspicious?: boolean;
}

export interface ModelInfo {
  name: string;
  version: string;
}

/** One analysed image of a study as the study's key object selection needs it (report/keyImages). */
export interface KeyImageCandidate {
  sopClassUid: string;
  sopInstanceUid: string;
  seriesInstanceUid: string;
  /** 1-based frame whose call is reported, for a multi-frame image; undefined otherwise */
  frameNumber?: number;
  seriesNumber?: number;
  instanceNumber?: number;
  label: Label;
  malignancyProbability: number;
  /** lesions outlined on the reported frame */
  lesionCount: number;
  /** the model's networks disagree on the reported frame (InstanceResult.agreement) */
  lowAgreement?: boolean;
}
