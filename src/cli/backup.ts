/**
 * `sonogate backup --out FILE`: a consistent copy of the gateway's database (studies, instances,
 * jobs, sends, users, audit log), taken with SQLite's online backup while the gateway runs. The
 * copy is checked (integrity_check) and readable by its owner only: it holds patient names.
 * The received images and results are files under dataDir: copy those with the file system.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Config } from '../config/schema';
import { DB_FILE_NAME } from '../store/store';

export class BackupError extends Error {}

export interface BackupSummary {
  file: string;
  bytes: number;
  schemaVersion: number;
  studies: number;
  instances: number;
  users: number;
}

export async function runBackup(config: Config, out: string): Promise<BackupSummary> {
  const source = path.join(path.resolve(config.dataDir), DB_FILE_NAME);
  if (!fs.existsSync(source)) throw new BackupError(`no database at ${source} (dataDir ${config.dataDir}): nothing to back up`);
  const target = path.resolve(out);
  if (fs.existsSync(target)) throw new BackupError(`${target} exists already: choose a new file (a backup never overwrites)`);
  if (!fs.existsSync(path.dirname(target))) throw new BackupError(`folder ${path.dirname(target)} does not exist`);
  // the copy is written to a temporary name and renamed when complete and checked
  const partial = `${target}.partial-${process.pid}`;
  const db = new Database(source, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 10000'); // the gateway may be writing: wait for it rather than fail
    fs.closeSync(fs.openSync(partial, 'wx', 0o600));
    await db.backup(partial);
  } catch (e) {
    fs.rmSync(partial, { force: true });
    throw e;
  } finally {
    db.close();
  }
  const copy = new Database(partial, { readonly: true });
  try {
    const check = copy.pragma('integrity_check', { simple: true });
    if (check !== 'ok') throw new BackupError(`the copy failed SQLite's integrity check: ${check}`);
    const count = (table: string) => (copy.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    const summary: BackupSummary = {
      file: target,
      bytes: fs.statSync(partial).size,
      schemaVersion: (copy.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v,
      studies: count('studies'),
      instances: count('instances'),
      users: count('users'),
    };
    copy.close();
    fs.chmodSync(partial, 0o600);
    fs.renameSync(partial, target);
    return summary;
  } catch (e) {
    if (copy.open) copy.close();
    fs.rmSync(partial, { force: true });
    throw e;
  }
}
