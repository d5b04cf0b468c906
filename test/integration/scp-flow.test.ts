/**
 * Scanner → gateway → PACS with real DCMTK peers: storescu sends, the quiet timer completes the
 * study, a trivial processor makes one output per instance, and storescp (the PACS) receives it.
 * Covers retry/backoff, re-opened studies, failures and restarts. The full pipeline end-to-end
 * test lives elsewhere; this one is about getting every result delivered exactly once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { part10DatasetOffset } from '../../src/dicom/part10';
import { Gateway, GatewayOptions, startGateway } from '../../src/gateway';
import type { StudyProcessor } from '../../src/types/pipeline';
import { copyProcessor, copyUid, silentLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { StoreScpPeer, echoscu, eventually, freePort, startStoreScp, storescu } from '../helpers/peers';
import { phantomFile } from '../helpers/phantom';

let dir: string;
const gateways: Gateway[] = [];
const peers: StoreScpPeer[] = [];

beforeEach(() => {
  dir = tempDir('flow');
});
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.close();
  for (const p of peers.splice(0)) await p.stop();
});

async function pacs(port?: number): Promise<StoreScpPeer> {
  const p = await startStoreScp({ dir: path.join(dir, `pacs-${peers.length}`), port });
  peers.push(p);
  return p;
}

async function gateway(pacsPort: number, processor: StudyProcessor, over: Record<string, any> = {}, options: GatewayOptions = {}, port?: number): Promise<Gateway> {
  const config = testConfig({
    dataDir: path.join(dir, 'data'),
    port: port ?? (await freePort()),
    destinations: [{ name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: pacsPort }],
    ...over,
  });
  const g = await startGateway(config, processor, silentLogger(), options);
  gateways.push(g);
  return g;
}

/** Phantom instances of one study (seed = instance number), written to files for storescu. */
function studyFiles(study: string, seeds: number[]): { files: string[]; sops: string[] } {
  const files = seeds.map((s) => writeTemp(dir, `${study}-${s}.dcm`, phantomFile({ seed: s, studyInstanceUid: study })));
  return { files, sops: seeds.map((s) => `${study}.1.${s}`) };
}

function countBySop(received: { sopInstanceUid: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of received) out[r.sopInstanceUid] = (out[r.sopInstanceUid] ?? 0) + 1;
  return out;
}

const settle = (ms = 1200) => new Promise((r) => setTimeout(r, ms));

test('a study that went quiet is analysed once and every result reaches the PACS', async () => {
  const p = await pacs();
  const calls: { studyInstanceUid: string; instances: number }[] = [];
  const g = await gateway(p.port, copyProcessor(calls));
  const study = '2.25.7001';
  const { files, sops } = studyFiles(study, [1, 2]);
  expect((await storescu(files, { port: g.dicomPort })).code).toBe(0);

  const received = await p.waitForFiles(2);
  expect(countBySop(received)).toEqual({ [copyUid(sops[0])]: 1, [copyUid(sops[1])]: 1 });
  expect(received.every((r) => r.studyInstanceUid === study)).toBe(true);
  expect(calls).toEqual([{ studyInstanceUid: study, instances: 2 }]);
  await eventually(() => g.store.listSends({ studyUid: study }).every((s) => s.status === 'sent'), 5000, 'sends marked sent');
  expect(g.store.getStudy(study)).toMatchObject({ status: 'processed', label: 'benign', runCount: 1 });
  expect(g.store.listInstances(study).map((i) => i.status)).toEqual(['analysed', 'analysed']);
  const sends = g.store.listSends({ studyUid: study });
  expect(sends).toHaveLength(2);
  expect(sends.every((s) => s.lastStatus === 0 && s.attempts === 1)).toBe(true);
  // what the PACS got is byte for byte the data set of the file the processor wrote
  const outputs = g.store.listOutputs(study);
  for (const r of received) {
    const mine = fs.readFileSync(outputs.find((o) => o.sopInstanceUid === r.sopInstanceUid)!.path);
    const theirs = fs.readFileSync(r.file);
    expect(theirs.subarray(part10DatasetOffset(theirs)).equals(mine.subarray(part10DatasetOffset(mine)))).toBe(true);
  }
  const kinds = g.store.listEvents({ studyUid: study }).map((e) => e.kind).reverse();
  expect(kinds).toEqual(['study.opened', 'study.queued', 'job.started', 'job.done', 'send.sent']);
  await settle();
  expect((await p.received()).length).toBe(2);
});

test('while the PACS is down sends are retried with backoff and the error is visible; once it is up each result arrives exactly once', async () => {
  const pacsPort = await freePort();
  const g = await gateway(pacsPort, copyProcessor(), { send: { initialDelaySeconds: 0.2, maxDelaySeconds: 0.8 } });
  const study = '2.25.7002';
  const { files, sops } = studyFiles(study, [1]);
  expect((await storescu(files, { port: g.dicomPort })).code).toBe(0);

  const row = await eventually(() => g.store.listSends({ studyUid: study }).find((s) => s.attempts >= 3), 15_000, '3 failed attempts').catch((e) => {
    throw new Error(`${e.message}; sends: ${JSON.stringify(g.store.listSends())}; pacs port ${pacsPort}, gateway port ${g.dicomPort}`);
  });
  expect(row.status).toBe('pending');
  expect(row.lastError).toMatch(/^send\.network_error: .*ECONNREFUSED/);
  expect(row.nextAttemptAt).toBeGreaterThan(Date.now() - 1000);
  expect(g.store.listEvents({ studyUid: study }).some((e) => e.kind === 'send.retry')).toBe(true);

  const p = await pacs(pacsPort);
  const received = await p.waitForFiles(1, 15_000).catch((e) => {
    throw new Error(`${e.message}; sends: ${JSON.stringify(g.store.listSends())}`);
  });
  await eventually(() => g.store.listSends({ studyUid: study })[0].status === 'sent', 5000, 'marked sent');
  await settle(2000); // a few backoff periods: nothing more may arrive
  expect(countBySop(await p.received())).toEqual({ [copyUid(sops[0])]: 1 });
  expect(received[0].sopInstanceUid).toBe(copyUid(sops[0]));
  expect(g.store.listSends({ studyUid: study })[0]).toMatchObject({ status: 'sent', lastError: null });
});

test('an instance sent after the study was processed re-opens it: results are regenerated with the same UIDs, without duplicate send rows', async () => {
  const p = await pacs();
  const calls: { studyInstanceUid: string; instances: number }[] = [];
  const g = await gateway(p.port, copyProcessor(calls));
  const study = '2.25.7003';
  const first = studyFiles(study, [1]);
  expect((await storescu(first.files, { port: g.dicomPort })).code).toBe(0);
  await p.waitForFiles(1);
  await eventually(() => g.store.getStudy(study)?.status === 'processed', 5000, 'processed');

  const late = studyFiles(study, [2]);
  expect((await storescu(late.files, { port: g.dicomPort })).code).toBe(0);
  expect(g.store.getStudy(study)!.status).toBe('receiving');
  await p.waitForFiles(3); // the first output again (regenerated) + the new one
  await eventually(() => g.store.listSends({ studyUid: study }).every((s) => s.status === 'sent') && g.store.getStudy(study)?.status === 'processed', 5000, 'all sent');

  expect(calls).toEqual([
    { studyInstanceUid: study, instances: 1 },
    { studyInstanceUid: study, instances: 2 },
  ]);
  expect(g.store.getStudy(study)!.runCount).toBe(2);
  expect(g.store.listOutputs(study).map((o) => o.sopInstanceUid).sort()).toEqual([copyUid(first.sops[0]), copyUid(late.sops[0])].sort());
  expect(g.store.listOutputs(study).every((o) => o.path.includes(`${path.sep}run-2${path.sep}`))).toBe(true);
  // the first run's folder is gone once the second run's results are filed
  expect(fs.readdirSync(path.dirname(path.dirname(g.store.listOutputs(study)[0].path)))).toEqual(['run-2']);
  const sends = g.store.listSends({ studyUid: study });
  expect(sends).toHaveLength(2); // one per output and destination, not one per run
  expect(sends.find((s) => s.outputSopUid === copyUid(first.sops[0]))!.generation).toBe(1);
  await settle();
  // the PACS got the regenerated object again under the same UID (it replaces), the new one once
  expect(countBySop(await p.received())).toEqual({ [copyUid(first.sops[0])]: 2, [copyUid(late.sops[0])]: 1 });
});

test('a processor that throws fails the job with its reason, and the gateway keeps serving', async () => {
  const p = await pacs();
  let broken = true;
  const good = copyProcessor();
  const g = await gateway(p.port, async (input) => {
    if (broken) throw Object.assign(new Error('model file is corrupt'), { reason: 'inference.failed' });
    return good(input);
  });
  const study = '2.25.7004';
  const { files } = studyFiles(study, [1]);
  expect((await storescu(files, { port: g.dicomPort })).code).toBe(0);
  await eventually(() => g.store.getStudy(study)?.status === 'failed', 5000, 'failed');
  expect(g.store.getStudy(study)).toMatchObject({ errorReason: 'inference.failed', errorMessage: 'model file is corrupt' });
  expect(g.store.listJobs(study)[0]).toMatchObject({ status: 'failed', errorReason: 'inference.failed' });
  expect(g.store.listSends({ studyUid: study })).toEqual([]);
  expect((await echoscu({ port: g.dicomPort })).code).toBe(0);

  // resending the study re-opens it and, with the processor fixed, it goes through
  broken = false;
  expect((await storescu(files, { port: g.dicomPort })).code).toBe(0);
  await p.waitForFiles(1);
  await eventually(() => g.store.getStudy(study)?.status === 'processed', 5000, 'processed');
});

test('crash while a study is processed: after the restart its results arrive once', async () => {
  const p = await pacs();
  let started = 0;
  const hangs: StudyProcessor = () => {
    started++;
    return new Promise(() => undefined); // never finishes: the process "dies" mid-run
  };
  const g1 = await gateway(p.port, hangs);
  const study = '2.25.7005';
  const { files, sops } = studyFiles(study, [1, 2]);
  expect((await storescu(files, { port: g1.dicomPort })).code).toBe(0);
  await eventually(() => started === 1 && g1.store.listJobs(study)[0]?.status === 'running', 5000, 'job running');
  await g1.crash();
  gateways.splice(gateways.indexOf(g1), 1);

  const calls: { studyInstanceUid: string; instances: number }[] = [];
  const g2 = await gateway(p.port, copyProcessor(calls));
  await p.waitForFiles(2);
  await eventually(() => g2.store.listSends({ studyUid: study }).every((s) => s.status === 'sent') && g2.store.listSends({ studyUid: study }).length === 2, 5000, 'sent');
  await settle();
  expect(countBySop(await p.received())).toEqual({ [copyUid(sops[0])]: 1, [copyUid(sops[1])]: 1 });
  expect(calls).toEqual([{ studyInstanceUid: study, instances: 2 }]);
  expect(g2.store.listJobs(study)).toEqual([expect.objectContaining({ status: 'done', attempts: 2, run: 2 })]);
});

test('crash after the results were made but before they were sent: the restart sends them once, without re-running', async () => {
  const pacsPort = await freePort();
  const calls: { studyInstanceUid: string; instances: number }[] = [];
  const g1 = await gateway(pacsPort, copyProcessor(calls), { send: { initialDelaySeconds: 0.2, maxDelaySeconds: 0.4 } });
  const study = '2.25.7006';
  const { files, sops } = studyFiles(study, [1]);
  expect((await storescu(files, { port: g1.dicomPort })).code).toBe(0);
  await eventually(() => g1.store.listSends({ studyUid: study })[0]?.attempts >= 1, 10_000, 'a failed send');
  await g1.crash();
  gateways.splice(gateways.indexOf(g1), 1);

  const p = await pacs(pacsPort);
  const g2 = await gateway(pacsPort, copyProcessor(calls), { send: { initialDelaySeconds: 0.2, maxDelaySeconds: 0.4 } });
  await p.waitForFiles(1);
  await eventually(() => g2.store.listSends({ studyUid: study })[0].status === 'sent', 5000, 'sent');
  await settle();
  expect(countBySop(await p.received())).toEqual({ [copyUid(sops[0])]: 1 });
  expect(calls).toHaveLength(1); // the results were kept, not recomputed
});

test('a study whose quiet timer was running when the process died is completed after the restart', async () => {
  const p = await pacs();
  const calls: { studyInstanceUid: string; instances: number }[] = [];
  const g1 = await gateway(p.port, copyProcessor(calls), { study: { quietSeconds: 1 } });
  const study = '2.25.7007';
  const { files, sops } = studyFiles(study, [1]);
  expect((await storescu(files, { port: g1.dicomPort })).code).toBe(0);
  await g1.crash(); // before the quiet period ended
  gateways.splice(gateways.indexOf(g1), 1);
  expect(calls).toHaveLength(0);

  await settle(1200); // the deadline passes while nothing runs
  const started = Date.now();
  const g2 = await gateway(p.port, copyProcessor(calls), { study: { quietSeconds: 1 } });
  await p.waitForFiles(1);
  // queued at start, not after another full quiet period... allow for a slow machine, but not 1 s more
  expect(Date.now() - started).toBeLessThan(2500);
  expect(calls).toHaveLength(1);
  await eventually(() => g2.store.getStudy(study)?.status === 'processed', 5000, 'processed');
  await settle();
  expect(countBySop(await p.received())).toEqual({ [copyUid(sops[0])]: 1 });
});

test('a graceful close requeues a job that does not finish in time; the next start runs it', async () => {
  const p = await pacs();
  let release!: () => void;
  const slow: StudyProcessor = async (input) => {
    await new Promise<void>((r) => (release = r));
    return copyProcessor()(input);
  };
  const g1 = await gateway(p.port, slow, {}, { closeGraceMs: 200 });
  const study = '2.25.7008';
  const { files } = studyFiles(study, [1]);
  expect((await storescu(files, { port: g1.dicomPort })).code).toBe(0);
  await eventually(() => g1.store.listJobs(study)[0]?.status === 'running', 5000, 'running');
  await g1.close();
  gateways.splice(gateways.indexOf(g1), 1);
  release(); // the late result is ignored

  const g2 = await gateway(p.port, copyProcessor());
  expect(g2.store.listJobs(study)[0].status).not.toBe('done');
  await p.waitForFiles(1);
  await eventually(() => g2.store.getStudy(study)?.status === 'processed', 5000, 'processed');
  expect(g2.store.listEvents({ studyUid: study }).some((e) => e.kind === 'job.requeued' && e.detail?.includes('shutdown'))).toBe(true);
});

test('results are also returned to the calling scanner when its allowedCallers entry asks for it', async () => {
  const p = await pacs();
  const scanner = await startStoreScp({ dir: path.join(dir, 'scanner'), aeTitle: 'US_SCANNER' });
  peers.push(scanner);
  const g = await gateway(p.port, copyProcessor(), {
    dicom: { allowedCallers: [{ aeTitle: 'US_SCANNER', host: '127.0.0.1', returnToSender: { port: scanner.port } }] },
  });
  const study = '2.25.7009';
  const { files, sops } = studyFiles(study, [1]);
  expect((await storescu(files, { port: g.dicomPort, callingAe: 'US_SCANNER' })).code).toBe(0);
  await p.waitForFiles(1);
  const back = await scanner.waitForFiles(1);
  expect(back[0].sopInstanceUid).toBe(copyUid(sops[0]));
  expect(g.store.listSends({ studyUid: study }).map((s) => s.destination).sort()).toEqual(['pacs', `return:US_SCANNER@127.0.0.1:${scanner.port}`]);
});
