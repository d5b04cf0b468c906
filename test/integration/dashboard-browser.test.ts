/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) in front of the
 * built `sonogate serve`, with DCMTK dcmsend as the scanner and DCMTK storescp as the PACS:
 * an administrator signs in, watches a study appear and finish without reloading, opens it and
 * sees the overlay and steps through the frames of the cine it sent; the PACS goes down so a send fails, comes back, the administrator presses
 * Retry and sees the results sent; changes a routing rule on the Routing page and reverts it.
 * Screenshots of the overview, the study page and the Routing page are kept
 * under test-output/ (not committed).
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { BrowserContext, chromium, Page } from 'playwright-core';
import { LOW_AGREEMENT } from '../../src/report/common';
import { tempDir, writeTemp } from '../helpers/gatewayHarness';
import { dcmsend, eventually, freePort, startStoreScp, StoreScpPeer } from '../helpers/peers';
import { phantomFile } from '../helpers/phantom';

// the functions passed to page.evaluate / waitForFunction run in the browser; this program has no DOM types
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const Event: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const CHROMIUM = '/usr/bin/chromium';
const OUT = path.join(ROOT, 'test-output');
const MODEL = ['dark-lesion-model', 'tiny-model'].map((m) => path.join(ROOT, 'test', 'fixtures', m, 'model.json')).find((f) => fs.existsSync(f))!;
const ADMIN_PW = 'browser admin password';
const SESSION_SECRET = 'browser-test-session-secret-0123456789abcdef';
const STUDY_1 = '2.25.7100001';
const STUDY_2 = '2.25.7100002';

const ready = fs.existsSync(CLI) && fs.existsSync(CHROMIUM) && spawnSync('storescp', ['--version']).status === 0;
const d = ready ? describe : describe.skip;

jest.setTimeout(240_000);

d('dashboard in a browser', () => {
  let work: string;
  let pacs: StoreScpPeer;
  let pacsPort: number;
  let serve: ChildProcess;
  let serveLog = '';
  let base: string;
  let dicomPort: number;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    work = tempDir('web-browser');
    fs.mkdirSync(OUT, { recursive: true });
    pacsPort = await freePort();
    pacs = await startStoreScp({ dir: path.join(work, 'pacs'), port: pacsPort });
    dicomPort = await freePort();
    const httpPort = await freePort();
    const configFile = path.join(work, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        dataDir: path.join(work, 'data'),
        dicom: { aeTitle: 'SONOGATE', host: '127.0.0.1', port: dicomPort },
        destinations: [{ name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: pacsPort }],
        http: { host: '127.0.0.1', port: httpPort },
        study: { quietSeconds: 1 },
        inference: { model: MODEL, providers: ['cpu'] },
        // no automatic retry within the test: the administrator's button has to do it
        send: { initialDelaySeconds: 600, maxDelaySeconds: 600, timeoutSeconds: 5 },
        housekeeping: { retrySweepSchedule: '0 0 1 1 *' },
        log: { level: 'info' },
      }),
    );
    serve = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SONOGATE_ADMIN_PASSWORD: ADMIN_PW, SONOGATE_ADMIN_USER: 'pacsadmin', SONOGATE_SESSION_SECRET: SESSION_SECRET },
    });
    serve.stdout!.on('data', (x) => (serveLog += x));
    serve.stderr!.on('data', (x) => (serveLog += x));
    base = `http://127.0.0.1:${httpPort}`;
    await eventually(
      async () => {
        if (serve.exitCode !== null) throw new Error(`sonogate serve exited ${serve.exitCode}\n${serveLog}`);
        return (await fetch(`${base}/readyz`)).status === 200;
      },
      60_000,
      'sonogate serve ready',
    );
    context = await chromium.launchPersistentContext(path.join(work, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });

  afterAll(async () => {
    await context?.close();
    if (serve && serve.exitCode === null) {
      const exited = new Promise((r) => serve.once('exit', r));
      serve.kill('SIGTERM');
      await exited;
    }
    await pacs?.stop();
    fs.writeFileSync(path.join(OUT, 'dashboard-browser-serve.log'), serveLog.replace(/Browser\^[A-Za-z]+/g, '<name>'));
  });

  const sendRows = (studyUid: string) =>
    page.evaluate(
      (uid) =>
        document.querySelector('main')!.dataset.page === 'study' && document.querySelector('.uid')?.textContent === uid
          ? [...document.querySelectorAll('tr[data-send-id]')].map((r: { dataset: { status?: string } }) => r.dataset.status)
          : null,
      studyUid,
    );

  /** Fills in the sign-in form as the first admin; resolves once a page and the live feed are up. */
  const signIn = async () => {
    await page.fill('#username-input', 'pacsadmin');
    await page.fill('#password-input', ADMIN_PW);
    await page.click('form#login button[type=submit]');
    await page.waitForSelector('main[data-page]');
    await page.waitForSelector('#live.on');
  };

  const shot = (name: string) => page.screenshot({ path: path.join(OUT, `dashboard-${name}.png`), fullPage: true });

  test('an administrator signs in and watches a cine sent with dcmsend go from received to sent, with its overlay and a preview of each frame', async () => {
    await page.goto(base);
    await page.waitForSelector('form#login');
    expect(await page.isVisible('#nav')).toBe(false);
    await shot('login');
    await signIn();
    await page.waitForSelector('main[data-page="overview"]');

    await page.goto(`${base}/#/studies`);
    await page.waitForSelector('main[data-page="studies"]');
    const f = writeTemp(work, 'study1.dcm', phantomFile({ seed: 21, frames: 3, studyInstanceUid: STUDY_1, patientName: 'Browser^Betty', patientId: 'BB-1' }));
    const sent = await dcmsend([f], { port: dicomPort });
    expect(sent.code).toBe(0);

    // live updates: the row appears and finishes without a reload
    const row = `tr[data-study-uid="${STUDY_1}"]`;
    await page.waitForSelector(row, { timeout: 30_000 });
    await page.waitForSelector(`${row}[data-status="processed"]`, { timeout: 60_000 });
    await page.waitForFunction((sel) => {
      const cell = document.querySelector(`${sel} td.sends`)?.textContent ?? '';
      return /\d+ sent/.test(cell) && !/pending|retrying|failed/.test(cell);
    }, row, { timeout: 60_000 });
    expect(await page.textContent(`${row} td.patient`)).toBe('Browser^Betty');

    await page.goto(`${base}/#/overview`);
    await page.waitForSelector(`main[data-page="overview"] ${row}`);
    expect(Number(await page.textContent('#stat-processed .value'))).toBeGreaterThanOrEqual(1);
    // what housekeeping.maxStorageGB would bound; no cap is configured here
    expect(await page.textContent('#stat-storage .value')).toMatch(/^\d+(\.\d)? (KB|MB)$/);
    expect(await page.textContent('#stat-storage .label')).toBe('storage (no cap)');
    expect(await page.textContent('#model-name')).toContain('0.0.1');
    await shot('overview');

    await page.click(`${row} a`);
    await page.waitForSelector('main[data-page="study"]');
    await page.waitForFunction(() => {
      const img = document.querySelector('img.overlay');
      return !!img && img.complete && img.naturalWidth > 100;
    });
    expect(await page.textContent('#study-status')).toBe('processed');
    expect(await page.textContent('#stage-times')).toContain('inference');
    expect((await sendRows(STUDY_1))!.every((s) => s === 'sent')).toBe(true);
    await page.evaluate(() => Promise.all([...document.images].map((i: { complete: boolean; onload: unknown; onerror: unknown }) => (i.complete ? null : new Promise((r) => (i.onload = i.onerror = r))))));
    await shot('study');
    // the cine's preview shows frame 1; the slider brings frame 3, and the choice survives a live re-render
    expect(await page.textContent('.frames .frame-number')).toBe('frame 1 / 3');
    await page.$eval('.frames .frame-slider', (el: { value: string; dispatchEvent(e: unknown): void }) => {
      el.value = '3';
      el.dispatchEvent(new Event('input'));
      el.dispatchEvent(new Event('change'));
    });
    expect(await page.textContent('.frames .frame-number')).toBe('frame 3 / 3');
    await page.waitForFunction(() => {
      const img = document.querySelector('.frames img.thumb');
      return /frame=3$/.test(img?.src ?? '') && img.complete && img.naturalWidth > 0;
    });
    await page.evaluate(() => {
      document.querySelector('.frames').dataset.stale = 'yes';
      window.dispatchEvent(new Event('hashchange'));
    });
    await page.waitForFunction(() => {
      const frames = document.querySelector('.frames');
      return !!frames && !frames.dataset.stale && frames.querySelector('.frame-number').textContent === 'frame 3 / 3';
    }, undefined, { timeout: 10_000 });
    expect((await pacs.received()).filter((x) => x.studyInstanceUid === STUDY_1).length).toBeGreaterThanOrEqual(2);
  });

  test("an image the model's networks disagree on carries the overlay's warning on the study page, and its study a marker in the list", async () => {
    const study = `main[data-page="study"]`;
    await page.goto(`${base}/#/study/${STUDY_1}`);
    await page.waitForSelector(`${study} #study-status`);
    // the fixture model has no spread output: no warning
    expect(await page.locator('.badge.disagree').count()).toBe(0);
    // a model with one (model/model.json) files the flag with the result; the fixture cannot make it,
    // so it is set in the gateway's database as a finished run with such a model leaves it
    const db = new Database(path.join(work, 'data', 'sonogate.db'));
    try {
      db.pragma('busy_timeout = 5000');
      db.prepare("UPDATE instances SET network_spread = 0.31, low_agreement = 1 WHERE study_uid = ? AND status = 'analysed'").run(STUDY_1);
    } finally {
      db.close();
    }
    await page.reload();
    await page.waitForSelector(`${study} #study-status`);
    const warning = page.locator('table .badge.disagree');
    await warning.waitFor({ state: 'visible' });
    expect(await warning.textContent()).toContain(LOW_AGREEMENT);
    expect(await warning.getAttribute('title')).toMatch(/read the image.*Spread 0\.310/);
    expect(await page.locator('figcaption .badge.disagree').isVisible()).toBe(true);
    expect(await page.textContent('#study-disagree')).toContain(`${LOW_AGREEMENT} on one image`);
    await shot('study-disagree');

    await page.goto(`${base}/#/studies`);
    const marker = page.locator(`tr[data-study-uid="${STUDY_1}"] .badge.disagree`);
    await marker.waitFor({ state: 'visible' });
    expect(await marker.getAttribute('aria-label')).toBe(`${LOW_AGREEMENT} on an image of this study`);
  });

  test('the PACS goes down, a send fails; it comes back, the administrator presses Retry and the results are sent', async () => {
    await pacs.stop();
    const f = writeTemp(work, 'study2.dcm', phantomFile({ seed: 22, studyInstanceUid: STUDY_2, patientName: 'Browser^Carol', patientId: 'BB-2' }));
    expect((await dcmsend([f], { port: dicomPort })).code).toBe(0);
    await page.goto(`${base}/#/study/${STUDY_2}`);
    await eventually(async () => {
      const s = await sendRows(STUDY_2);
      return s && s.length > 0 && s.every((x) => x === 'retrying');
    }, 60_000, 'sends failing while the PACS is down');
    await page.waitForSelector('tr[data-send-id] td.bad:not(:empty)');
    await page.goto(`${base}/#/failures`);
    await page.waitForSelector('main[data-page="failures"] tr[data-send-id]');
    await shot('failures');

    // the destination page shows the error and a working connection test once the PACS is back
    pacs = await startStoreScp({ dir: path.join(work, 'pacs'), port: pacsPort });
    await page.goto(`${base}/#/destinations`);
    await page.waitForSelector('tr[data-destination="pacs"] td.small .bad');
    await page.click('tr[data-destination="pacs"] .echo-button');
    await page.waitForFunction(() => /OK in/.test(document.querySelector('tr[data-destination="pacs"] td.echo')?.textContent ?? ''));
    await shot('destinations');

    await page.goto(`${base}/#/failures`);
    await page.waitForSelector('#retry-all');
    await page.click('#retry-all');
    await page.goto(`${base}/#/study/${STUDY_2}`);
    await eventually(async () => {
      const s = await sendRows(STUDY_2);
      return s && s.length > 0 && s.every((x) => x === 'sent');
    }, 60_000, 'sends delivered after Retry');
    const atPacs = (await pacs.received()).filter((x) => x.studyInstanceUid === STUDY_2);
    expect(atPacs.length).toBeGreaterThanOrEqual(2);

    // the audit log names who pressed the button
    await page.goto(`${base}/#/audit`);
    await page.waitForSelector('main[data-page="audit"]');
    expect(await page.textContent('main')).toContain('send.retry_all');
    await shot('audit');
    await page.goto(`${base}/#/model`);
    await page.waitForSelector('main[data-page="model"]');
    expect(await page.textContent('main')).toMatch(/dark-lesion-fixture|tiny-untrained-fixture/);
    await shot('model');
    expect(serveLog).not.toContain('Browser^');
  });

  test('the administrator limits analysis to BREAST on the Routing page, sees it marked as changed on the dashboard, and reverts it', async () => {
    await page.goto(`${base}/#/routing`);
    await page.waitForSelector('main[data-page="routing"] #routing-form');
    expect(await page.getAttribute('tr[data-key="routing.analyze.bodyParts"] .badge', 'data-source')).toBe('file');
    // the save is audited, so a live refresh follows it; hold that refresh's re-read of the routing
    // for 2 s, so the administrator starts typing while it is in flight: when it lands it must not
    // replace the form and wipe what they typed (CI once lost that race)
    let backgroundReread: Promise<void> | null = null;
    await page.route('**/api/routing', async (route) => {
      if (backgroundReread || route.request().headers()['x-sonogate-background'] !== '1') return route.continue();
      backgroundReread = new Promise((resolve) => setTimeout(resolve, 2000)).then(() => route.continue());
      await backgroundReread;
    });
    await page.fill('#routing-bodyParts', 'BREAST');
    await page.click('#routing-save');
    await page.waitForSelector('tr[data-key="routing.analyze.bodyParts"] .badge[data-source="dashboard"]');
    expect(await page.inputValue('#routing-bodyParts')).toBe('BREAST');
    await shot('routing');
    // a bad regular expression is refused with the key named, and nothing is saved
    await eventually(async () => backgroundReread !== null, 10_000, 'a live refresh after the save');
    await page.fill('#routing-studyDescription', 'breast(');
    await page.click('#routing-save');
    await page.waitForSelector('.flash.bad');
    expect(await page.textContent('.flash.bad')).toContain('routing.analyze.studyDescription');
    await backgroundReread;
    await page.waitForTimeout(500);
    expect(await page.inputValue('#routing-studyDescription')).toBe('breast(');
    await page.unroute('**/api/routing');
    // the revert is audited, so the live feed announces it (polled each second) and a live refresh
    // follows; hold the page's re-read of the routing for 2 s so that refresh lands while it is in
    // flight: the refresh skips itself (the form holds an unsaved edit) and must not swallow it
    await page.route('**/api/routing', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await route.continue();
    }, { times: 1 });
    await page.click('tr[data-key="routing.analyze.bodyParts"] button.revert');
    await page.waitForSelector('tr[data-key="routing.analyze.bodyParts"] .badge[data-source="file"]');
    expect(await page.inputValue('#routing-bodyParts')).toBe('');
    // reverting one value redraws the form, but the unsaved edit of another field is put back
    expect(await page.inputValue('#routing-studyDescription')).toBe('breast(');
  });

  test('the administrator adds a viewer on the Users page and changes their role; a removal asks first', async () => {
    await page.goto(`${base}/#/users`);
    await page.waitForSelector('main[data-page="users"] #add-user');
    await page.fill('#add-user input[name="username"]', 'radiologist');
    await page.fill('#add-user input[name="password"]', 'radiology password 1');
    await page.click('#add-user button[type="submit"]');
    await page.waitForSelector('tr[data-user="radiologist"]');
    expect(await page.inputValue('tr[data-user="radiologist"] select.user-role')).toBe('viewer');
    await page.selectOption('tr[data-user="radiologist"] select.user-role', 'admin');
    await page.waitForSelector('.flash.ok');
    await eventually(async () => (await page.inputValue('tr[data-user="radiologist"] select.user-role')) === 'admin', 5000, 'role shown as admin');
    // the signed-in admin cannot remove their own account here
    expect(await page.isDisabled('tr[data-user="pacsadmin"] button.danger')).toBe(true);
    await shot('users');
    page.once('dialog', (d) => void d.accept());
    await page.click('tr[data-user="radiologist"] button.danger');
    await page.waitForSelector('tr[data-user="radiologist"]', { state: 'detached' });
  });

  test('when the session ends on the server, the open page shows the sign-in instead of the patient list; a failed C-ECHO is shown as a failure', async () => {
    await page.goto(`${base}/#/studies`);
    await page.waitForSelector('main[data-page="studies"]');
    await page.waitForSelector('#live.on');
    // ended elsewhere (a password reset, a removal, the idle timeout): here, a sign-out over the API
    await page.evaluate(async () => {
      const s = await (await fetch('/api/session')).json();
      await fetch('/api/logout', { method: 'POST', headers: { 'X-CSRF-Token': s.csrfToken } });
    });
    await page.waitForSelector('form#login', { timeout: 15_000 });
    expect(await page.textContent('#login-error')).toContain('session ended');
    expect(await page.isVisible('#nav')).toBe(false);
    await signIn();
    // the C-ECHO test against a PACS that is not listening reads as a failure, not in green
    await page.goto(`${base}/#/destinations`);
    await page.waitForSelector('main[data-page="destinations"] .echo-button');
    await pacs.stop();
    await page.click('.echo-button');
    await page.waitForSelector('.flash.bad');
    expect(await page.textContent('.flash.bad')).toMatch(/C-ECHO to pacs failed/);
  });

  test('no worker process of the gateway inherits the admin password or the session secret', () => {
    // every process below `sonogate serve` (inference workers, the preview worker once started)
    const parentOf = (pid: string) => {
      try {
        return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1];
      } catch {
        return null;
      }
    };
    const pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
    const below = new Set([String(serve.pid)]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const p of pids) {
        const parent = parentOf(p);
        if (parent && below.has(parent) && !below.has(p)) {
          below.add(p);
          grew = true;
        }
      }
    }
    below.delete(String(serve.pid));
    expect(below.size).toBeGreaterThan(0);
    for (const p of below) {
      const environ = fs.readFileSync(`/proc/${p}/environ`, 'utf8');
      expect(environ).toContain('PATH=');
      expect(environ).not.toContain(ADMIN_PW);
      expect(environ).not.toContain(SESSION_SECRET);
    }
  });

  test('sonogate serve stops cleanly on SIGTERM while a browser holds a live-update stream open', async () => {
    await page.goto(`${base}/#/overview`);
    await page.waitForSelector('#live.on');
    const exited = new Promise<number | null>((r) => serve.once('exit', (code) => r(code)));
    const t0 = Date.now();
    serve.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(serveLog).toContain('dashboard stopped');
    expect(serveLog).toContain('gateway stopped');
  });
});
