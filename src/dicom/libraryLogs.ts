/**
 * dcmjs and dcmjs-dimse write their own messages to the console through loglevel ("Invalid vr type
 * xs - using US" for every Implicit VR data set, "Unknown name in dataset" for private tags, a dump
 * of every PDU). They are not JSON, and may name tags of patient data sets, so every process that
 * reads or sends DICOM turns them off; `verbose` (log level debug or trace) keeps their warnings.
 * dcmjs-dimse brings its own copy of dcmjs (another version), which has its own logger.
 */
import path from 'node:path';
import dcmjs from 'dcmjs';
import dimse from 'dcmjs-dimse';

interface LevelledLog {
  setLevel(level: 'warn' | 'silent'): void;
  getLogger?(name: string): LevelledLog;
}

/** dcmjs's child loggers (they keep the level they were created with: set each one) */
const DCMJS_CHILDREN = ['validation.dcmjs', 'AsyncDicomReader'];

function dimseDcmjsLog(): LevelledLog | null {
  try {
    const nested = require.resolve('dcmjs', { paths: [path.dirname(require.resolve('dcmjs-dimse'))] });
    return (require(nested) as { log?: LevelledLog }).log ?? null;
  } catch {
    return null; // deduplicated into ours, or laid out otherwise: ours is set below
  }
}

export function quietDicomLibraries(verbose = false): void {
  const level = verbose ? 'warn' : 'silent';
  dimse.log.setLevel(level);
  for (const log of [(dcmjs as unknown as { log: LevelledLog }).log, dimseDcmjsLog()]) {
    if (!log) continue;
    log.setLevel(level);
    for (const name of DCMJS_CHILDREN) log.getLogger?.(name).setLevel(level);
  }
}
