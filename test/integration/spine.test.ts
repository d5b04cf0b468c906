/**
 * The hospital path end to end, as an administrator would run it: `sonogate serve` (the built
 * CLI, a real child process) between DCMTK scanners (storescu / dcmsend) and DCMTK storescp as
 * the PACS. The model is the deterministic dark-region test fixture, so the result content
 * (a lesion in the phantom, none in the lesion-free phantom) is predictable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { readPart10 } from '../../src/dicom/part10';
import { checkFile, pydicomRead, pydicomSrTexts } from '../helpers/dicomTools';
import { tempDir } from '../helpers/gatewayHarness';
import { dcmsend, echoscu, eventually, freePort, ReceivedFile, runTool, startStoreScp, StoreScpPeer, storescu } from '../helpers/peers';
import { CLI, Serve, startServe, stopServe } from '../helpers/serve';
import { phantomFile } from '../helpers/phantom';

const ROOT = path.resolve(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'test', 'fixtures', 'dark-lesion-model', 'model.json');
const SEG = '1.2.840.10008.5.1.4.1.1.66.4';
const SR = '1.2.840.10008.5.1.4.1.1.88.33';
const SC = '1.2.840.10008.5.1.4.1.1.7';
const KO = '1.2.840.10008.5.1.4.1.1.88.59';


function write(dir: string, name: string, bytes: Buffer): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes);
  return f;
}

function byStudy(files: ReceivedFile[], study: string): ReceivedFile[] {
  return files.filter((f) => f.studyInstanceUid === study);
}

const haveDcmtk = spawnSync('storescp', ['--version']).status === 0;
const d = haveDcmtk && fs.existsSync(CLI) ? describe : describe.skip;

d('scanner → sonogate serve → PACS', () => {
  let work: string;
  let pacs: StoreScpPeer;
  let serve: Serve | undefined;
  let dicomPort: number;
  let configFile: string;
  let dataDir: string;
  const inputs: Record<string, string> = {};

  beforeAll(async () => {
    work = tempDir('spine');
    pacs = await startStoreScp({ dir: path.join(work, 'pacs') });
    dicomPort = await freePort();
    dataDir = path.join(work, 'data');
    configFile = path.join(work, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        dicom: { aeTitle: 'SONOGATE', host: '127.0.0.1', port: dicomPort, allowedCallers: [{ aeTitle: 'US_SCANNER' }] },
        destinations: [{ name: 'pacs', aeTitle: pacs.aeTitle, host: '127.0.0.1', port: pacs.port }],
        http: { host: '127.0.0.1', port: 0 },
        dataDir,
        study: { quietSeconds: 1 },
        inference: { model: MODEL, providers: ['cpu'] },
        send: { initialDelaySeconds: 0.5, maxDelaySeconds: 2, timeoutSeconds: 10 },
        log: { level: 'info' },
      }),
    );
    const src = path.join(work, 'in');
    fs.mkdirSync(src);
    inputs.mono = write(src, 'mono.dcm', phantomFile({ seed: 11, studyInstanceUid: '2.25.7001' }));
    inputs.cine = write(src, 'cine.dcm', phantomFile({ seed: 12, frames: 3, studyInstanceUid: '2.25.7002' }));
    inputs.clear = write(src, 'clear.dcm', phantomFile({ seed: 13, lesion: false, studyInstanceUid: '2.25.7003' }));
    const rgb = write(src, 'rgb.dcm', phantomFile({ seed: 14, photometric: 'RGB', studyInstanceUid: '2.25.7004' }));
    inputs.jpeg = path.join(src, 'jpeg.dcm');
    const j = await runTool('dcmcjpeg', ['+eb', rgb, inputs.jpeg]); // JPEG Baseline, YBR_FULL_422: what scanners send
    expect(j.code).toBe(0);
    serve = await startServe(configFile, dicomPort);
  }, 60_000);

  afterAll(async () => {
    await stopServe(serve);
    await pacs?.stop();
  });

  test('each study comes back as SEG + SR + overlay (and key images) in its own study; all pass dciodvfy and pydicom', async () => {
    expect((await storescu([inputs.mono, inputs.cine, inputs.clear], { port: dicomPort })).code).toBe(0);
    expect(readPart10(fs.readFileSync(inputs.jpeg)).transferSyntaxUid).toBe('1.2.840.10008.1.2.4.50');
    expect((await dcmsend([inputs.jpeg], { port: dicomPort })).code).toBe(0);
    // mono, cine, jpeg: SEG + SR + SC each and the study's key images; lesion-free: SR + SC
    const files = await pacs.waitForFiles(14, 60_000);
    for (const [study, kinds] of [
      ['2.25.7001', [SEG, SR, SC, KO]],
      ['2.25.7002', [SEG, SR, SC, KO]],
      ['2.25.7004', [SEG, SR, SC, KO]],
      ['2.25.7003', [SR, SC]],
    ] as const) {
      expect(byStudy(files, study).map((f) => f.sopClassUid).sort()).toEqual([...kinds].sort());
    }
    for (const f of files) {
      const c = checkFile(f.file);
      expect({ file: path.basename(f.file), errors: c.errors }).toEqual({ file: path.basename(f.file), errors: [] });
      expect(c.dcmdumpStatus).toBe(0);
    }
  }, 120_000);

  test('the SEG references the source image and has one frame per source frame; the SR carries the label', async () => {
    const files = await pacs.received();
    const seg = byStudy(files, '2.25.7002').find((f) => f.sopClassUid === SEG)!;
    const s = readPart10(fs.readFileSync(seg.file)).dataset;
    const src = readPart10(fs.readFileSync(inputs.cine)).dataset;
    expect(s.NumberOfFrames).toBe(3);
    expect(s.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID).toBe(src.SOPInstanceUID);
    expect(s.PerFrameFunctionalGroupsSequence).toHaveLength(3);
    const px = pydicomRead(seg.file);
    expect(px.shape).toEqual([3, src.Rows, src.Columns]);
    expect(px.pixels!.some((v) => v === 1)).toBe(true);

    const sr = byStudy(files, '2.25.7001').find((f) => f.sopClassUid === SR)!;
    const srText = JSON.stringify(readPart10(fs.readFileSync(sr.file)).dataset.ContentSequence);
    expect(srText).toContain('3898006'); // SCT Neoplasm, benign: the fixture calls the phantom lesion benign
    expect(srText).toContain('111047'); // probability of cancer
    const clear = byStudy(files, '2.25.7003').find((f) => f.sopClassUid === SR)!;
    expect(pydicomSrTexts(clear.file).join(' ')).toMatch(/No lesion found/i);
  });

  test('`sonogate analyze` on the same files writes the same objects', async () => {
    const out = path.join(work, 'analyze');
    const r = spawnSync(process.execPath, [CLI, 'analyze', inputs.mono, inputs.clear, '--out', out, '--config', configFile], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.label).sort()).toEqual(['benign', 'normal']);
    const produced = fs.readdirSync(out).map((f) => readPart10(fs.readFileSync(path.join(out, f))).dataset);
    const atPacs = [...byStudy(await pacs.received(), '2.25.7001'), ...byStudy(await pacs.received(), '2.25.7003')];
    expect(produced.map((p) => p.SOPInstanceUID).sort()).toEqual(atPacs.map((p) => p.sopInstanceUid).sort());
    const segA = produced.find((p) => p.SOPClassUID === SEG)!;
    const segP = readPart10(fs.readFileSync(atPacs.find((p) => p.sopClassUid === SEG)!.file)).dataset;
    expect(Buffer.from(segA.PixelData[0]).equals(Buffer.from(segP.PixelData[0]))).toBe(true);
  }, 60_000);

  test('the log stays JSON lines and `sonogate send` prints one line per file, also for Implicit VR data sets', async () => {
    // dcmjs warns on the console for every Implicit VR data set ("Invalid vr type ox - using OW")
    const implicit = path.join(work, 'in', 'implicit.dcm');
    const base = path.join(work, 'in', 'implicit-src.dcm');
    fs.writeFileSync(base, phantomFile({ seed: 15, studyInstanceUid: '2.25.7006' }));
    expect((await runTool('dcmconv', ['+ti', base, implicit])).code).toBe(0);
    const before = serve!.log().length;
    const sent = await runTool(process.execPath, [CLI, 'send', implicit, '--to', `SONOGATE@127.0.0.1:${dicomPort}`, '--calling-ae', 'US_SCANNER']);
    expect(sent.code).toBe(0);
    expect(sent.stdout.trim().split('\n')).toHaveLength(1);
    expect(sent.stderr).toBe('');
    expect((await storescu([implicit], { port: dicomPort, extraArgs: ['-xi'] })).code).toBe(0); // as a scanner proposing Implicit VR only
    await eventually(async () => byStudy(await pacs.received(), '2.25.7006').length >= 3, 60_000, 'results of the Implicit VR study');
    const lines = serve!.log().slice(before).split('\n').filter((l) => l.trim());
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.filter((l) => !l.startsWith('{'))).toEqual([]);
  }, 90_000);

  test('an undecodable ultrasound file is kept and marked failed with its reason; the gateway keeps serving', async () => {
    const ds = readPart10(fs.readFileSync(inputs.mono)).dataset;
    const broken = { ...ds, SOPInstanceUID: '2.25.7005.1', StudyInstanceUID: '2.25.7005', Rows: 4000, Columns: 4000 }; // pixel data far too short
    const { writePart10 } = await import('../../src/dicom/part10');
    const f = write(path.join(work, 'in'), 'broken.dcm', writePart10(broken));
    expect((await storescu([f], { port: dicomPort })).code).toBe(0);
    const row = await eventually(() => {
      const db = new Database(path.join(dataDir, 'sonogate.db'), { readonly: true });
      try {
        return db.prepare("SELECT status, reason, message, path FROM instances WHERE sop_instance_uid = '2.25.7005.1' AND status != 'received'").get() as
          | { status: string; reason: string; message: string; path: string }
          | undefined;
      } finally {
        db.close();
      }
    }, 30_000, 'the broken instance to be processed');
    expect(row.status).toBe('failed');
    expect(row.reason).toMatch(/^decode\./);
    expect(row.message.length).toBeGreaterThan(5);
    expect(fs.existsSync(row.path)).toBe(true);
    expect((await echoscu({ port: dicomPort })).code).toBe(0);
  }, 60_000);

  test('refusals: an unknown caller, a wrong called AE and a CT image', async () => {
    const unknown = await storescu([inputs.mono], { port: dicomPort, callingAe: 'INTRUDER' });
    expect(unknown.code).not.toBe(0);
    expect(unknown.output).toMatch(/Calling AE Title Not Recognized/i);
    const wrongCalled = await storescu([inputs.mono], { port: dicomPort, calledAe: 'NOT_US' });
    expect(wrongCalled.code).not.toBe(0);
    expect(wrongCalled.output).toMatch(/Called AE Title Not Recognized/i);
    const ct = { ...readPart10(fs.readFileSync(inputs.mono)).dataset, SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', Modality: 'CT', SOPInstanceUID: '2.25.7006.1' };
    const { writePart10 } = await import('../../src/dicom/part10');
    const ctFile = write(path.join(work, 'in'), 'ct.dcm', writePart10(ct));
    const r = await storescu([ctFile], { port: dicomPort });
    expect(r.output).toMatch(/no presentation context|not supported|rejected/i);
    const db = new Database(path.join(dataDir, 'sonogate.db'), { readonly: true });
    expect(db.prepare("SELECT count(*) n FROM instances WHERE sop_instance_uid = '2.25.7006.1'").get()).toEqual({ n: 0 });
    db.close();
  }, 60_000);

  test('kill -9 between receive and send: after a restart the results arrive exactly once', async () => {
    await stopServe(serve);
    // a long quiet time, so the kill lands while the study's timer is running
    const cfg = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    cfg.study.quietSeconds = 4;
    fs.writeFileSync(configFile, JSON.stringify(cfg));
    serve = await startServe(configFile, dicomPort);
    const f = write(path.join(work, 'in'), 'restart.dcm', phantomFile({ seed: 21, studyInstanceUid: '2.25.7007' }));
    expect((await storescu([f], { port: dicomPort })).code).toBe(0);
    const workers = childPids(serve.child.pid!);
    expect(workers.length).toBeGreaterThanOrEqual(1); // the inference worker process
    await stopServe(serve, 'SIGKILL');
    // the gateway's worker processes do not outlive it
    await eventually(() => workers.every((pid) => !alive(pid)), 10_000, `worker processes ${workers} exit with the gateway`);
    expect(byStudy(await pacs.received(), '2.25.7007')).toHaveLength(0);
    serve = await startServe(configFile, dicomPort);
    await eventually(async () => byStudy(await pacs.received(), '2.25.7007').length >= 4, 60_000, 'results after restart');
    await new Promise((r) => setTimeout(r, 3000)); // nothing more may come
    const got = byStudy(await pacs.received(), '2.25.7007');
    expect(got.map((g) => g.sopClassUid).sort()).toEqual([SEG, SR, SC, KO].sort());
    expect(new Set(got.map((g) => g.sopInstanceUid)).size).toBe(4);
  }, 120_000);
});

function childPids(pid: number): number[] {
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return out.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
