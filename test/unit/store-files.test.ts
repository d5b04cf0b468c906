/** Durable writes: temp file → fsync → rename → fsync folder, and nothing half-written left behind. */
import fs from 'node:fs';
import path from 'node:path';
import { ensureDirDurable, isOutOfSpace, moveDurable, writeFileDurable } from '../../src/store/files';
import { errno, spyFileOps } from '../helpers/fileOps';
import { tempDir } from '../helpers/gatewayHarness';

test('a durable write syncs the file before the rename and the folder after it', async () => {
  const dir = tempDir('files');
  const ops = spyFileOps();
  const target = path.join(dir, 'a', 'b', 'result.dcm');
  await writeFileDurable(target, Buffer.from('hello'), ops);
  expect(fs.readFileSync(target, 'utf8')).toBe('hello');
  expect(fs.readdirSync(path.dirname(target))).toEqual(['result.dcm']);
  const ops2 = ops.log.map((l) => l.split(':')[0]);
  // new folders are synced into their parents, then the file is written, synced, renamed, and its folder synced
  expect(ops2).toEqual(['mkdir', 'syncDir', 'mkdir', 'syncDir', 'open', 'write', 'sync', 'close', 'rename', 'syncDir']);
  expect(ops.log[8]).toMatch(/^rename:\.result\.dcm\.[0-9a-f]+\.tmp->result\.dcm$/);
  expect(ops.log[9]).toBe('syncDir:b');
});

test('a full disk fails the write, leaves the earlier file intact and no temp file', async () => {
  const dir = tempDir('files');
  const target = path.join(dir, 'result.dcm');
  fs.writeFileSync(target, 'old');
  const ops = spyFileOps((op) => (op === 'write' ? errno('ENOSPC') : null));
  const err = await writeFileDurable(target, Buffer.from('new'), ops).catch((e) => e);
  expect(isOutOfSpace(err)).toBe(true);
  expect(fs.readFileSync(target, 'utf8')).toBe('old');
  expect(fs.readdirSync(dir)).toEqual(['result.dcm']);
});

test('creating an existing folder is a no-op', async () => {
  const dir = tempDir('files');
  const ops = spyFileOps();
  await ensureDirDurable(dir, ops);
  expect(ops.log).toEqual([]);
});

test('a second caller that finds a just-created folder waits until it is synced into its parent', async () => {
  const dir = tempDir('files');
  const events: string[] = [];
  const slow = {
    ...spyFileOps(),
    async syncDir(d: string) {
      await new Promise((r) => setTimeout(r, 50));
      events.push(`synced ${path.basename(d)}`);
    },
  };
  const target = path.join(dir, 'study');
  const first = ensureDirDurable(target, slow).then(() => events.push('first done'));
  // the folder exists as soon as mkdir returns, long before its parent is synced
  await new Promise((r) => setTimeout(r, 10));
  expect(fs.existsSync(target)).toBe(true);
  await ensureDirDurable(target, slow).then(() => events.push('second done'));
  await first;
  expect(events.indexOf(`synced ${path.basename(dir)}`)).toBeLessThan(events.indexOf('second done'));
});

test('a move whose new folder is removed before the rename (a study delete cleaning up) creates it again', async () => {
  const dir = tempDir('files');
  const from = path.join(dir, 'incoming', 'x.part');
  fs.mkdirSync(path.dirname(from));
  fs.writeFileSync(from, 'instance');
  const target = path.join(dir, 'instances', 'study', 'series', 'sop.dcm');
  // the delete's rmdir of the emptied series folder lands just before the first rename
  const ops = spyFileOps((op, file, n) => {
    if (op === 'rename' && n === 0) fs.rmdirSync(path.dirname(file));
    return null;
  });
  await moveDurable(from, target, ops);
  expect(fs.readFileSync(target, 'utf8')).toBe('instance');
  expect(fs.existsSync(from)).toBe(false);
  expect(ops.log.filter((l) => l.startsWith('rename')).length).toBe(2);

  // the study folder removed while the series folder is being created in it
  fs.writeFileSync(from, 'second');
  const target2 = path.join(dir, 'instances', 'study2', 'series', 'sop.dcm');
  const ops2 = spyFileOps((op, file, n) => {
    if (op === 'mkdir' && file.endsWith(path.join('study2', 'series')) && n < 3) fs.rmdirSync(path.dirname(file));
    return null;
  });
  await moveDurable(from, target2, ops2);
  expect(fs.readFileSync(target2, 'utf8')).toBe('second');

  // a source that is really gone is still an error
  const err = await moveDurable(path.join(dir, 'incoming', 'gone.part'), path.join(dir, 'instances', 'other.dcm'), spyFileOps()).catch((e) => e);
  expect((err as NodeJS.ErrnoException).code).toBe('ENOENT');
});
