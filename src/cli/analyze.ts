/** `sonogate analyze PATH... --out DIR`: the gateway's pipeline on files, offline. */
import fs from 'node:fs';
import path from 'node:path';
import { Config } from '../config/schema';
import { readPart10 } from '../dicom/part10';
import { Logger } from '../log';
import { startAnalysisEngine } from '../runtime';

/** Files under the given paths (folders recursively), sorted for a stable order. */
export function collectFiles(paths: string[]): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    else if (st.isFile()) out.push(p);
  };
  for (const p of paths) walk(p);
  return out;
}

/** Groups files by Study Instance UID (unreadable files form their own group keyed by path). */
function groupByStudy(files: string[]): Map<string, { sopInstanceUid: string; path: string }[]> {
  const studies = new Map<string, { sopInstanceUid: string; path: string }[]>();
  for (const f of files) {
    let study = `unreadable:${f}`;
    let sop = path.basename(f);
    try {
      const h = readPart10(fs.readFileSync(f), { untilTag: '7FE00010' }).dataset;
      if (h.StudyInstanceUID) study = String(h.StudyInstanceUID);
      if (h.SOPInstanceUID) sop = String(h.SOPInstanceUID);
    } catch {
      /* the pipeline reports it as malformed */
    }
    if (!studies.has(study)) studies.set(study, []);
    studies.get(study)!.push({ sopInstanceUid: sop, path: f });
  }
  return studies;
}

export async function runAnalyze(paths: string[], outDir: string, config: Config, logger: Logger): Promise<number> {
  // the results carry the patient's name and IDs: not readable by other local users (as serve)
  process.umask(0o027);
  const files = collectFiles(paths);
  if (!files.length) {
    process.stderr.write('sonogate analyze: no files found\n');
    return 2;
  }
  fs.mkdirSync(outDir, { recursive: true });
  const engine = await startAnalysisEngine(config, logger);
  let failed = 0;
  try {
    for (const [study, instances] of groupByStudy(files)) {
      const r = await engine.processor({ studyInstanceUid: study, instances, outDir });
      failed += r.instances.filter((i) => i.status === 'failed').length;
      process.stdout.write(
        JSON.stringify({
          studyInstanceUid: study,
          label: r.label,
          malignancyProbability: r.malignancyProbability,
          model: `${engine.model.spec.name} ${engine.model.spec.version}`,
          instances: r.instances,
          outputs: r.outputs.map((o) => ({ kind: o.kind, file: o.path, sopInstanceUid: o.sopInstanceUid, source: o.sourceSopInstanceUid })),
          timingsMs: r.timingsMs,
        }) + '\n',
      );
    }
  } finally {
    await engine.close();
  }
  return failed ? 1 : 0;
}
