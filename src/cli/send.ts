/**
 * `sonogate send PATH... --to AET@HOST:PORT [--tls-cert C --tls-key K --tls-ca A]`: a C-STORE
 * client for demos, tests and re-sending by hand; with the three TLS files it speaks DICOM TLS
 * and verifies the peer's certificate against the CA (there is no switch to skip that check).
 */
import type { TlsFilesConfig } from '../config/schema';
import { loadTlsFiles } from '../config/tlsFiles';
import { readHeader } from '../dicom/header';
import { quietDicomLibraries } from '../dicom/libraryLogs';
import { OutgoingFile } from '../dispatch/destination';
import { DicomStoreDestination } from '../dispatch/dicomStore';
import { collectFiles } from './analyze';

export async function runSend(
  paths: string[],
  to: { aeTitle: string; host: string; port: number },
  callingAe: string,
  timeoutSeconds: number,
  tlsFiles: TlsFilesConfig | null = null,
): Promise<number> {
  // the DICOM libraries' own messages (association dumps, private tags) would be mixed into our one line per file
  quietDicomLibraries();
  // checked before anything is read or sent: a bad key names the option (ConfigError, exit 2)
  const names = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' } as const;
  const tlsMaterial = tlsFiles ? loadTlsFiles('--tls', tlsFiles, new Date(), (f) => names[f]) : null;
  for (const w of tlsMaterial?.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
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
  const dest = new DicomStoreDestination({ name: 'cli', ...to, tls: tlsMaterial }, callingAe, timeoutSeconds * 1000);
  const results = await dest.send(files);
  let failed = bad;
  results.forEach((r, i) => {
    const status = r.status === null ? 'no answer' : `0x${r.status.toString(16).padStart(4, '0')}`;
    process.stdout.write(`${r.delivered ? 'sent' : 'FAILED'} ${files[i].path} ${r.sopInstanceUid} status ${status}${r.error ? ` ${r.error}` : ''}\n`);
    if (!r.delivered) failed++;
  });
  return failed ? 1 : 0;
}
