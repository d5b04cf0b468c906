/**
 * A synthetic study filed through the store's own API, as the gateway files one: a single-frame
 * image of 121 KB, then an analysis whose results are the sizes the load test measured (overlay
 * 360 KB of uncompressed RGB, SEG 60 KB, SR 50 KB, KOS 10 KB: about 0.48 MB), queued to one PACS
 * and, where `delivered`, sent. Used by the retention and storage-cap benchmarks.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Store } from '../src/store/store';

export interface SyntheticStudyOptions {
  /** whether the results were delivered (a study that still owes them is never removed) */
  delivered: boolean;
  /** bytes of a file the load test measured at `kb` KiB (a benchmark may shrink them to time many studies) */
  bytes?: (kb: number) => number;
}

export function fileSyntheticStudy(store: Store, dataDir: string, uid: string, at: number, opts: SyntheticStudyOptions): void {
  const bytes = opts.bytes ?? ((kb: number) => kb * 1024);
  const sop = `${uid}.1.1`;
  const image = path.join(dataDir, 'instances', uid, `${uid}.1`, `${sop}.dcm`);
  fs.mkdirSync(path.dirname(image), { recursive: true });
  fs.writeFileSync(image, Buffer.alloc(bytes(121), 7));
  store.recordInstance({ sopInstanceUid: sop, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2.1', studyUid: uid, seriesUid: `${uid}.1`, path: image, bytes: bytes(121), callingAe: 'US', callingHost: '127.0.0.1', patientName: 'Test^Patient' }, at);
  store.queueStudyIfQuiet(uid, 0, at + 1000);
  const job = store.claimNextJob((s, run) => path.join(dataDir, 'results', s, `run-${run}`), at + 2000)!;
  fs.mkdirSync(job.outDir, { recursive: true });
  const outputs = (
    [
      ['overlay', '1.2.840.10008.5.1.4.1.1.7', 360],
      ['seg', '1.2.840.10008.5.1.4.1.1.66.4', 60],
      ['sr', '1.2.840.10008.5.1.4.1.1.88.33', 50],
      ['kos', '1.2.840.10008.5.1.4.1.1.88.59', 10],
    ] as const
  ).map(([kind, sopClassUid, kb], i) => {
    const file = path.join(job.outDir, `${kind}-${sop}.9${i}.dcm`);
    fs.writeFileSync(file, Buffer.alloc(bytes(kb), 3));
    return { kind, path: file, sopClassUid, sopInstanceUid: `${sop}.9${i}`, seriesInstanceUid: `${uid}.9${i}`, sourceSopInstanceUid: kind === 'kos' ? null : sop, bytes: bytes(kb) };
  });
  store.completeJob(
    job.jobId,
    {
      outputs,
      instances: [{ sopInstanceUid: sop, status: 'analysed', label: 'benign', probability: 0.8, malignancyProbability: 0.1, lesionCount: 1, frames: 1, largestLesion: { longAxis: 14.2, shortAxis: 8.1, area: 91.5, unit: 'mm' }, timingsMs: { decode: 13, inference: 20, report: 30, total: 70 } }],
      label: 'benign',
      malignancyProbability: 0.1,
      timingsMs: { total: 80 },
    },
    [{ destination: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: 104 }],
    at + 3000,
  );
  if (opts.delivered) for (const s of store.listSends({ studyUid: uid })) store.markSendSent(s.id, s.generation, 0, at + 4000);
}
