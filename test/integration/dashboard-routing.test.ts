/**
 * The Routing page's API (GET/PUT /api/routing, POST /api/routing/revert) over real HTTP, in
 * front of a real gateway running the real pipeline in the inference workers (the deterministic
 * dark-lesion fixture model), DCMTK storescu as the scanner and storescp as the PACS. An admin's
 * change applies to the next study without a restart; viewers and cross-site requests are
 * refused; a bad rule is refused naming its key; every change is in the audit log, old → new.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { writePart10 } from '../../src/dicom/part10';
import { startGateway, Gateway } from '../../src/gateway';
import { AnalysisEngine, startAnalysisEngine } from '../../src/runtime';
import { Accounts } from '../../src/web/accounts';
import { startWebServer, WebServer } from '../../src/web/server';
import { DashboardClient } from '../helpers/dashboardClient';
import { silentLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { eventually, freePort, startStoreScp, StoreScpPeer, storescu } from '../helpers/peers';
import { phantomDataset } from '../helpers/phantom';

const MODEL = path.resolve(__dirname, '..', 'fixtures', 'dark-lesion-model', 'model.json');
const ADMIN_PW = 'correct horse battery';
const VIEWER_PW = 'viewer password 1';

const haveDcmtk = spawnSync('storescp', ['--version']).status === 0;
const d = haveDcmtk ? describe : describe.skip;

d('dashboard routing', () => {
  let dir: string;
  let pacs: StoreScpPeer;
  let engine: AnalysisEngine;
  let gateway: Gateway;
  let web: WebServer;
  let admin: DashboardClient;
  let viewer: DashboardClient;

  beforeAll(async () => {
    dir = tempDir('web-routing');
    pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
    const config = testConfig({
      dataDir: path.join(dir, 'data'),
      port: await freePort(),
      inference: { model: MODEL, providers: ['cpu'], workers: 1 },
      destinations: [
        { name: 'pacs', aeTitle: pacs.aeTitle, host: '127.0.0.1', port: pacs.port },
        // nobody listens there
        { name: 'archive', aeTitle: 'NOBODY', host: '127.0.0.1', port: await freePort() },
      ],
      http: { host: '127.0.0.1', port: 0 },
    });
    engine = await startAnalysisEngine(config, silentLogger());
    gateway = await startGateway(config, engine.processor, silentLogger());
    const accounts = new Accounts(gateway.store.db);
    await accounts.add('admin', ADMIN_PW, 'admin');
    await accounts.add('viewer', VIEWER_PW, 'viewer');
    web = await startWebServer({
      config,
      gateway,
      model: { name: 'dark-lesion', version: '0', provider: 'cpu', specPath: MODEL, spec: {} },
      logger: silentLogger(),
      env: {},
    });
    admin = new DashboardClient(web.url);
    expect((await admin.login('admin', ADMIN_PW)).status).toBe(200);
    viewer = new DashboardClient(web.url);
    expect((await viewer.login('viewer', VIEWER_PW)).status).toBe(200);
  });

  afterAll(async () => {
    await web?.close();
    await gateway?.close();
    await engine?.close();
    await pacs?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Sends one phantom image of a new study with this BodyPartExamined; resolves when the study is processed. */
  async function sendStudy(studyUid: string, seed: number, bodyPart: string) {
    const ds = phantomDataset({ seed, studyInstanceUid: studyUid });
    ds.BodyPartExamined = bodyPart;
    const f = writeTemp(dir, `${seed}.dcm`, writePart10(ds));
    expect((await storescu([f], { port: gateway.dicomPort })).code).toBe(0);
    await eventually(() => gateway.store.getStudy(studyUid)?.status === 'processed', 30_000, `study ${studyUid} processed`);
    return gateway.store.listInstances(studyUid)[0];
  }

  test('everyone signed in reads the routing, with the config file as the source; only admins may edit', async () => {
    const v = await viewer.get('/api/routing');
    expect(v.status).toBe(200);
    expect(v.body.canEdit).toBe(false);
    expect(v.body.analyze.bodyParts).toEqual({ value: [], file: [], source: 'file', changedBy: null, changedAt: null });
    expect(v.body.destinations.map((x: any) => [x.name, x.enabled.value, x.enabled.source])).toEqual([
      ['pacs', true, 'file'],
      ['archive', true, 'file'],
    ]);
    expect((await admin.get('/api/routing')).body.canEdit).toBe(true);
    expect((await new DashboardClient(web.url).get('/api/routing')).status).toBe(401);
  });

  test('a viewer cannot change routing (403, audited); nor can an admin without the CSRF token; a bad regex is a 400 naming the key', async () => {
    const denied = await viewer.request('PUT', '/api/routing', { body: { analyze: { bodyParts: ['BREAST'] } } });
    expect(denied.status).toBe(403);
    expect(denied.body.error).toBe('forbidden');
    expect((await viewer.post('/api/routing/revert')).status).toBe(403);
    const noCsrf = await admin.request('PUT', '/api/routing', { body: { analyze: { bodyParts: ['BREAST'] } }, csrf: false });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error).toBe('csrf');
    const bad = await admin.request('PUT', '/api/routing', { body: { analyze: { studyDescription: 'breast(' } } });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe('routing.analyze.studyDescription: not a valid regular expression');
    const unknownDest = await admin.request('PUT', '/api/routing', { body: { destinations: { nowhere: false } } });
    expect(unknownDest.status).toBe(400);
    expect(unknownDest.body.message).toContain('destinations.nowhere');
    // nothing changed
    expect((await admin.get('/api/routing')).body.analyze.bodyParts.source).toBe('file');
    const audit = (await admin.get('/api/audit?limit=20')).body.items;
    expect(audit.find((a: any) => a.action === 'routing.update' && a.outcome === 'denied')).toMatchObject({ username: 'viewer', role: 'viewer' });
    const failed = audit.filter((a: any) => a.action === 'routing.update' && a.outcome === 'failed').map((a: any) => a.detail);
    expect(failed.some((x: string) => x.includes('routing.analyze.studyDescription: not a valid regular expression'))).toBe(true);
  });

  test('an admin limits analysis to BREAST: the next THYROID instance is skipped with route.filtered; revert restores the file value', async () => {
    const put = await admin.request('PUT', '/api/routing', { body: { analyze: { bodyParts: ['BREAST'] } } });
    expect(put.status).toBe(200);
    expect(put.body.changes).toEqual({ 'routing.analyze.bodyParts': { old: [], new: ['BREAST'] } });
    expect(put.body.analyze.bodyParts).toMatchObject({ value: ['BREAST'], file: [], source: 'dashboard', changedBy: 'admin' });
    const entry = (await admin.get('/api/audit?limit=5')).body.items.find((a: any) => a.action === 'routing.update' && a.outcome === 'ok');
    expect(entry).toMatchObject({ username: 'admin', role: 'admin', target: 'routing' });
    expect(JSON.parse(entry.detail)).toEqual({ changes: { 'routing.analyze.bodyParts': { old: [], new: ['BREAST'] } } });

    // no restart: the gateway's next study uses the new rule
    const thyroid = await sendStudy('2.25.5001', 11, 'THYROID');
    expect(thyroid).toMatchObject({ status: 'skipped', reason: 'route.filtered' });
    expect(thyroid.message).toContain('"THYROID" is not one of BREAST');
    expect(gateway.store.listOutputs('2.25.5001')).toEqual([]);
    const detail = await viewer.get('/api/studies/2.25.5001');
    expect(detail.body.instances[0]).toMatchObject({ status: 'skipped', reason: 'route.filtered' });

    const revert = await admin.post('/api/routing/revert', { keys: ['routing.analyze.bodyParts'] });
    expect(revert.status).toBe(200);
    expect(revert.body.changes).toEqual({ 'routing.analyze.bodyParts': { old: ['BREAST'], new: [] } });
    expect(revert.body.analyze.bodyParts).toEqual({ value: [], file: [], source: 'file', changedBy: null, changedAt: null });
    expect((await admin.get('/api/audit?limit=5')).body.items[0]).toMatchObject({ action: 'routing.revert', outcome: 'ok', username: 'admin' });
    const again = await sendStudy('2.25.5002', 12, 'THYROID');
    expect(again.status).toBe('analysed');
  });

  test('a destination switched off gets no results of the next study; switched on again it does', async () => {
    const off = await admin.request('PUT', '/api/routing', { body: { destinations: { archive: false } } });
    expect(off.status).toBe(200);
    expect(off.body.changes).toEqual({ 'destinations.archive.enabled': { old: true, new: false } });
    await sendStudy('2.25.5003', 13, 'BREAST');
    const sends = gateway.store.listSends({ studyUid: '2.25.5003' });
    expect(sends.length).toBeGreaterThan(0);
    expect(new Set(sends.map((s) => s.destination))).toEqual(new Set(['pacs']));
    await eventually(() => gateway.store.listSends({ studyUid: '2.25.5003' }).every((s) => s.status === 'sent'), 20_000, 'sent to the PACS');

    const all = await admin.post('/api/routing/revert', {});
    expect(all.body.changes).toEqual({ 'destinations.archive.enabled': { old: false, new: true } });
    expect(all.body.destinations.find((x: any) => x.name === 'archive').enabled.source).toBe('file');
    await sendStudy('2.25.5004', 14, 'BREAST');
    expect(new Set(gateway.store.listSends({ studyUid: '2.25.5004' }).map((s) => s.destination))).toEqual(new Set(['pacs', 'archive']));
  });
});
