/**
 * Test scaffolding for the gateway: a config on loopback ports under a temp dataDir, a silent
 * logger, and a trivial but real StudyProcessor (one Part 10 output per instance, written with
 * dcmjs, with a deterministic UID) for tests that do not need the analysis pipeline.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { readPart10, writePart10 } from '../../src/dicom/part10';
import { createLogger, Logger } from '../../src/log';
import type { OutputObject, StudyJobOutput, StudyProcessor } from '../../src/types/pipeline';

export const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `sonogate-${prefix}-`));
}

export function silentLogger(): Logger {
  return createLogger(process.env.SONOGATE_TEST_LOG ?? 'silent');
}

/** A logger that keeps its warnings and errors (JSON lines) in memory, for a failing test to show
 * why the gateway did what it did (a race that fails once in many runs cannot be rerun at will). */
export function recordingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger('warn', { write: (line: string) => void lines.push(line.trimEnd()) });
  return { logger, lines };
}

export function testConfig(over: { dataDir: string; port: number } & Record<string, any>): Config {
  const { dataDir, port, dicom, study, send, ...rest } = over;
  return parseConfig({
    dataDir,
    dicom: { aeTitle: 'SONOGATE', host: '127.0.0.1', port, ...(dicom ?? {}) },
    study: { quietSeconds: 0.5, ...(study ?? {}) },
    send: { initialDelaySeconds: 0.3, maxDelaySeconds: 2, timeoutSeconds: 5, ...(send ?? {}) },
    log: { level: 'silent' },
    ...rest,
  });
}

/** The output UID of a source instance: fixed per source, as the real pipeline's are. */
export function copyUid(sourceSop: string): string {
  return `${sourceSop}.9`;
}

/**
 * Writes, per instance, a Secondary Capture copy of it (new series, deterministic SOP Instance
 * UID). Records every call so tests can count runs.
 */
export function copyProcessor(calls: { studyInstanceUid: string; instances: number }[] = []): StudyProcessor {
  return async (input) => {
    calls.push({ studyInstanceUid: input.studyInstanceUid, instances: input.instances.length });
    const outputs: OutputObject[] = [];
    for (const inst of input.instances) {
      const { dataset } = readPart10(fs.readFileSync(inst.path));
      const out: Record<string, any> = {
        ...dataset,
        SOPClassUID: SECONDARY_CAPTURE,
        SOPInstanceUID: copyUid(inst.sopInstanceUid),
        SeriesInstanceUID: `${dataset.SeriesInstanceUID}.9`,
        SeriesNumber: 99,
        Modality: 'OT',
        Manufacturer: 'Sonogate',
        ConversionType: 'WSD',
      };
      delete out.SequenceOfUltrasoundRegions;
      const file = path.join(input.outDir, `${out.SOPInstanceUID}.dcm`);
      fs.writeFileSync(file, writePart10(out));
      outputs.push({
        kind: 'overlay',
        path: file,
        sopClassUid: SECONDARY_CAPTURE,
        sopInstanceUid: out.SOPInstanceUID,
        seriesInstanceUid: out.SeriesInstanceUID,
        sourceSopInstanceUid: inst.sopInstanceUid,
      });
    }
    const result: StudyJobOutput = {
      outputs,
      instances: input.instances.map((i) => ({ sopInstanceUid: i.sopInstanceUid, status: 'analysed', label: 'benign', probability: 0.8, malignancyProbability: 0.1, lesionCount: 1 })),
      label: 'benign',
      malignancyProbability: 0.1,
      timingsMs: { total: 1 },
    };
    return result;
  };
}

/** Writes a phantom (or any Part 10 buffer) to a file for the DCMTK tools. */
export function writeTemp(dir: string, name: string, bytes: Buffer): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes);
  return f;
}
