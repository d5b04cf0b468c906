/**
 * Durable file writes. Nothing acknowledged with a success status may be lost (SPEC), so a file
 * reaches its final name only through: temp file in the target folder → fsync(file) → rename →
 * fsync(folder). POSIX makes a rename durable only once its directory has been synced, and a
 * crash before the rename leaves a temp file, never a half-written file under the final name.
 *
 * The low-level operations are behind `FileOps` so that tests can simulate a full disk (ENOSPC),
 * which cannot be produced on demand on a real filesystem here.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** An open file being written. */
export interface WritableFile {
  /** writes all of `data` (loops over partial writes) */
  write(data: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface FileOps {
  /** creates a new file for writing; fails if it exists */
  openForWrite(file: string): Promise<WritableFile>;
  rename(from: string, to: string): Promise<void>;
  /** fsync of a directory, so that entries created, renamed or removed in it survive a crash */
  syncDir(dir: string): Promise<void>;
  mkdir(dir: string): Promise<void>;
  unlink(file: string): Promise<void>;
}

export const nodeFileOps: FileOps = {
  async openForWrite(file) {
    const fh = await fsp.open(file, 'wx', 0o640);
    return {
      async write(data) {
        let off = 0;
        while (off < data.byteLength) {
          const { bytesWritten } = await fh.write(data, off, data.byteLength - off);
          off += bytesWritten;
        }
      },
      sync: () => fh.sync(),
      close: () => fh.close(),
    };
  },
  rename: (from, to) => fsp.rename(from, to),
  async syncDir(dir) {
    const fh = await fsp.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async mkdir(dir) {
    await fsp.mkdir(dir);
  },
  unlink: (file) => fsp.unlink(file),
};

/** A temp name beside `target` (same folder, hence same filesystem: the rename is atomic). */
export function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${crypto.randomBytes(6).toString('hex')}.tmp`);
}

/**
 * mkdir -p that also syncs each parent it adds an entry to, so a new study folder cannot vanish
 * in a crash while the file inside it (already acknowledged) survives in lost+found.
 */
export function ensureDirDurable(dir: string, ops: FileOps = nodeFileOps): Promise<void> {
  // One at a time: an association that finds a folder another one has just created must not
  // acknowledge its instance before that folder's entry is synced into its parent.
  const run = dirLock.then(() => createDirs(dir, ops));
  dirLock = run.catch(() => undefined);
  return run;
}

let dirLock: Promise<unknown> = Promise.resolve();

async function createDirs(dir: string, ops: FileOps): Promise<void> {
  const missing: string[] = [];
  let d = path.resolve(dir);
  while (!fs.existsSync(d)) {
    missing.unshift(d);
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  for (const m of missing) {
    try {
      await ops.mkdir(m);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    await ops.syncDir(path.dirname(m));
  }
}

/** Removes a file, ignoring "already gone"; used for cleanup where a failure must not mask the first error. */
export async function removeQuietly(file: string, ops: FileOps = nodeFileOps): Promise<void> {
  try {
    await ops.unlink(file);
  } catch {
    /* nothing to clean */
  }
}

/** Writes `data` to `target` durably (temp → fsync → rename → fsync folder). */
export async function writeFileDurable(target: string, data: Uint8Array, ops: FileOps = nodeFileOps): Promise<void> {
  await ensureDirDurable(path.dirname(target), ops);
  const tmp = tempPathFor(target);
  let handle: WritableFile | undefined;
  try {
    handle = await ops.openForWrite(tmp);
    await handle.write(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await ops.rename(tmp, target);
    await ops.syncDir(path.dirname(target));
  } catch (e) {
    if (handle) await handle.close().catch(() => undefined);
    await removeQuietly(tmp, ops);
    throw e;
  }
}

/**
 * Moves an already synced file to `target` (replacing what is there) and syncs both folders.
 * Both paths must be on the same filesystem (they are: everything lives under dataDir).
 */
export async function moveDurable(from: string, target: string, ops: FileOps = nodeFileOps): Promise<void> {
  // A study delete removes the study's emptied folders (studyActions.ts) and may do so while they
  // are being created or between the mkdir and the rename here: either then fails with ENOENT while
  // `from` is still there. Create the folders again rather than refuse an instance (A700) for it.
  for (let attempt = 1; ; attempt++) {
    try {
      await ensureDirDurable(path.dirname(target), ops);
      await ops.rename(from, target);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 3 || !fs.existsSync(from)) throw e;
    }
  }
  await ops.syncDir(path.dirname(target));
  if (path.dirname(from) !== path.dirname(target)) await ops.syncDir(path.dirname(from));
}

/** Errors that mean "the disk cannot take it": answered with Out of Resources (A700), not a crash. */
export function isOutOfSpace(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
}
