/** The command line's promises to an administrator: exit codes and messages that name the problem. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION, Store } from '../../src/store';
import { tempDir } from '../helpers/gatewayHarness';
import { freePort } from '../helpers/peers';
import { pydicomSrTexts } from '../helpers/dicomTools';
import { phantomFile } from '../helpers/phantom';
import { CLI } from '../helpers/serve';

const run = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });

(fs.existsSync(CLI) ? describe : describe.skip)('sonogate command line', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('cli');
  });

  test('--help lists the commands and exits 0', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    for (const c of ['serve', 'analyze', 'evaluate', 'send', 'users']) expect(r.stdout).toContain(c);
  });

  test('`npx sonogate`, as the README has an administrator type it, runs the built command line', () => {
    // npx runs the package's own bin (dist/cli.js): without the execute bit it fails with "Permission denied"
    const r = spawnSync('npx', ['--no-install', 'sonogate', '--help'], { encoding: 'utf8', cwd: path.resolve(__dirname, '..', '..') });
    expect(r.stderr).not.toMatch(/Permission denied/);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('evaluate');
  });

  test('a bad configuration exits 2 with the key and the reason', () => {
    const f = path.join(dir, 'bad.json');
    fs.writeFileSync(f, JSON.stringify({ dicom: { port: 70000 }, frobnicate: true }));
    const r = run(['serve', '--config', f]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/dicom\.port/);
    expect(r.stderr).toMatch(/unknown key "frobnicate"/);
  });

  test('a bad environment override exits 2 naming the variable', () => {
    const r = run(['serve'], { SONOGATE_DICOM_PORT: 'eleven' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/SONOGATE_DICOM_PORT/);
  });

  test('a config file that is not JSON exits 2', () => {
    const f = path.join(dir, 'broken.json');
    fs.writeFileSync(f, '{ "dicom": ');
    const r = run(['analyze', dir, '--out', path.join(dir, 'o'), '--config', f]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not valid JSON/);
  });

  test('usage errors exit 2: a missing input, a bad destination, an unknown command', () => {
    expect(run(['analyze', path.join(dir, 'nope.dcm'), '--out', dir]).status).toBe(2);
    const bad = run(['send', CLI, '--to', 'PACS@host:99999']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/AET@HOST:PORT/);
    expect(run(['frobnicate']).status).toBe(2);
    // a calling AE title that no peer could accept fails at once, not after a 30 s association timeout
    for (const ae of ['', 'THIS_IS_WAY_TOO_LONG_FOR_AE', 'A\\B']) {
      const r = run(['send', CLI, '--to', 'PACS@127.0.0.1:104', '--calling-ae', ae]);
      expect([ae, r.status]).toEqual([ae, 2]);
      expect(r.stderr).toMatch(/--calling-ae must be an AE title/);
    }
  });

  test('serve: ports that cannot be opened and a dataDir that is a file exit 2 naming the keys, without a stack trace', async () => {
    const tiny = path.resolve(__dirname, '..', 'fixtures', 'tiny-model', 'model.json');
    const port = await freePort();
    const same = path.join(dir, 'same-port.json');
    fs.writeFileSync(same, JSON.stringify({ dataDir: path.join(dir, 'data-same'), dicom: { host: '127.0.0.1', port }, http: { host: '127.0.0.1', port }, inference: { model: tiny, providers: ['cpu'] } }));
    const r = run(['serve', '--config', same]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/http\.host \/ http\.port: cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const file = path.join(dir, 'not-a-folder');
    fs.writeFileSync(file, 'x');
    const onFile = path.join(dir, 'datadir-file.json');
    fs.writeFileSync(onFile, JSON.stringify({ dataDir: file, dicom: { host: '127.0.0.1', port: await freePort() }, http: { host: '127.0.0.1', port: await freePort() }, inference: { model: tiny, providers: ['cpu'] } }));
    const d = run(['serve', '--config', onFile]);
    expect(d.status).toBe(2);
    expect(d.stderr).toMatch(/dataDir: cannot use/);
  });

  test('backup copies the database while the gateway holds it open; the copy is checked, private, and never overwrites', async () => {
    const dataDir = path.join(dir, 'backup-data');
    const store = Store.open(dataDir); // stands in for the running gateway: it holds the database open
    try {
      store.recordInstance({ sopInstanceUid: '2.25.1.1', sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2.1', studyUid: '2.25.1', seriesUid: '2.25.1.2', path: '/x.dcm', bytes: 1, callingAe: 'US', callingHost: '127.0.0.1', patientName: 'Doe^Jane' });
      const cfg = path.join(dir, 'backup.json');
      fs.writeFileSync(cfg, JSON.stringify({ dataDir }));
      const out = path.join(dir, 'backup.db');
      const r = spawnSync('/bin/sh', ['-c', `umask 000 && "${process.execPath}" "${CLI}" backup --out "${out}" --config "${cfg}"`], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ file: out, studies: 1, instances: 1, users: 0, schemaVersion: SCHEMA_VERSION });
      expect(fs.statSync(out).mode & 0o077).toBe(0);
      const copy = new Database(out, { readonly: true });
      try {
        expect(copy.prepare('SELECT patient_name AS name FROM studies').all()).toEqual([{ name: 'Doe^Jane' }]);
      } finally {
        copy.close();
      }
      const again = run(['backup', '--out', out, '--config', cfg]);
      expect([again.status, again.stderr]).toEqual([2, expect.stringMatching(/exists already/)]);
      const none = run(['backup', '--out', path.join(dir, 'none.db')], { SONOGATE_DATA_DIR: path.join(dir, 'no-data') });
      expect([none.status, none.stderr]).toEqual([2, expect.stringMatching(/no database at/)]);
    } finally {
      store.close();
    }
  });

  test('analyze writes its results (patient data) readable by the owner and group only, whatever the umask', () => {
    const input = path.join(dir, 'us.dcm');
    fs.writeFileSync(input, phantomFile({ seed: 9 }));
    const out = path.join(dir, 'perm-out');
    const r = spawnSync('/bin/sh', ['-c', `umask 000 && "${process.execPath}" "${CLI}" analyze "${input}" --out "${out}"`], {
      encoding: 'utf8',
      env: { ...process.env, SONOGATE_MODEL: path.resolve(__dirname, '..', 'fixtures', 'dark-lesion-model', 'model.json') },
    });
    expect(r.status).toBe(0);
    const files = fs.readdirSync(out).map((f) => path.join(out, f));
    expect(files.length).toBeGreaterThan(0);
    for (const f of [out, ...files]) expect([f, fs.statSync(f).mode & 0o007]).toEqual([f, 0]);
  });

  test("analyze through the inference worker with a model that reports its networks' spread: the flag reaches the SR and the key images", () => {
    const inputs = path.join(dir, 'spread-in');
    fs.mkdirSync(inputs);
    fs.writeFileSync(path.join(inputs, 'lesion.dcm'), phantomFile({ seed: 21, studyInstanceUid: '2.25.33001' }));
    fs.writeFileSync(path.join(inputs, 'clear.dcm'), phantomFile({ seed: 22, lesion: false, studyInstanceUid: '2.25.33002' }));
    const out = path.join(dir, 'spread-out');
    // the fixture reports a spread of 0.2 where it finds a dark area, 0.01 elsewhere (training/export_fixture.py)
    const r = run(['analyze', inputs, '--out', out], { SONOGATE_MODEL: path.resolve(__dirname, '..', 'fixtures', 'dark-lesion-spread-model', 'model.json') });
    expect(r.status).toBe(0);
    const studies = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const byStudy = (uid: string) => studies.find((s) => s.studyInstanceUid === uid);
    const texts = (uid: string, kind: string) => byStudy(uid).outputs.filter((o: { kind: string }) => o.kind === kind).flatMap((o: { file: string }) => pydicomSrTexts(o.file));
    expect(byStudy('2.25.33001').instances[0].keyImage.lowAgreement).toBe(true);
    expect(texts('2.25.33001', 'sr').filter((t: string) => t.startsWith('Agreement'))).toEqual([
      "Agreement of the model's networks: low (spread of their malignancy probabilities 0.200; low above 0.0667). The call is uncertain whatever its probability; read the image.",
    ]);
    expect(texts('2.25.33001', 'kos').join(' ')).toMatch(/networks disagree/);
    expect(texts('2.25.33002', 'sr').filter((t: string) => t.startsWith('Agreement'))).toEqual([
      "Agreement of the model's networks: usual (spread of their malignancy probabilities 0.010; low above 0.0667).",
    ]);
  });

  test('a model whose checksum does not match model.json refuses to start (exit 2)', () => {
    const m = path.join(dir, 'model');
    fs.mkdirSync(m);
    const fixture = path.resolve(__dirname, '..', 'fixtures', 'tiny-model');
    const spec = JSON.parse(fs.readFileSync(path.join(fixture, 'model.json'), 'utf8'));
    fs.copyFileSync(path.join(fixture, spec.file), path.join(m, spec.file));
    fs.writeFileSync(path.join(m, 'model.json'), JSON.stringify({ ...spec, sha256: '0'.repeat(64) }));
    const r = run(['analyze', CLI, '--out', path.join(dir, 'o2')], { SONOGATE_MODEL: path.join(m, 'model.json') });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/sha256/);
  });

  test('a model.json that does not describe its graph (names, size, labels) refuses to start (exit 2), naming what differs', () => {
    const fixture = path.resolve(__dirname, '..', 'fixtures', 'tiny-model');
    const spec = JSON.parse(fs.readFileSync(path.join(fixture, 'model.json'), 'utf8'));
    const variants: [string, Record<string, unknown>, RegExp][] = [
      ['name', { input: { ...spec.input, name: 'pixels' } }, /input\.name "pixels" is not an input of the graph/],
      ['output', { outputs: { ...spec.outputs, mask: { ...spec.outputs.mask, name: 'seg' } } }, /output "seg" is not an output of the graph/],
      ['size', { input: { ...spec.input, size: [spec.input.size[0] / 2, spec.input.size[1]] } }, /input\.size/],
      ['labels', { outputs: { ...spec.outputs, class: { ...spec.outputs.class, labels: [...spec.outputs.class.labels, 'other'] } } }, /not 1×4 \(4 labels\)/],
      ['spread', { outputs: { ...spec.outputs, spread: { name: 'class_spread', label: 'malignant', lowAgreementAbove: 0.07 } } }, /output "class_spread" is not an output of the graph/],
    ];
    for (const [what, change, message] of variants) {
      const m = path.join(dir, `model-${what}`);
      fs.mkdirSync(m);
      fs.copyFileSync(path.join(fixture, spec.file), path.join(m, spec.file));
      fs.writeFileSync(path.join(m, 'model.json'), JSON.stringify({ ...spec, ...change }));
      const r = run(['analyze', CLI, '--out', path.join(dir, `o-${what}`)], { SONOGATE_MODEL: path.join(m, 'model.json') });
      expect([what, r.status]).toEqual([what, 2]);
      expect(r.stderr).toMatch(message);
    }
  });
});
