/**
 * The checks a PACS integrator would run on our output: dciodvfy (dicom3tools), dcmdump (DCMTK)
 * and pydicom (the Debian python3-pydicom, through /usr/bin/python3).
 */
import { execFileSync, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { writePart10 } from '../../src/dicom/part10';
import { Dataset } from '../../src/types/domain';

export function tempDir(prefix = 'sonogate-report-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes the dataset as Part 10 into dir and returns the path. */
export function writeDataset(dir: string, name: string, ds: Dataset): string {
  const path = join(dir, name);
  writeFileSync(path, writePart10(ds));
  return path;
}

export interface Dciodvfy {
  errors: string[];
  warnings: string[];
  output: string;
}

/** dciodvfy reports on stderr; "Error" lines are failures, "Warning" lines are printed by the tests. */
export function dciodvfy(path: string): Dciodvfy {
  const r = spawnSync('dciodvfy', [path], { encoding: 'utf8' });
  if (r.error) throw r.error;
  const output = `${r.stdout}${r.stderr}`;
  const lines = output.split('\n');
  return {
    errors: lines.filter((l) => /^Error/.test(l)),
    warnings: lines.filter((l) => /^Warning/i.test(l)),
    output,
  };
}

/** dicom3tools' check that a set of files agrees on patient and study attributes */
export function dcentvfy(paths: string[]): Dciodvfy {
  const r = spawnSync('dcentvfy', paths, { encoding: 'utf8' });
  if (r.error) throw r.error;
  const output = `${r.stdout}${r.stderr}`;
  const lines = output.split('\n');
  return { errors: lines.filter((l) => /^Error/.test(l)), warnings: lines.filter((l) => /^Warning/.test(l)), output };
}

export function dcmdump(path: string): { status: number | null; output: string } {
  const r = spawnSync('dcmdump', ['-q', path], { encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** DCMTK's SR reader, which also checks the content tree against the IOD's relationship rules. */
export function dsrdump(path: string): { status: number | null; output: string } {
  const r = spawnSync('dsrdump', ['-Ee', '-Ec', path], { encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const PYDICOM_SCRIPT = String.raw`
import json, sys
import numpy as np
import pydicom
ds = pydicom.dcmread(sys.argv[1])
out = {"sopClassUid": str(ds.SOPClassUID), "sopInstanceUid": str(ds.SOPInstanceUID),
       "studyInstanceUid": str(ds.StudyInstanceUID), "seriesInstanceUid": str(ds.SeriesInstanceUID),
       "patientName": str(ds.PatientName), "patientId": str(ds.PatientID)}
if "PixelData" in ds:
    arr = np.ascontiguousarray(ds.pixel_array, dtype=np.uint8)
    arr.tofile(sys.argv[2])
    out["shape"] = list(arr.shape)
print(json.dumps(out))
`;

export interface PydicomRead {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  patientName: string;
  patientId: string;
  shape?: number[];
  /** pixel_array as uint8, row-major (frames, rows, columns[, samples]) */
  pixels?: Buffer;
}

export function pydicomRead(path: string): PydicomRead {
  const rawPath = `${path}.pixels`;
  const json = execFileSync('/usr/bin/python3', ['-c', PYDICOM_SCRIPT, path, rawPath], { encoding: 'utf8' });
  const out: PydicomRead = JSON.parse(json);
  if (out.shape) out.pixels = readFileSync(rawPath);
  return out;
}

/**
 * What every result file must pass (SPEC.md): dciodvfy without errors (its warnings are printed),
 * dcmdump and pydicom able to read it.
 */
export function checkFile(path: string): { errors: string[]; dcmdumpStatus: number | null; pydicom: PydicomRead } {
  const v = dciodvfy(path);
  if (v.warnings.length) console.log(`dciodvfy warnings for ${path}:\n${v.warnings.join('\n')}`);
  return { errors: v.errors, dcmdumpStatus: dcmdump(path).status, pydicom: pydicomRead(path) };
}

/** /work/shared (or $SONOGATE_SHARED) when present: reference files are optional for the tests. */
export function sharedDir(): string | null {
  const dir = process.env.SONOGATE_SHARED ?? join(__dirname, '..', '..', '..', 'shared');
  return existsSync(dir) ? dir : null;
}

const PYDICOM_TEXTS = String.raw`
import json, sys
import pydicom
def walk(items):
    for item in items:
        if "TextValue" in item:
            yield str(item.TextValue)
        yield from walk(item.get("ContentSequence", []))
print(json.dumps(list(walk(pydicom.dcmread(sys.argv[1]).get("ContentSequence", [])))))
`;

/**
 * Every TextValue of an SR content tree, as pydicom decodes it. (dcmjs 0.52 decodes strings inside
 * sequence items without the Specific Character Set, so "—" comes back garbled from readPart10.)
 */
export function pydicomSrTexts(path: string): string[] {
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', PYDICOM_TEXTS, path], { encoding: 'utf8' }));
}
