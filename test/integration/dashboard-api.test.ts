/**
 * The dashboard's JSON API over real HTTP on loopback, in front of a real gateway (DICOM
 * listener, store, sender) with the copy processor, DCMTK storescu as the scanner and DCMTK
 * storescp as the PACS. What a hospital relies on: no data without signing in, viewers cannot
 * change anything, no cross-site request gets through, guessing passwords is slowed down,
 * probes and metrics work without a session and carry no patient data.
 */
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, Gateway } from '../../src/gateway';
import { Accounts } from '../../src/web/accounts';
import { startWebServer, WebServer } from '../../src/web/server';
import { DashboardClient } from '../helpers/dashboardClient';
import { createStudyProcessor, processInstanceFile } from '../../src/pipeline/processStudy';
import type { StudyProcessor } from '../../src/types/pipeline';
import { copyProcessor, silentLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { eventually, freePort, startHungPeer, startStoreScp, StoreScpPeer, storescu } from '../helpers/peers';
import { phantomFile } from '../helpers/phantom';
import { phantomPipelineOptions, phantomPredictor } from '../helpers/phantomPredictor';

const PATIENT = 'Dashboard^Alice';
const PATIENT_ID = 'PID-7731';
const STUDY = '2.25.424242';
/** analysed by the real pipeline with a model whose networks disagree on it (the others: copy processor) */
const UNCERTAIN_STUDY = '2.25.424244';
const ADMIN_PW = 'correct horse battery';
const VIEWER_PW = 'viewer password 1';

const haveDcmtk = spawnSync('storescp', ['--version']).status === 0;
const d = haveDcmtk ? describe : describe.skip;

d('dashboard API', () => {
  let dir: string;
  let pacs: StoreScpPeer;
  let silent: Awaited<ReturnType<typeof startHungPeer>>;
  let gateway: Gateway;
  let web: WebServer;
  let base: string;

  beforeAll(async () => {
    dir = tempDir('web-api');
    pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
    silent = await startHungPeer();
    const config = testConfig({
      dataDir: path.join(dir, 'data'),
      port: await freePort(),
      destinations: [
        { name: 'pacs', aeTitle: pacs.aeTitle, host: '127.0.0.1', port: pacs.port },
        // nobody listens there: its sends keep failing
        { name: 'down', aeTitle: 'NOBODY', host: '127.0.0.1', port: await freePort() },
        // a peer that takes connections and never answers (C-ECHO test only: no results go there)
        { name: 'silent', aeTitle: 'SILENT', host: '127.0.0.1', port: silent.port },
      ],
      dicom: { allowedCallers: [{ aeTitle: 'US_SCANNER', destinations: ['pacs', 'down'] }] },
      http: { host: '127.0.0.1', port: 0, loginRateLimit: { max: 4, windowSeconds: 600 } },
    });
    // the phantom's outline, called malignant, with a spread above the model's cut (model/EXPERIMENTS.md, rule 29)
    const uncertain = createStudyProcessor((file, outDir) =>
      processInstanceFile(file, outDir, phantomPredictor(251, 333, [0], { classSpread: 0.3 }), {
        ...phantomPipelineOptions({ seg: false, sr: true, overlay: true }),
        lowAgreementAbove: 0.0667,
      }),
    );
    const copy = copyProcessor();
    const processor: StudyProcessor = (input) => (input.studyInstanceUid === UNCERTAIN_STUDY ? uncertain(input) : copy(input));
    gateway = await startGateway(config, processor, silentLogger());
    const accounts = new Accounts(gateway.store.db);
    await accounts.add('admin', ADMIN_PW, 'admin');
    await accounts.add('viewer', VIEWER_PW, 'viewer');
    web = await startWebServer({
      config,
      gateway,
      model: { name: 'copy', version: '0', provider: 'cpu', specPath: path.join(dir, 'model.json'), spec: {} },
      logger: silentLogger(),
      env: {},
      workersRecycled: () => 2,
    });
    base = web.url;
    const f = writeTemp(dir, 'study.dcm', phantomFile({ seed: 5, studyInstanceUid: STUDY, patientName: PATIENT, patientId: PATIENT_ID }));
    expect((await storescu([f], { port: gateway.dicomPort })).code).toBe(0);
    await pacs.waitForFiles(1);
    const toPacs = () => gateway.store.listSends({ studyUid: STUDY }).filter((s) => s.destination === 'pacs');
    await eventually(() => toPacs().length > 0 && toPacs().every((s) => s.status === 'sent'), 20_000, 'result sent');
  });

  afterAll(async () => {
    await web?.close();
    await gateway?.close();
    await pacs?.stop();
    await silent?.close();
  });

  test('health and readiness probes answer without a session and without patient data', async () => {
    const c = new DashboardClient(base);
    const h = await c.get('/healthz');
    expect(h.status).toBe(200);
    expect(h.body).toEqual({ status: 'ok' });
    const r = await c.get('/readyz');
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ready');
    expect(r.body.checks.database).toBe('ok');
    for (const t of [h.text, r.text]) {
      expect(t).not.toContain('Alice');
      expect(t).not.toContain(PATIENT_ID);
    }
  });

  test('the API answers 401 without a session, for reads and for actions', async () => {
    const c = new DashboardClient(base);
    for (const p of ['/api/studies', `/api/studies/${STUDY}`, '/api/overview', '/api/audit', '/api/config', '/api/events', `/api/studies/${STUDY}/outputs/x/image.png`]) {
      const r = await c.get(p);
      expect([p, r.status]).toEqual([p, 401]);
      expect(r.text).not.toContain('Alice');
    }
    expect((await c.post(`/api/studies/${STUDY}/rerun`)).status).toBe(401);
    expect((await c.post(`/api/studies/${STUDY}/delete`)).status).toBe(401);
  });

  test('a signed-in user sees the study with the patient name; the session cookie is httpOnly and SameSite=Strict', async () => {
    const c = new DashboardClient(base);
    const raw = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'viewer', password: VIEWER_PW }) });
    const cookie = raw.headers.getSetCookie().find((x) => x.startsWith('sonogate.sid='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    expect(cookie).not.toMatch(/Secure/i); // plain HTTP on loopback with secureCookie "auto"
    expect((await c.login('viewer', VIEWER_PW)).status).toBe(200);
    const list = await c.get('/api/studies');
    expect(list.status).toBe(200);
    const row = list.body.items.find((s: { studyUid: string }) => s.studyUid === STUDY);
    expect(row).toMatchObject({ patientName: PATIENT, patientId: PATIENT_ID, status: 'processed', label: 'benign' });
    expect(row.sends.sent).toBeGreaterThan(0);
    const detail = await c.get(`/api/studies/${STUDY}`);
    expect(detail.status).toBe(200);
    expect(detail.body.instances).toHaveLength(1);
    expect(detail.body.sends.filter((s: { destination: string }) => s.destination === 'pacs').every((s: { status: string }) => s.status === 'sent')).toBe(true);
    expect(detail.body.canAct).toBe(false);
    // opening a patient's study is audited, once however often the open page refreshes
    await c.get(`/api/studies/${STUDY}`);
    const views = (await c.get(`/api/audit?study=${STUDY}`)).body.items.filter((a: { action: string; username: string }) => a.action === 'study.view' && a.username === 'viewer');
    expect(views).toHaveLength(1);
    expect(views[0]).toMatchObject({ outcome: 'ok', role: 'viewer', studyUid: STUDY });
    // so is seeing a list of patients: which list, how many patients on it, once however often it refreshes
    await c.get('/api/studies');
    const lists = gateway.store.db.prepare("SELECT target, detail FROM audit_log WHERE action = 'study.list' AND username = 'viewer'").all() as { target: string; detail: string }[];
    expect(lists.filter((l) => l.target === '/studies')).toEqual([{ target: '/studies', detail: JSON.stringify({ patients: 1 }) }]);
    // the overlay renders as PNG
    const overlay = detail.body.outputs.find((o: { kind: string }) => o.kind === 'overlay');
    const png = await fetch(`${base}/api/studies/${STUDY}/outputs/${overlay.sopInstanceUid}/image.png`, { headers: { Cookie: c.cookie! } });
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await png.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');
    // a received instance previews by frame number (from 1); this one has a single frame
    const sop = detail.body.instances[0].sopInstanceUid;
    const preview = (q: string) => fetch(`${base}/api/studies/${STUDY}/instances/${sop}/image.png${q}`, { headers: { Cookie: c.cookie! } });
    const [plain, frame1, frame2] = await Promise.all(['?w=64', '?w=64&frame=1', '?w=64&frame=2'].map(preview));
    expect([plain.status, frame1.status, frame2.status]).toEqual([200, 200, 422]);
    expect(Buffer.from(await frame1.arrayBuffer()).equals(Buffer.from(await plain.arrayBuffer()))).toBe(true);
    expect((await frame2.json()).message).toMatch(/no frame 2: the instance has 1/);
    const filtered = await c.get('/api/studies?status=failed');
    expect(filtered.body.items.some((s: { studyUid: string }) => s.studyUid === STUDY)).toBe(false);
    const day = (offset: number) => {
      const t = new Date(Date.now() + offset * 86400_000);
      return `${t.getFullYear()}-${String(t.getMonth() + 1).padStart(2, '0')}-${String(t.getDate()).padStart(2, '0')}`;
    };
    const today = await c.get(`/api/studies?label=benign&from=${day(0)}&to=${day(0)}&limit=1`);
    expect([today.body.total, today.body.items.length, today.body.items[0].studyUid]).toEqual([1, 1, STUDY]);
    expect((await c.get(`/api/studies?to=${day(-1)}`)).body.total).toBe(0);
    // From / To in the browser's time zone (tz: minutes east of UTC), whatever the gateway's:
    // the day it is now at UTC+14 holds the study there, and is not today at UTC-12
    const dayAt = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString().slice(0, 10);
    expect((await c.get(`/api/studies?from=${dayAt(840)}&to=${dayAt(840)}&tz=840`)).body.total).toBe(1);
    expect((await c.get(`/api/studies?from=${dayAt(-720)}&to=${dayAt(-720)}&tz=-720`)).body.total).toBe(1);
    expect((await c.get(`/api/studies?from=${dayAt(840)}&to=${dayAt(840)}&tz=-720`)).body.total).toBe(0);
    // the overview's "today" is the browser's day too: it starts at that zone's midnight and holds the study
    for (const tz of [840, -720]) {
      const o = (await c.get(`/api/overview?tz=${tz}`)).body;
      expect(o.today.since).toBe(Date.parse(`${dayAt(tz)}T00:00:00Z`) - tz * 60_000);
      expect(o.today.studiesReceived).toBeGreaterThanOrEqual(1);
      expect(o.storage).toEqual({ bytes: gateway.store.storageBytes().total, capBytes: 0 });
      expect(o.storage.bytes).toBeGreaterThan(0);
    }
    expect((await c.get('/api/studies?label=malignant')).body.total).toBe(0);
    expect((await c.get('/api/studies?offset=1')).body.items).toEqual([]);
  });

  test("fetching a study's images directly (without its page) is audited as opening the study", async () => {
    // someone who has not opened the study page: the images alone show the patient (burned-in text, the anatomy)
    await new Accounts(gateway.store.db).add('imagesonly', 'images only password', 'viewer');
    const c = new DashboardClient(base);
    expect((await c.login('imagesonly', 'images only password')).status).toBe(200);
    const detail = gateway.store.listInstances(STUDY)[0];
    const overlay = gateway.store.listOutputs(STUDY).find((o) => o.kind === 'overlay')!;
    const views = () => gateway.store.db.prepare("SELECT study_uid AS studyUid, outcome FROM audit_log WHERE action = 'study.view' AND username = 'imagesonly'").all();
    const get = (p: string) => fetch(`${base}/api/studies/${STUDY}/${p}/image.png?w=64`, { headers: { Cookie: c.cookie! } });
    const preview = await get(`instances/${detail.sopInstanceUid}`);
    expect(preview.status).toBe(200);
    expect(views()).toEqual([{ studyUid: STUDY, outcome: 'ok' }]);
    // once per user and study per 10 minutes, like the study page
    const ov = await get(`outputs/${overlay.sopInstanceUid}`);
    expect(ov.status).toBe(200);
    expect(views()).toHaveLength(1);
    // an image of no study opens nothing
    expect((await fetch(`${base}/api/studies/2.25.1/instances/2.25.2/image.png`, { headers: { Cookie: c.cookie! } })).status).toBe(404);
    expect(gateway.store.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'study.view' AND study_uid = '2.25.1'").get()).toEqual({ n: 0 });
  });

  test("patient images are not kept in the browser's cache, like the rest of the API", async () => {
    const c = new DashboardClient(base);
    await c.login('viewer', VIEWER_PW);
    const sop = gateway.store.listInstances(STUDY)[0].sopInstanceUid;
    const overlay = gateway.store.listOutputs(STUDY).find((o) => o.kind === 'overlay')!.sopInstanceUid;
    for (const p of [`instances/${sop}`, `outputs/${overlay}`]) {
      const r = await fetch(`${base}/api/studies/${STUDY}/${p}/image.png?w=64`, { headers: { Cookie: c.cookie! } });
      expect([p, r.status, r.headers.get('content-type'), r.headers.get('cache-control')]).toEqual([p, 200, 'image/png', 'no-store']);
    }
    expect((await c.get('/api/studies')).headers.get('cache-control')).toBe('no-store');
  });

  test('C-ECHO tests of one destination run one at a time: clicks made meanwhile share its answer', async () => {
    const c = new DashboardClient(base);
    await c.login('viewer', VIEWER_PW);
    const answers = await Promise.all(Array.from({ length: 8 }, () => c.post('/api/destinations/silent/echo', {})));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
    expect(answers.every((a) => a.body.ok === false && /^send\.(timeout|network_error)/.test(a.body.error))).toBe(true);
    expect(silent.held.length).toBe(1); // one association for eight clicks
    // the next click, after the answer, tests again
    await c.post('/api/destinations/silent/echo', {});
    expect(silent.held.length).toBe(2);
  });

  test('a viewer doing an admin action gets 403, and the refusal is in the audit log', async () => {
    const c = new DashboardClient(base);
    await c.login('viewer', VIEWER_PW);
    for (const p of [`/api/studies/${STUDY}/rerun`, `/api/studies/${STUDY}/resend`, `/api/studies/${STUDY}/delete`, '/api/sends/retry']) {
      const r = await c.post(p);
      expect([p, r.status, r.body.error]).toEqual([p, 403, 'forbidden']);
    }
    expect(gateway.store.getStudy(STUDY)).toBeDefined();
    const admin = new DashboardClient(base);
    await admin.login('admin', ADMIN_PW);
    const audit = await admin.get(`/api/audit?study=${STUDY}`);
    expect(audit.body.items.some((a: { username: string; action: string; outcome: string }) => a.username === 'viewer' && a.action === 'study.delete' && a.outcome === 'denied')).toBe(true);
  });

  test('a state-changing request without the CSRF token is refused, even from an admin', async () => {
    const c = new DashboardClient(base);
    await c.login('admin', ADMIN_PW);
    const before = gateway.store.listSends({ studyUid: STUDY }).map((s) => s.generation);
    const none = await c.post(`/api/studies/${STUDY}/resend`, {}, { csrf: false });
    expect([none.status, none.body.error]).toEqual([403, 'csrf']);
    const wrong = await c.request('POST', `/api/studies/${STUDY}/resend`, { body: {}, csrf: false, headers: { 'X-CSRF-Token': 'x'.repeat(43) } });
    expect([wrong.status, wrong.body.error]).toEqual([403, 'csrf']);
    expect(gateway.store.listSends({ studyUid: STUDY }).map((s) => s.generation)).toEqual(before);
    // a form post from another site cannot even sign in: the login takes JSON only
    const form = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'username=admin&password=x' });
    expect(form.status).toBe(415);
  });

  test('an admin re-sends a study from the API; it is delivered again and the audit log says who did it', async () => {
    const c = new DashboardClient(base);
    await c.login('admin', ADMIN_PW);
    const before = (await pacs.received()).length;
    const r = await c.post(`/api/studies/${STUDY}/resend`, { destination: 'pacs' });
    expect(r.status).toBe(200);
    expect(r.body.sends).toBe(1);
    await pacs.waitForFiles(before + r.body.sends);
    const audit = await c.get('/api/audit');
    expect(audit.body.items[0]).toMatchObject({ username: 'admin', role: 'admin', action: 'study.resend', outcome: 'ok', studyUid: STUDY, target: 'pacs', ip: expect.any(String), requestId: expect.any(String) });
  });

  test('security headers: strict CSP without inline scripts, no framing, no sniffing', async () => {
    const r = await fetch(`${base}/`);
    expect(r.status).toBe(200);
    const csp = r.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.headers.get('x-powered-by')).toBeNull();
    expect(r.headers.get('x-request-id')).toBeTruthy();
    const html = await r.text();
    expect(html).not.toMatch(/<script>(?!<\/script>)/);
    // no framing, also where only X-Frame-Options is understood: pages, scripts, API answers and errors alike
    for (const p of ['/', '/app.js', '/healthz', '/api/session', '/no-such-page']) {
      const x = await fetch(base + p);
      expect([p, x.headers.get('x-frame-options'), x.headers.get('content-security-policy')]).toEqual([p, 'DENY', csp]);
    }
  });

  test('DNS rebinding: a loopback dashboard answers to its address and "localhost", not to another name', async () => {
    const port = new URL(base).port;
    const get = (pathname: string, host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: pathname, headers: { Host: host } }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        req.end();
      });
    for (const p of ['/healthz', '/metrics', '/api/session', '/']) {
      const r = await get(p, `attacker.example:${port}`);
      expect([p, r.status, JSON.parse(r.body).error]).toEqual([p, 403, 'host_not_allowed']);
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `[::1]:${port}`]) expect([p, host, (await get(p, host)).status]).not.toContainEqual(403);
    }
  });

  test('metrics: per-stage histograms, queue gauges, sends per destination; no patient data', async () => {
    const r = await fetch(`${base}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    const m = await r.text();
    expect(m).toMatch(/sonogate_stage_duration_seconds_bucket\{le="[^"]+",stage="job"\}/);
    expect(m).toMatch(/sonogate_stage_duration_seconds_count\{stage="queue_wait"\} [1-9]/);
    expect(m).toMatch(/sonogate_studies_total\{outcome="processed",label="benign",reason=""\} [1-9]/);
    expect(m).toMatch(/sonogate_instances_received_total [1-9]/);
    expect(m).toMatch(/sonogate_send_attempts_total\{destination="pacs",result="sent"\} [1-9]/);
    expect(m).toMatch(/sonogate_sends\{destination="pacs",state="failed"\} 0/);
    expect(m).toMatch(/sonogate_send_failures_total\{destination="down"\} [1-9]/);
    expect(m).toMatch(/sonogate_sends\{destination="down",state="retrying"\} [1-9]/);
    expect(m).toMatch(/sonogate_jobs\{status="queued"\} \d+/);
    expect(m).toMatch(/sonogate_studies\{status="processed"\} [1-9]/);
    expect(m).toContain('sonogate_inference_seconds_per_frame_bucket');
    expect(m).toContain('sonogate_model_info{name="copy",version="0",provider="cpu"} 1');
    expect(m).toContain('sonogate_process_cpu_seconds_total');
    // the scanner's association, counted from the listener; the pool's recycles, from the engine
    expect(m).toMatch(/^sonogate_dicom_associations_accepted_total [1-9]/m);
    expect(m).toMatch(/^sonogate_dicom_associations_rejected_total\{reason="calling_ae"\} 0$/m);
    expect(m).toMatch(/^sonogate_dicom_associations\{direction="outbound"\} \d+$/m);
    expect(m).toMatch(/^sonogate_inference_worker_recycles_total 2$/m);
    // the bytes kept by the rows' account are the sizes on disk of the files they point to (the
    // runner recorded each result's); no cap configured
    const files = gateway.store.db.prepare('SELECT path FROM instances WHERE purged_at IS NULL UNION ALL SELECT path FROM outputs').all() as { path: string }[];
    expect(files.length).toBeGreaterThan(1);
    const onDisk = files.reduce((n, f) => n + fs.statSync(f.path).size, 0);
    expect(m).toMatch(new RegExp(`^sonogate_storage_bytes ${onDisk}$`, 'm'));
    expect(m).toMatch(/^sonogate_storage_cap_bytes 0$/m);
    expect(m).toMatch(/^sonogate_storage_cap_removed_studies_total 0$/m);
    expect(m).not.toContain('US_SCANNER');
    expect(m).not.toContain('Alice');
    expect(m).not.toContain(PATIENT_ID);
  });

  test('the Failures view lists sends that keep failing; an admin discards one and it stops retrying', async () => {
    const c = new DashboardClient(base);
    await c.login('admin', ADMIN_PW);
    const f = await eventually(async () => {
      const r = await c.get('/api/failures');
      return r.body.sends.some((x: { destination: string }) => x.destination === 'down') && r.body;
    });
    const row = f.sends.find((x: { destination: string; studyUid: string }) => x.destination === 'down' && x.studyUid === STUDY);
    expect(row.lastError).toMatch(/^send\./);
    const discarded = await c.post(`/api/sends/${row.id}/discard`);
    expect(discarded.status).toBe(200);
    const after = await c.get('/api/failures');
    expect(after.body.sends.some((x: { id: number }) => x.id === row.id)).toBe(false);
    expect(gateway.store.listSends({ studyUid: STUDY }).find((x) => x.id === row.id)!.status).toBe('failed');
    const dest = await c.get('/api/destinations');
    expect(dest.body.items.find((x: { name: string }) => x.name === 'down')).toMatchObject({ configured: true, failed: 1, lastSuccessAt: null, lastError: { error: expect.stringMatching(/^send\./) } });
    expect(dest.body.items.find((x: { name: string }) => x.name === 'pacs').lastSuccessAt).toEqual(expect.any(Number));
    // the C-ECHO test button: works for the PACS, names the problem for the other
    expect((await c.post('/api/destinations/pacs/echo')).body.ok).toBe(true);
    const bad = await c.post('/api/destinations/down/echo');
    expect(bad.body.ok).toBe(false);
    expect(bad.body.error).toMatch(/^send\./);
  });

  test('an admin deletes a finished study: its rows and files go, the audit log keeps the record', async () => {
    const uid = '2.25.424243';
    const f = writeTemp(dir, 'delete-me.dcm', phantomFile({ seed: 6, studyInstanceUid: uid, patientName: 'Delete^Me' }));
    expect((await storescu([f], { port: gateway.dicomPort })).code).toBe(0);
    await eventually(() => gateway.store.getStudy(uid)?.status === 'processed', 20_000, 'study processed');
    const files = [...gateway.store.listInstances(uid).map((i) => i.path), ...gateway.store.listOutputs(uid).map((o) => o.path)];
    expect(files.every((x) => fs.existsSync(x))).toBe(true);
    const c = new DashboardClient(base);
    await c.login('admin', ADMIN_PW);
    const r = await c.post(`/api/studies/${uid}/delete`);
    expect(r.status).toBe(200);
    expect(r.body.files).toBe(files.length);
    const gone = await c.get(`/api/studies/${uid}`);
    expect(gone.status).toBe(404);
    expect(gone.body.message).toMatch(/^this study was deleted by admin on 20\d\d-.*; the audit log keeps the record$/);
    expect(files.some((x) => fs.existsSync(x))).toBe(false);
    expect(gateway.store.listSends({ studyUid: uid })).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'data', 'results', uid))).toBe(false);
    const audit = await c.get(`/api/audit?study=${uid}`);
    expect(audit.body.items[0]).toMatchObject({ username: 'admin', action: 'study.delete', outcome: 'ok' });
    expect((await c.post(`/api/studies/${uid}/delete`)).status).toBe(404);
  });

  test("an image whose networks disagree is flagged in the study's JSON and in the study list; a model without the output says null", async () => {
    const f = writeTemp(dir, 'uncertain.dcm', phantomFile({ seed: 7, studyInstanceUid: UNCERTAIN_STUDY, patientName: 'Uncertain^Una' }));
    expect((await storescu([f], { port: gateway.dicomPort })).code).toBe(0);
    await eventually(() => gateway.store.getStudy(UNCERTAIN_STUDY)?.status === 'processed', 20_000, 'study processed');
    const c = new DashboardClient(base);
    await c.login('viewer', VIEWER_PW);
    const detail = await c.get(`/api/studies/${UNCERTAIN_STUDY}`);
    expect(detail.body.instances).toEqual([expect.objectContaining({ status: 'analysed', label: 'malignant', networkSpread: expect.closeTo(0.3, 6), lowAgreement: true })]);
    const copied = await c.get(`/api/studies/${STUDY}`);
    expect(copied.body.instances).toEqual([expect.objectContaining({ status: 'analysed', networkSpread: null, lowAgreement: null })]);
    const list = await c.get('/api/studies');
    const flag = (uid: string) => list.body.items.find((s: { studyUid: string }) => s.studyUid === uid).lowAgreement;
    expect([flag(UNCERTAIN_STUDY), flag(STUDY)]).toEqual([true, false]);
  });

  test('re-run puts a finished study back in the queue', async () => {
    const c = new DashboardClient(base);
    await c.login('admin', ADMIN_PW);
    const r = await c.post(`/api/studies/${STUDY}/rerun`);
    expect(r.status).toBe(200);
    if (r.body.started) {
      await eventually(() => gateway.store.getStudy(STUDY)!.runCount >= 2, 20_000, 're-run done');
    } else {
      // the gateway has no runner hook yet: the job waits for the runner's next wake-up
      expect(gateway.store.getStudy(STUDY)!.status).toBe('queued');
      expect(gateway.store.listJobs(STUDY).some((j) => j.status === 'queued')).toBe(true);
      expect((await c.post(`/api/studies/${STUDY}/rerun`)).status).toBe(409);
    }
  });

  test('a session ends after the idle time, even while the open page keeps refreshing itself', async () => {
    const config = testConfig({ dataDir: path.join(dir, 'data'), port: 1, http: { host: '127.0.0.1', port: 0, sessionIdleMinutes: 0.02 } });
    const short = await startWebServer({ config, gateway, model: { name: 'copy', version: '0', provider: 'cpu', specPath: path.join(dir, 'model.json'), spec: {} }, logger: silentLogger(), env: {} });
    try {
      const c = new DashboardClient(short.url);
      expect((await c.login('viewer', VIEWER_PW)).status).toBe(200);
      // the user keeps working: the session lives on past the idle time
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 500));
        expect((await c.get('/api/overview')).status).toBe(200);
      }
      // only live-update refreshes: the session ends
      let last = 200;
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 500));
        last = (await c.request('GET', '/api/overview', { headers: { 'X-Sonogate-Background': '1' } })).status;
      }
      expect(last).toBe(401);
      expect((await c.get('/api/overview')).status).toBe(401);
    } finally {
      await short.close();
    }
  });

  test('an admin manages accounts from the dashboard; a viewer cannot; everyone changes their own password', async () => {
    const admin = new DashboardClient(base);
    expect((await admin.login('admin', ADMIN_PW)).status).toBe(200);
    const viewer = new DashboardClient(base);
    expect((await viewer.login('viewer', VIEWER_PW)).status).toBe(200);

    // a viewer may not list or add users (403, audited)
    expect((await viewer.get('/api/users')).status).toBe(403);
    expect((await viewer.post('/api/users', { username: 'mallory', password: 'long password 123', role: 'admin' })).status).toBe(403);

    const added = await admin.post('/api/users', { username: 'nurse', password: 'nurse password 1', role: 'viewer' });
    expect(added.status).toBe(200);
    expect(added.body.items.map((u: { username: string }) => u.username)).toContain('nurse');
    expect(JSON.stringify(added.body)).not.toMatch(/nurse password|\$2[aby]\$/);
    expect((await admin.post('/api/users', { username: 'short', password: 'short', role: 'viewer' })).body.message).toMatch(/at least 10 characters/);
    expect((await admin.post('/api/users', { username: 'nurse', password: 'nurse password 1', role: 'viewer' })).body.message).toMatch(/exists already/);

    const nurse = new DashboardClient(base);
    expect((await nurse.login('nurse', 'nurse password 1')).status).toBe(200);
    expect((await admin.post('/api/users/nurse/role', { role: 'admin' })).status).toBe(200);
    // a reset by the admin ends the nurse's session; the new password works
    expect((await admin.post('/api/users/nurse/password', { password: 'reset password 2' })).status).toBe(200);
    expect((await nurse.get('/api/overview')).status).toBe(401);
    expect((await nurse.login('nurse', 'reset password 2')).status).toBe(200);

    // own password: the current one is checked; the change ends the session
    expect((await nurse.post('/api/session/password', { current: 'wrong one!!', password: 'mine and mine 3' })).status).toBe(403);
    const own = await nurse.post('/api/session/password', { current: 'reset password 2', password: 'mine and mine 3' });
    expect(own.status).toBe(200);
    expect(own.body.items).toBeUndefined();
    expect((await nurse.get('/api/overview')).status).toBe(401);
    expect((await nurse.login('nurse', 'mine and mine 3')).status).toBe(200);

    // nobody removes themselves (user names are case-insensitive); the last admin stays
    expect((await admin.post('/api/users/admin/delete')).body.message).toMatch(/own account/);
    expect((await admin.post('/api/users/ADMIN/delete')).body.message).toMatch(/own account/);
    expect((await admin.get('/api/overview')).status).toBe(200);
    expect((await admin.post('/api/users/nurse/delete')).status).toBe(200);
    expect((await nurse.get('/api/overview')).status).toBe(401);
    expect((await admin.post('/api/users/admin/role', { role: 'viewer' })).body.message).toMatch(/last admin/);

    const actions = (await admin.get('/api/audit?limit=100')).body.items
      .filter((a: { action: string }) => a.action.startsWith('user.'))
      .map((a: { action: string; outcome: string; target: string }) => `${a.action} ${a.outcome} ${a.target}`);
    expect(actions).toEqual(
      expect.arrayContaining(['user.add denied null', 'user.add ok nurse', 'user.role ok nurse', 'user.password ok nurse', 'user.own_password denied nurse', 'user.own_password ok nurse', 'user.remove ok nurse', 'user.remove failed admin']),
    );
    expect(JSON.stringify((await admin.get('/api/audit?limit=100')).body)).not.toMatch(/password [0-9]|mine and mine/);
  });

  test('a live-update stream ends when its session does (here: sign-out)', async () => {
    const c = new DashboardClient(base);
    expect((await c.login('viewer', VIEWER_PW)).status).toBe(200);
    const res = await fetch(`${base}/api/events`, { headers: { Cookie: c.cookie! } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('retry:');
    const cookie = c.cookie!;
    expect((await c.post('/api/logout')).status).toBe(204);
    // the sign-out is itself a change (audit entry): the feed checks the session before telling this stream
    const ended = (async () => {
      let seen = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return seen;
        seen += new TextDecoder().decode(value);
      }
    })();
    const seen = await Promise.race([ended, new Promise<string>((_, rej) => setTimeout(() => rej(new Error('the stream is still open 10 s after sign-out')), 10_000))]);
    expect(seen).not.toContain('event: change');
    const again = await fetch(`${base}/api/events`, { headers: { Cookie: cookie } });
    expect(again.status).toBe(401);
  });

  test('proving the current password is rate limited per user, like sign-ins', async () => {
    const admin = new DashboardClient(base);
    await admin.login('admin', ADMIN_PW);
    expect((await admin.post('/api/users', { username: 'guesser', password: 'guesser password 1', role: 'viewer' })).status).toBe(200);
    const g = new DashboardClient(base);
    expect((await g.login('guesser', 'guesser password 1')).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await g.post('/api/session/password', { current: `guess number ${i}`, password: 'taken over 1234' })).status);
    // max 4 failures per window in this config
    expect(statuses.slice(0, 4)).toEqual([403, 403, 403, 403]);
    expect(statuses.slice(4)).toEqual([429, 429]);
    // even the right one waits for the window now; the password is unchanged
    expect((await g.post('/api/session/password', { current: 'guesser password 1', password: 'taken over 1234' })).status).toBe(429);
    expect((await new DashboardClient(base).login('guesser', 'guesser password 1')).status).toBe(200);
    expect((await admin.post('/api/users/guesser/delete')).status).toBe(200);
  });

  test('failed sign-ins are rate limited per address (429), and audited without what was typed as a user name', async () => {
    const c = new DashboardClient(base);
    const statuses: number[] = [];
    // someone types their password into the user name field first
    for (let i = 0; i < 6; i++) statuses.push((await c.login(i === 0 ? 'My-Secret-Pass-2026' : 'admin', `wrong password ${i}`)).status);
    // max 4 failures per window (the refused form post above was one of them)
    const first429 = statuses.indexOf(429);
    expect(statuses[0]).toBe(401);
    expect(first429).toBeGreaterThan(0);
    expect(first429).toBeLessThanOrEqual(4);
    expect(statuses.slice(first429).every((x) => x === 429)).toBe(true);
    // even the right password waits for the window to pass
    expect((await c.login('admin', ADMIN_PW)).status).toBe(429);
    const rows = gateway.store.db.prepare("SELECT username, outcome, detail FROM audit_log WHERE action = 'login' AND username IS NOT 'viewer' ORDER BY id").all() as { username: string | null; outcome: string; detail: string }[];
    const denied = rows.filter((x) => x.outcome === 'denied').map((x) => `${x.username} ${JSON.parse(x.detail).why}`);
    expect(denied).toContain('null unknown user name');
    expect(denied).toContain('admin wrong password');
    expect(JSON.stringify(gateway.store.db.prepare('SELECT * FROM audit_log').all())).not.toContain('My-Secret-Pass-2026');
    // however many requests the limit refuses, the audit log gets one entry per address and window
    expect(statuses.filter((x) => x === 429).length).toBeGreaterThanOrEqual(2);
    expect(denied.filter((x) => x.endsWith('rate limited'))).toEqual(['null rate limited']);
    expect(fs.existsSync(path.join(dir, 'data', 'sonogate.db'))).toBe(true);
  });
});
