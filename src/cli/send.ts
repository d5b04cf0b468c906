/** `sonogate send PATH... --to AET@HOST:PORT`: a C-STORE client for demos and tests. */
import { readHeader } from '../dicom/header';
import { OutgoingFile } from '../dispatch/destination';
import { DicomStoreDestination } from '../dispatch/dicomStore';
import { collectFiles } from './analyze';

export async function runSend(
  paths: string[],
  to: { aeTitle: string; host: string; port: number },
  callingAe: string,
  timeoutSeconds: number,
): Promise<number> {
  const files: OutgoingFile[] = [];
  let bad = 0;
  for (const f of collectFiles(paths)) {
    try {
      const h = await readHeader(f);
      files.push({ path: f, sopClassUid: h.sopClassUid, sopInstanceUid: h.sopInstanceUid });
    } catch (e) {
      bad++;
      process.stderr.write(`${f}: not sent, ${(e as Error).message}\n`);
    }
  }
  if (!files.length) {
    process.stderr.write('sonogate send: no DICOM files to send\n');
    return bad ? 1 : 2;
  }
  const dest = new DicomStoreDestination({ name: 'cli', ...to }, callingAe, timeoutSeconds * 1000);
  const results = await dest.send(files);
  let failed = bad;
  results.forEach((r, i) => {
    const status = r.status === null ? 'no answer' : `0x${r.status.toString(16).padStart(4, '0')}`;
    process.stdout.write(`${r.delivered ? 'sent' : 'FAILED'} ${files[i].path} ${r.sopInstanceUid} status ${status}${r.error ? ` ${r.error}` : ''}\n`);
    if (!r.delivered) failed++;
  });
  return failed ? 1 : 0;
}
