/**
 * The analysis pipeline of one study, composed from its stages (SPEC.md "The data flow"):
 *
 *   Part 10 file ─▶ route (US only, then routing.analyze) ─▶ dicom/decode ─▶ inference (worker pool)
 *       ─▶ postprocess (lesions, sizes) ─▶ report (SEG, SR, overlay) ─▶ files in outDir
 *   all instances of the study ─▶ report (key object selection: the flagged images) ─▶ outDir
 *
 * It is the StudyProcessor the gateway calls for a complete study, and what `sonogate analyze`
 * runs on files. Every instance gets an outcome; one bad instance never stops the others.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DecodeError, decodeColourFrameOfFile, decodeInstance, FrameFile, frameSourceOfFile, isUltrasoundSopClass, openFrameFile, readHeader } from '../dicom/decode';
import { readPart10, writePart10, writePart10File } from '../dicom/part10';
import { buildKeyImages, keyImages } from '../report/keyImages';
import { buildOverlay } from '../report/overlay';
import { buildSeg } from '../report/seg';
import { buildSr } from '../report/sr';
import { isMultiFrame, reportedLesions } from '../report/common';
import { Dataset, InstanceResult, KeyImageCandidate, LABEL_SEVERITY, ModelInfo } from '../types/domain';
import { InstanceOutcome, OutputObject, StudyJobInput, StudyJobOutput, StudyProcessor } from '../types/pipeline';
import type { AnalyzeRules } from '../config/schema';
import { AnalyzeOptions, analyzeFrames, FramePredictor, framesInMemory } from './analyzeInstance';
import { ANALYZE_EVERYTHING, checkAnalyzeRules } from './route';

export interface PipelineOptions extends AnalyzeOptions {
  outputs: { seg: boolean; sr: boolean; overlay: boolean; keyImages?: boolean };
  model: ModelInfo;
  /** routing.analyze filters; absent = analyse every ultrasound instance */
  routing?: AnalyzeRules;
}

function summarize(r: InstanceResult): InstanceOutcome['largestLesion'] {
  const l = r.lesions.filter((x) => x.frameIndex === r.reportedFrameIndex)[0] ?? r.lesions[0];
  if (!l) return null;
  return l.longAxisMm !== null
    ? { longAxis: l.longAxisMm, shortAxis: l.shortAxisMm!, area: l.areaMm2!, unit: 'mm' }
    : { longAxis: l.longAxisPixels, shortAxis: l.shortAxisPixels, area: l.areaPixels, unit: 'px' };
}

function outputObject(kind: OutputObject['kind'], ds: Dataset, file: string, source: string | null): OutputObject {
  return { kind, path: file, sopClassUid: ds.SOPClassUID, sopInstanceUid: ds.SOPInstanceUID, seriesInstanceUid: ds.SeriesInstanceUID, sourceSopInstanceUid: source };
}

const nonNegativeInt = (v: unknown): number | undefined => {
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && String(v ?? '').trim() !== '' ? n : undefined;
};

/** What the study's key object selection needs of this instance. */
function keyImageOf(header: Dataset, result: InstanceResult): KeyImageCandidate {
  return {
    sopClassUid: String(header.SOPClassUID),
    sopInstanceUid: String(header.SOPInstanceUID),
    seriesInstanceUid: String(header.SeriesInstanceUID ?? ''),
    frameNumber: isMultiFrame(header) ? result.reportedFrameIndex + 1 : undefined,
    seriesNumber: nonNegativeInt(header.SeriesNumber),
    instanceNumber: nonNegativeInt(header.InstanceNumber),
    label: result.label,
    malignancyProbability: result.malignancyProbability,
    lesionCount: reportedLesions(result).length,
    ...(result.agreement?.low ? { lowAgreement: true } : {}),
  };
}

/**
 * Analyses one Part 10 file and writes its result objects into outDir. The file is read a batch of
 * frames at a time (dicom/frameExcerpt openFrameFile), so a long cine costs the worker its masks and
 * a batch of frames, not the file and every frame decoded; what that cannot read in part (a
 * Deflated data set, an odd Pixel Data) is read whole, as it always was, with the same results and
 * errors.
 */
export async function processInstanceFile(
  file: string,
  outDir: string,
  predictor: FramePredictor,
  opts: PipelineOptions,
): Promise<{ outcome: InstanceOutcome; outputs: OutputObject[] }> {
  const t0 = performance.now();
  const frameFile = await openFrameFile(file);
  try {
    return await processOpened(file, frameFile, outDir, predictor, opts, t0);
  } finally {
    await frameFile?.close();
  }
}

async function processOpened(
  file: string,
  frameFile: FrameFile | null,
  outDir: string,
  predictor: FramePredictor,
  opts: PipelineOptions,
  t0: number,
): Promise<{ outcome: InstanceOutcome; outputs: OutputObject[] }> {
  // the file's bytes, where it is read whole
  let bytes: Buffer | null = null;
  let header: Dataset;
  if (frameFile) {
    header = frameFile.header;
  } else {
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      return { outcome: { sopInstanceUid: path.basename(file), status: 'failed', reason: 'internal', message: `cannot read ${file}: ${(e as Error).message}` }, outputs: [] };
    }
    try {
      header = readPart10(bytes, { untilTag: '7FE00010' }).dataset;
    } catch (e) {
      return { outcome: { sopInstanceUid: path.basename(file), status: 'failed', reason: 'decode.malformed', message: `not a readable DICOM file: ${(e as Error).message}` }, outputs: [] };
    }
  }
  const sop = String(header.SOPInstanceUID ?? path.basename(file));
  if (!isUltrasoundSopClass(String(header.SOPClassUID ?? ''))) {
    return { outcome: { sopInstanceUid: sop, status: 'skipped', reason: 'route.not_ultrasound', message: `SOP class ${header.SOPClassUID} is not an ultrasound image` }, outputs: [] };
  }
  const miss = checkAnalyzeRules(header, opts.routing ?? ANALYZE_EVERYTHING);
  if (miss) return { outcome: { sopInstanceUid: sop, status: 'skipped', reason: 'route.filtered', message: miss.message }, outputs: [] };
  let result: InstanceResult;
  const timings: Record<string, number> = {};
  try {
    // a file read whole is decoded to gray at once, as it always was: its gray frames (a byte a
    // pixel) cost less to hold than its parsed Pixel Data (3 bytes a pixel for colour)
    const source = frameFile ? await frameSourceOfFile(frameFile) : framesInMemory(await decodeInstance(bytes!));
    const opened = performance.now() - t0;
    // frames are decoded batch by batch inside the analysis: decode is the opening and those reads
    result = await analyzeFrames(source, predictor, opts);
    Object.assign(timings, result.timingsMs, { decode: opened + result.timingsMs.decode });
  } catch (e) {
    const reason = e instanceof DecodeError ? e.reason : 'inference.failed';
    return { outcome: { sopInstanceUid: sop, status: 'failed', reason, message: (e as Error).message }, outputs: [] };
  }
  const outputs: OutputObject[] = [];
  try {
    const t1 = performance.now();
    let seg: Dataset | null = null;
    const write = (kind: OutputObject['kind'], ds: Dataset) => {
      const f = path.join(outDir, `${kind}-${ds.SOPInstanceUID}.dcm`);
      writePart10File(f, ds);
      outputs.push(outputObject(kind, ds, f, sop));
    };
    if (opts.outputs.seg && result.lesions.length > 0) {
      seg = buildSeg(header, result, opts.model);
      write('seg', seg);
    }
    if (opts.outputs.sr) write('sr', buildSr(header, result, opts.model, seg));
    if (opts.outputs.overlay) {
      // drawn on the frame as the radiologist saw it (Doppler colour kept), not on the model's gray:
      // the reported frame alone is decoded again in colour (null for a grayscale source), read
      // from the file on its own: not a second parse of every frame of a long cine
      const colourFrame = await decodeColourFrameOfFile(file, bytes, result.reportedFrameIndex);
      write('overlay', await buildOverlay(header, result, opts.model, { colourFrame }));
    }
    timings.report = performance.now() - t1;
  } catch (e) {
    return { outcome: { sopInstanceUid: sop, status: 'failed', reason: 'report.failed', message: (e as Error).message }, outputs: [] };
  }
  timings.total = performance.now() - t0;
  return {
    outcome: {
      sopInstanceUid: sop,
      status: 'analysed',
      label: result.label,
      probability: result.classProbabilities[result.label],
      malignancyProbability: result.malignancyProbability,
      lesionCount: result.lesions.filter((l) => l.frameIndex === result.reportedFrameIndex).length,
      largestLesion: summarize(result),
      frames: result.source.frameCount,
      timingsMs: timings,
      ...(result.agreement ? { networkSpread: result.agreement.spread, lowAgreement: result.agreement.low } : {}),
      keyImage: keyImageOf(header, result),
    },
    outputs,
  };
}

/**
 * One instance file → its outcome and result files (runs in an inference worker process);
 * `analyze` replaces the options' routing rules for this request when given.
 */
export type InstanceFileProcessor = (file: string, outDir: string, analyze?: AnalyzeRules) => Promise<{ outcome: InstanceOutcome; outputs: OutputObject[] }>;

/** The study's key object selection, when it is switched on (outputs.keyImages). */
export interface KeyImagesOptions {
  model: ModelInfo;
  enabled: boolean;
}

/**
 * Writes the study's key object selection into outDir when an analysed image is flagged. Study
 * attributes come from the most suspicious flagged instance's header. A full disk is thrown (the job waits
 * for space); any other failure is returned as a message, and the study's other results stand.
 */
async function writeKeyImages(input: StudyJobInput, instances: InstanceOutcome[], model: ModelInfo): Promise<{ output: OutputObject | null; error?: string }> {
  const analysed = instances.filter((i) => i.status === 'analysed' && i.keyImage);
  const candidates = analysed.map((i) => i.keyImage!);
  try {
    const [first] = keyImages(candidates);
    if (!first) return { output: null };
    const file = input.instances.find((i) => i.sopInstanceUid === first.sopInstanceUid);
    if (!file) return { output: null, error: `no stored file for instance ${first.sopInstanceUid}` };
    // only the file's header is read, not a cine's frames
    const header = (await readHeader(file.path)).dataset;
    const kos = buildKeyImages(header, candidates, analysed.map((i) => i.sopInstanceUid), model);
    if (!kos) return { output: null };
    const out = path.join(input.outDir, `kos-${kos.SOPInstanceUID}.dcm`);
    fs.writeFileSync(out, writePart10(kos));
    return { output: outputObject('kos', kos, out, null) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC') throw e;
    return { output: null, error: (e as Error).message };
  }
}

/**
 * The StudyProcessor: every instance of the study through `processFile`, all submitted at once so
 * that several inference workers (inference.workers) share a study's instances; then the study's
 * key object selection over their results.
 */
export function createStudyProcessor(processFile: InstanceFileProcessor, summary?: KeyImagesOptions): StudyProcessor {
  return async (input: StudyJobInput): Promise<StudyJobOutput> => {
    const t0 = performance.now();
    fs.mkdirSync(input.outDir, { recursive: true });
    const results = await Promise.all(
      input.instances.map((inst) =>
        processFile(inst.path, input.outDir, input.analyze).then<{ outcome: InstanceOutcome; outputs: OutputObject[] }, { outcome: InstanceOutcome; outputs: OutputObject[] }>(
          // the outcome is filed under the UID the instance was stored with (an unreadable file
          // has no UID of its own to report)
          (r) => ({ ...r, outcome: { ...r.outcome, sopInstanceUid: inst.sopInstanceUid } }),
          // a lost inference worker fails this instance only, not the whole study
          (e: Error) => ({
            outcome: { sopInstanceUid: inst.sopInstanceUid, status: 'failed', reason: 'inference.failed', message: e.message },
            outputs: [],
          }),
        ),
      ),
    );
    const instances = results.map((r) => r.outcome);
    const outputs = results.flatMap((r) => r.outputs);
    let keyImagesError: string | undefined;
    if (summary?.enabled) {
      const { output, error } = await writeKeyImages(input, instances, summary.model);
      if (output) outputs.push(output);
      keyImagesError = error;
    }
    const analysed = instances.filter((i) => i.status === 'analysed');
    const worst = analysed.reduce<InstanceOutcome | null>((a, b) => {
      if (!a) return b;
      const d = LABEL_SEVERITY[b.label!] - LABEL_SEVERITY[a.label!];
      return d > 0 || (d === 0 && (b.malignancyProbability ?? 0) > (a.malignancyProbability ?? 0)) ? b : a;
    }, null);
    return {
      outputs,
      instances,
      label: worst?.label ?? null,
      malignancyProbability: worst?.malignancyProbability ?? null,
      timingsMs: { total: performance.now() - t0 },
      ...(keyImagesError ? { keyImagesError } : {}),
    };
  };
}
