/**
 * Removing a deleted study's files (a dashboard delete, result retention). The rows go first, in
 * one transaction (Store.deleteStudyRows); this runs right after the commit. A crash in between
 * leaves files that no row points to, which the orphan sweeps of housekeeping remove once they
 * are a day old; it never leaves a row pointing to a file that is gone.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** dataDir/results/.deleted-<study>-<ms>: a deleted study's results folder, moved aside before its files go. */
export const DELETED_RESULTS_PREFIX = '.deleted-';

/**
 * Deletes `paths` (the files the study's rows pointed to; only those under dataDir), the study's
 * results folder, and its emptied received-image folders. Must be called in the same tick as the
 * rows' deletion committed: the results folder is moved aside before the first await, so a resend
 * that recreates the study and starts a run-1 can never write into the folder being removed.
 */
export async function removeStudyFiles(dataDir: string, studyUid: string, paths: string[]): Promise<{ files: number; bytes: number }> {
  const root = path.resolve(dataDir);
  // results/<study>/run-<n> (runner.ts) is written only by a running job, and the study had none
  const results = path.join(root, 'results', studyUid);
  const trash = path.join(root, 'results', `${DELETED_RESULTS_PREFIX}${studyUid}-${Date.now()}`);
  let moved = true;
  try {
    fs.renameSync(results, trash);
  } catch {
    moved = false; // no results yet
  }
  let files = 0;
  let bytes = 0;
  for (const p of paths) {
    let f = path.resolve(p);
    if (!f.startsWith(root + path.sep)) continue;
    if (moved && f.startsWith(results + path.sep)) f = trash + f.slice(results.length);
    try {
      const size = (await fsp.stat(f)).size;
      await fsp.unlink(f);
      files++;
      bytes += size;
    } catch {
      /* already gone */
    }
  }
  if (moved) await fsp.rm(trash, { recursive: true, force: true });
  // instances/<study>/<series>/ (receive.ts): only emptied folders go, in case an instance of
  // the same study is arriving right now
  const studyDir = path.join(root, 'instances', studyUid);
  for (const series of await fsp.readdir(studyDir).catch(() => [] as string[])) await fsp.rmdir(path.join(studyDir, series)).catch(() => undefined);
  await fsp.rmdir(studyDir).catch(() => undefined);
  return { files, bytes };
}
