/**
 * Sonogate beside a real PACS, as a hospital runs it: a scanner (DCMTK) stores into Orthanc;
 * Orthanc's Lua script (config/orthanc/sonogate-forward.lua, the file we ship) forwards stable
 * ultrasound to `sonogate serve` (the built CLI, a child process); Sonogate's SEG, SR and overlay
 * come back into Orthanc and are checked through Orthanc's REST API. Both peers run on free
 * loopback ports with their own configuration and storage.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { readHeader } from '../../src/dicom/header';
import { writePart10 } from '../../src/dicom/part10';
import { encapsulatedFile } from '../helpers/dicomBuild';
import { checkFile, sharedDir } from '../helpers/dicomTools';
import { tempDir } from '../helpers/gatewayHarness';
import { OrthancPeer, OrthancResource, haveOrthanc, startOrthanc } from '../helpers/orthanc';
import { dcmsend, eventually, freePort } from '../helpers/peers';
import { CLI, Serve, startServe, stopServe } from '../helpers/serve';
import { phantomDataset, phantomFile } from '../helpers/phantom';

const ROOT = path.resolve(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'test', 'fixtures', 'dark-lesion-model', 'model.json');
const LUA = path.join(ROOT, 'config', 'orthanc', 'sonogate-forward.lua');
const SNIPPET = path.join(ROOT, 'config', 'orthanc', 'orthanc-sonogate.json');
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const MPEG4 = '1.2.840.10008.1.2.4.102'; // MPEG-4 AVC/H.264 High Profile, which Sonogate does not read
/** Orthanc's StableAge in these tests (seconds) */
const STABLE_AGE = 1;


/** Orthanc's JSON configuration with comments (it accepts // and block comments), as plain JSON. */
function readOrthancJson(file: string): Record<string, any> {
  const text = fs.readFileSync(file, 'utf8');
  return JSON.parse(text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, ''));
}

const haveDcmtk = spawnSync('storescu', ['--version']).status === 0;
const d = haveDcmtk && haveOrthanc() && fs.existsSync(CLI) ? describe : describe.skip;

d('scanner → Orthanc → (Lua auto-route) → sonogate serve → Orthanc', () => {
  let work: string;
  let orthanc: OrthancPeer;
  let serve: Serve | undefined;
  let dataDir: string;
  let sonogatePort: number;
  let configFile: string;

  /** the rows of Sonogate's own database, read-only while it runs */
  function query<T>(sql: string, ...params: unknown[]): T[] {
    const db = new Database(path.join(dataDir, 'sonogate.db'), { readonly: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  }

  /** Stores files into Orthanc as the scanner would (dcmsend keeps compressed files as they are). */
  async function scannerStores(files: string[]): Promise<void> {
    const r = await dcmsend(files, { port: orthanc.dicomPort, calledAe: orthanc.aeTitle, callingAe: 'US_SCANNER' });
    expect({ code: r.code, output: r.code ? r.output : '' }).toEqual({ code: 0, output: '' });
  }

  async function studyId(studyInstanceUid: string): Promise<string> {
    return eventually(() => orthanc.findStudy(studyInstanceUid), 20_000, `study ${studyInstanceUid} in Orthanc`);
  }

  async function seriesByModality(id: string): Promise<Record<string, OrthancResource>> {
    const out: Record<string, OrthancResource> = {};
    for (const s of await orthanc.seriesOfStudy(id)) out[s.MainDicomTags.Modality] = s;
    return out;
  }

  /**
   * Waits until Orthanc calls the study stable and then a little longer: the Lua OnStableStudy
   * callback runs right when the flag flips, so whatever it forwards has started by then.
   */
  async function settled(id: string): Promise<void> {
    await eventually(async () => (await orthanc.get<OrthancResource>(`/studies/${id}`)).IsStable, 30_000, `study ${id} stable`);
    await new Promise((r) => setTimeout(r, 1500));
  }

  /** The C-STORE jobs Orthanc ran towards Sonogate: the instances (Orthanc IDs) of each. */
  async function forwardJobs(): Promise<string[][]> {
    const jobs: { Type: string; State: string; Content: { RemoteAet?: string; ParentResources?: string[] } }[] = await orthanc.get('/jobs?expand');
    return jobs.filter((j) => j.Type === 'DicomModalityStore' && j.Content.RemoteAet === 'SONOGATE').map((j) => j.Content.ParentResources ?? []);
  }

  /** Pulls every instance of the series back out of Orthanc and runs dciodvfy, dcmdump, pydicom on it. */
  async function checkSeriesFiles(series: OrthancResource[]): Promise<number> {
    let n = 0;
    for (const s of series) {
      for (const id of s.Instances ?? []) {
        const file = path.join(work, 'pulled', `${id}.dcm`);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, await orthanc.getBytes(`/instances/${id}/file`));
        const c = checkFile(file);
        expect({ series: s.MainDicomTags.Modality, errors: c.errors, dcmdump: c.dcmdumpStatus }).toEqual({ series: s.MainDicomTags.Modality, errors: [], dcmdump: 0 });
        n++;
      }
    }
    return n;
  }

  beforeAll(async () => {
    work = tempDir('orthanc-it');
    dataDir = path.join(work, 'data');
    sonogatePort = await freePort();
    // The PACS side exactly as docs/pacs-setup.md tells an administrator: the shipped Lua script
    // and the shipped snippet, with only addresses and StableAge changed for the test.
    const snippet = readOrthancJson(SNIPPET);
    orthanc = await startOrthanc({
      stableAge: STABLE_AGE,
      luaScripts: [LUA],
      modalities: {
        sonogate: { ...snippet.DicomModalities.sonogate, Host: '127.0.0.1', Port: sonogatePort },
        // a locked-down PACS: only registered modalities may store (the scanner, and Sonogate
        // through its entry's AllowStore)
        scanner: { AET: 'US_SCANNER', Host: '127.0.0.1', Port: 104, AllowStore: true },
      },
      extra: { UserMetadata: snippet.UserMetadata, SonogateForward: snippet.SonogateForward, DicomAlwaysAllowStore: false },
    });
    configFile = path.join(work, 'sonogate.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        dicom: { aeTitle: 'SONOGATE', host: '127.0.0.1', port: sonogatePort, allowedCallers: [{ aeTitle: orthanc.aeTitle, host: '127.0.0.1' }] },
        destinations: [{ name: 'orthanc', aeTitle: orthanc.aeTitle, host: '127.0.0.1', port: orthanc.dicomPort }],
        http: { host: '127.0.0.1', port: 0 },
        dataDir,
        study: { quietSeconds: 1 },
        inference: { model: MODEL, providers: ['cpu'] },
        send: { initialDelaySeconds: 0.5, maxDelaySeconds: 2, timeoutSeconds: 10 },
        log: { level: 'info' },
      }),
    );
    serve = await startServe(configFile, sonogatePort, 'ORTHANC');
    fs.mkdirSync(path.join(work, 'in'));
  }, 90_000);

  afterAll(async () => {
    await stopServe(serve);
    if (process.env.SONOGATE_TEST_PEER_DEBUG) console.log(`Orthanc log:\n${orthanc?.log()}`);
    await orthanc?.stop();
    if (work && !process.env.SONOGATE_KEEP_ORTHANC) fs.rmSync(work, { recursive: true, force: true });
  });

  const STUDY = '2.25.8101';
  let firstReceivedAt: number;

  test('a breast ultrasound study stored into Orthanc gets SEG, SR, overlay and key images in the same study, analysed once', async () => {
    const file = path.join(work, 'in', 'us1.dcm');
    fs.writeFileSync(file, phantomFile({ seed: 11, studyInstanceUid: STUDY }));
    const t0 = Date.now();
    await scannerStores([file]);
    const id = await studyId(STUDY);
    const series = await eventually(
      async () => {
        const s = await seriesByModality(id);
        return ['KO', 'OT', 'SEG', 'SR', 'US'].every((m) => s[m]?.Instances?.length) ? s : null;
      },
      60_000,
      `SEG, SR, overlay and key images in Orthanc's study\n${orthanc.log()}\n${serve!.log()}`,
    );
    const elapsed = Date.now() - t0;
    // where the time goes: Orthanc's stability wait, Sonogate's quiet timer, the job, the send back
    const [job] = (await orthanc.get<{ Type: string; CreationTime: string; CompletionTime: string }[]>('/jobs?expand')).filter((j) => j.Type === 'DicomModalityStore');
    const orthancTime = (t: string) => new Date(t.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)/, '$1-$2-$3T$4:$5:$6')).getTime(); // local time
    const [sg] = query<{ created_at: number; started_at: number; finished_at: number }>('SELECT created_at, started_at, finished_at FROM jobs WHERE study_uid = ?', STUDY);
    console.log(
      `scanner store → SEG + SR + overlay in Orthanc: ${elapsed} ms (Orthanc StableAge ${STABLE_AGE} s, Sonogate quietSeconds 1 s): ` +
        `forward started +${orthancTime(job.CreationTime) - t0} ms, forward done +${orthancTime(job.CompletionTime) - t0} ms, ` +
        `Sonogate job queued +${sg.created_at - t0} ms, analysed in ${sg.finished_at - sg.started_at} ms, results in Orthanc +${elapsed} ms`,
    );

    // no loop: the results made the study stable again, and a few StableAge periods later still
    // nothing more went to Sonogate
    await settled(id);
    await new Promise((r) => setTimeout(r, 3 * STABLE_AGE * 1000));
    await settled(id);
    const all = await orthanc.seriesOfStudy(id);
    expect(all.map((s) => s.MainDicomTags.Modality).sort()).toEqual(['KO', 'OT', 'SEG', 'SR', 'US']);
    for (const s of all) expect({ modality: s.MainDicomTags.Modality, instances: s.Instances!.length }).toEqual({ modality: s.MainDicomTags.Modality, instances: 1 });
    expect(all.filter((s) => s.MainDicomTags.Modality !== 'US').every((s) => s.MainDicomTags.Manufacturer === 'Sonogate')).toBe(true);

    const usInstance = series.US.Instances![0];
    expect(await forwardJobs()).toEqual([[usInstance]]);
    const meta = await orthanc.get<Record<string, string>>(`/instances/${usInstance}/metadata?expand`);
    expect(meta.SonogateForwarded).toMatch(/^\d{8}T\d{6}Z$/);

    expect(query('SELECT count(*) AS n FROM jobs WHERE study_uid = ?', STUDY)).toEqual([{ n: 1 }]);
    const rows = query<{ sop_instance_uid: string; calling_ae: string; status: string; received_at: number }>('SELECT * FROM instances WHERE study_uid = ?', STUDY);
    expect(rows.map((r) => [r.calling_ae, r.status])).toEqual([['ORTHANC', 'analysed']]);
    firstReceivedAt = rows[0].received_at;
    expect(query("SELECT count(*) AS n FROM events WHERE study_uid = ? AND kind = 'study.reopened'", STUDY)).toEqual([{ n: 0 }]);

    // what Orthanc holds is exactly what Sonogate made, and each object is valid
    const made = query<{ sop_instance_uid: string }>('SELECT sop_instance_uid FROM outputs WHERE study_uid = ?', STUDY).map((r) => r.sop_instance_uid).sort();
    const held = await Promise.all(all.filter((s) => s.MainDicomTags.Modality !== 'US').map(async (s) => (await orthanc.get<OrthancResource>(`/instances/${s.Instances![0]}`)).MainDicomTags.SOPInstanceUID));
    expect(held.sort()).toEqual(made);
    expect(await checkSeriesFiles(all.filter((s) => s.MainDicomTags.Modality !== 'US'))).toBe(4);
  }, 120_000);

  test('a later image in the same series is forwarded alone, and its results join the study', async () => {
    const id = await studyId(STUDY);
    const file = path.join(work, 'in', 'us2.dcm');
    fs.writeFileSync(file, phantomFile({ seed: 12, studyInstanceUid: STUDY })); // same series, new SOP Instance UID
    await scannerStores([file]);
    await eventually(
      async () => {
        const s = await seriesByModality(id);
        return ['KO', 'OT', 'SEG', 'SR', 'US'].every((m) => s[m]?.Instances?.length === 2);
      },
      60_000,
      `two results of each kind\n${orthanc.log()}`,
    );
    await settled(id);
    await new Promise((r) => setTimeout(r, 3 * STABLE_AGE * 1000));
    await settled(id);

    const series = await seriesByModality(id);
    expect(Object.keys(series).sort()).toEqual(['KO', 'OT', 'SEG', 'SR', 'US']);
    // two of each; for the key images, the first run's (one image) and this run's (both), as the
    // first had been delivered before the study grew
    for (const s of Object.values(series)) expect(s.Instances).toHaveLength(2);
    const jobs = await forwardJobs();
    expect(jobs).toHaveLength(2);
    expect(jobs.every((j) => j.length === 1)).toBe(true);
    expect(new Set(jobs.flat())).toEqual(new Set(series.US.Instances)); // each image went once, alone

    expect(query('SELECT count(*) AS n FROM jobs WHERE study_uid = ?', STUDY)).toEqual([{ n: 2 }]);
    const first = query<{ received_at: number }>('SELECT received_at FROM instances WHERE sop_instance_uid = ?', `${STUDY}.1.11`);
    expect(first).toEqual([{ received_at: firstReceivedAt }]); // the first image was not sent again
    expect(query('SELECT count(*) AS n FROM instances WHERE study_uid = ?', STUDY)).toEqual([{ n: 2 }]);
  }, 120_000);

  test('CT and a US study of another body part are not forwarded', async () => {
    const files: { file: string; study: string }[] = [];
    const ct = path.join(work, 'in', 'ct.dcm');
    fs.writeFileSync(ct, writePart10({ ...phantomDataset({ seed: 21, studyInstanceUid: '2.25.8201' }), SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', Modality: 'CT', BodyPartExamined: 'CHEST' }));
    files.push({ file: ct, study: '2.25.8201' });
    const thyroid = path.join(work, 'in', 'thyroid.dcm');
    fs.writeFileSync(thyroid, writePart10({ ...phantomDataset({ seed: 22, studyInstanceUid: '2.25.8202' }), BodyPartExamined: 'THYROID' }));
    files.push({ file: thyroid, study: '2.25.8202' });
    const shared = sharedDir();
    const ctSample = shared && path.join(shared, 'dicom-samples', 'non-us', 'CT_small.dcm');
    if (ctSample && fs.existsSync(ctSample)) files.push({ file: ctSample, study: (await readHeader(ctSample)).studyInstanceUid });
    const jobsBefore = (await forwardJobs()).length;

    await scannerStores(files.map((f) => f.file));
    for (const f of files) {
      const id = await studyId(f.study);
      await settled(id);
      expect((await orthanc.seriesOfStudy(id)).map((s) => s.MainDicomTags.Modality)).toHaveLength(1);
      for (const inst of await orthanc.get<OrthancResource[]>(`/studies/${id}/instances`)) {
        expect(await orthanc.get<Record<string, string>>(`/instances/${inst.ID}/metadata?expand`)).not.toHaveProperty('SonogateForwarded');
      }
      expect(query('SELECT count(*) AS n FROM instances WHERE study_uid = ?', f.study)).toEqual([{ n: 0 }]);
    }
    expect((await forwardJobs()).length).toBe(jobsBefore);
  }, 120_000);

  test('an MPEG-4 clip in an ultrasound study stays in Orthanc; the study\'s image is forwarded once and analysed once', async () => {
    const study = '2.25.8401';
    const image = path.join(work, 'in', 'with-clip-image.dcm');
    fs.writeFileSync(image, phantomFile({ seed: 24, studyInstanceUid: study }));
    const clip = path.join(work, 'in', 'with-clip-mpeg4.dcm');
    const clipDs = { ...phantomDataset({ seed: 25, studyInstanceUid: study }), SOPClassUID: '1.2.840.10008.5.1.4.1.1.3.1', SOPInstanceUID: `${study}.9.1`, SeriesInstanceUID: `${study}.9`, NumberOfFrames: 2 };
    fs.writeFileSync(clip, encapsulatedFile(clipDs, MPEG4, [new Uint8Array(256).fill(7)])); // not a real video: nobody decodes it
    await scannerStores([image, clip]);
    const id = await studyId(study);
    await eventually(async () => (await seriesByModality(id)).SR?.Instances?.length, 60_000, `results of the study with a clip\n${orthanc.log()}`);
    await settled(id);
    await new Promise((r) => setTimeout(r, 3 * STABLE_AGE * 1000));
    await settled(id);

    const instances = await orthanc.get<OrthancResource[]>(`/studies/${id}/instances`);
    const byUid = async (uid: string) => {
      for (const i of instances) if ((await orthanc.get<OrthancResource>(`/instances/${i.ID}`)).MainDicomTags.SOPInstanceUID === uid) return i.ID;
      throw new Error(`no instance ${uid}`);
    };
    const clipId = await byUid(clipDs.SOPInstanceUID);
    expect(await orthanc.get<Record<string, string>>(`/instances/${clipId}/metadata?expand`)).not.toHaveProperty('SonogateForwarded');
    // one forward, of the image alone, that succeeded; one analysis
    const imageId = await byUid(`${study}.1.24`);
    expect((await forwardJobs()).filter((j) => j.includes(imageId) || j.includes(clipId))).toEqual([[imageId]]);
    expect(query('SELECT count(*) AS n FROM jobs WHERE study_uid = ?', study)).toEqual([{ n: 1 }]);
    expect(query('SELECT count(*) AS n FROM instances WHERE study_uid = ?', study)).toEqual([{ n: 1 }]);
    expect(orthanc.log()).toContain(`instance ${clipId} not forwarded: transfer syntax ${MPEG4}`);
  }, 120_000);

  const vendorFile = (() => {
    const shared = sharedDir();
    const f = shared && path.join(shared, 'dicom-samples', 'us', 'examples_ybr_color.dcm');
    return f && fs.existsSync(f) ? f : null;
  })();
  (vendorFile ? test : test.skip)('a vendor JPEG Baseline cine (no body part) is forwarded as it is and its results come back', async () => {
    const h = await readHeader(vendorFile!);
    await scannerStores([vendorFile!]);
    const id = await studyId(h.studyInstanceUid);
    const t0 = Date.now();
    const series = await eventually(
      async () => {
        const s = await seriesByModality(id);
        return ['OT', 'SR'].every((m) => s[m]?.Instances?.length) ? s : null;
      },
      120_000,
      `results of the vendor cine\n${orthanc.log()}`,
    );
    console.log(`vendor cine (30 frames, JPEG Baseline) in Orthanc → results in Orthanc: ${Date.now() - t0} ms after the study appeared`);
    await settled(id);
    const rows = query<{ transfer_syntax_uid: string; status: string; frames: number }>('SELECT transfer_syntax_uid, status, frames FROM instances WHERE study_uid = ?', h.studyInstanceUid);
    expect(rows).toEqual([{ transfer_syntax_uid: JPEG_BASELINE, status: 'analysed', frames: 30 }]);
    expect(query('SELECT count(*) AS n FROM jobs WHERE study_uid = ?', h.studyInstanceUid)).toEqual([{ n: 1 }]);
    const results = Object.values(await seriesByModality(id)).filter((s) => s.MainDicomTags.Modality !== 'US');
    expect(results.length).toBeGreaterThanOrEqual(2); // SR + overlay, and a SEG when a lesion was found
    expect(series.US.Instances).toHaveLength(1);
    expect(await checkSeriesFiles(results)).toBe(results.length);
  }, 180_000);

  test('a study that arrives while Sonogate is down is forwarded once Sonogate answers again', async () => {
    await stopServe(serve);
    const down = path.join(work, 'in', 'down.dcm');
    fs.writeFileSync(down, phantomFile({ seed: 31, studyInstanceUid: '2.25.8301' }));
    await scannerStores([down]);
    const downId = await studyId('2.25.8301');
    await settled(downId);
    const failed = (await orthanc.get<{ Type: string; State: string; Content: { RemoteAet?: string } }[]>('/jobs?expand')).filter(
      (j) => j.Type === 'DicomModalityStore' && j.Content.RemoteAet === 'SONOGATE' && j.State === 'Failure',
    );
    expect(failed).toHaveLength(1);
    const [usSeries] = await orthanc.seriesOfStudy(downId);
    expect(await orthanc.get(`/instances/${usSeries.Instances![0]}/metadata?expand`)).not.toHaveProperty('SonogateForwarded');

    serve = await startServe(configFile, sonogatePort, 'ORTHANC');
    // the next stable event of any study (here a new one) sends the backlog too
    const next = path.join(work, 'in', 'next.dcm');
    fs.writeFileSync(next, phantomFile({ seed: 32, studyInstanceUid: '2.25.8302' }));
    await scannerStores([next]);
    for (const study of ['2.25.8301', '2.25.8302']) {
      const id = await studyId(study);
      await eventually(async () => {
        const s = await seriesByModality(id);
        return ['OT', 'SEG', 'SR', 'US'].every((m) => s[m]?.Instances?.length === 1);
      }, 60_000, `results of ${study}\n${orthanc.log()}`);
      await settled(id);
      expect(query('SELECT count(*) AS n FROM jobs WHERE study_uid = ?', study)).toEqual([{ n: 1 }]);
    }
  }, 120_000);
});
