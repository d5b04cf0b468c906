/**
 * An admin deletes a study while the scanner is sending it again. Whatever the interleaving, the
 * gateway keeps what the scanner was told it stored: every acknowledged instance ends up with a
 * database row and its file, no file is left without a row, and the study is processed again.
 * A delete either removes the finished study before the resend arrives, or is refused because the
 * study is receiving; it never takes the newly arrived files with it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Gateway, startGateway } from '../../src/gateway';
import { StudyActions } from '../../src/web/studyActions';
import { copyProcessor, recordingLogger, tempDir, testConfig, writeTemp } from '../helpers/gatewayHarness';
import { eventually, freePort, startStoreScp, StoreScpPeer, storescu } from '../helpers/peers';
import { phantomFile } from '../helpers/phantom';

let dir: string;
let g: Gateway;
let pacs: StoreScpPeer;
const log = recordingLogger();

beforeAll(async () => {
  dir = tempDir('delete-resend');
  pacs = await startStoreScp({ dir: path.join(dir, 'pacs') });
  const config = testConfig({
    dataDir: path.join(dir, 'data'),
    port: await freePort(),
    destinations: [{ name: 'pacs', aeTitle: 'PACS', host: '127.0.0.1', port: pacs.port }],
  });
  g = await startGateway(config, copyProcessor(), log.logger);
});
afterAll(async () => {
  await g?.close();
  await pacs?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function filesUnder(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

test('deletes racing a resend never lose an acknowledged instance nor leave a stray file', async () => {
  const study = '2.25.9101';
  const files = [1, 2, 3, 4].map((s) => writeTemp(dir, `i${s}.dcm`, phantomFile({ seed: s, studyInstanceUid: study })));
  const sops = [1, 2, 3, 4].map((s) => `${study}.1.${s}`);
  const actions = new StudyActions(g, path.join(dir, 'data'));
  const done = () => ['processed', 'failed'].includes(g.store.getStudy(study)?.status ?? '');

  expect((await storescu(files, { port: g.dicomPort })).code).toBe(0);
  await eventually(done, 20_000, 'first run processed');

  const outcomes: string[] = [];
  for (let round = 0; round < 6; round++) {
    // the resend and a stream of deletes, every few milliseconds, started together; the first
    // delete lands at a different point of the association each round
    let sending = true;
    const sent = storescu(files, { port: g.dicomPort }).finally(() => (sending = false));
    await new Promise((r) => setTimeout(r, round * 15));
    while (sending) {
      const r = await actions.delete(study);
      outcomes.push(r.ok ? 'deleted' : r.code);
      await new Promise((res) => setTimeout(res, 5));
    }
    const resend = await sent;
    // a refused instance (storescu exits non-zero) shows the gateway's warnings: the cause, not just the code
    expect({ code: resend.code, warnings: resend.code ? log.lines : [] }).toEqual({ code: 0, warnings: [] });
    // the scanner was told all four were stored: the study holds all four
    expect(g.store.listInstances(study).map((i) => i.sopInstanceUid).sort()).toEqual(sops);
    await eventually(done, 20_000, `round ${round} processed`);
    const rows = g.store.listInstances(study).map((i) => i.path).sort();
    expect(rows.every((p) => fs.existsSync(p))).toBe(true);
    expect(filesUnder(path.join(dir, 'data', 'instances', study)).sort()).toEqual(rows);
    const outputs = g.store.listOutputs(study).map((o) => o.path);
    expect(outputs.length).toBeGreaterThan(0);
    expect(outputs.every((p) => fs.existsSync(p))).toBe(true);
  }
  // the race was really run: some deletes went through before the resend arrived, some were refused
  expect(outcomes).toContain('deleted');
  expect(outcomes).toContain('conflict');
}, 180_000);
