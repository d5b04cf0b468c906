/**
 * FileOps for tests: the real operations, logged in order, with optional injected failures
 * (ENOSPC cannot be produced on demand on a real filesystem here, and no tmpfs is available).
 */
import path from 'node:path';
import { FileOps, nodeFileOps } from '../../src/store/files';

export type OpName = 'open' | 'write' | 'sync' | 'close' | 'rename' | 'syncDir' | 'mkdir' | 'unlink';

export interface SpyFileOps extends FileOps {
  log: string[];
}

export function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

/**
 * `fail(op, file, n)` returns an error to throw instead of doing op (n = how many times this op ran
 * before, across files), or null to do it.
 */
export function spyFileOps(fail: (op: OpName, file: string, n: number) => Error | null = () => null): SpyFileOps {
  const log: string[] = [];
  const counts: Record<string, number> = {};
  const step = (op: OpName, file: string, detail = path.basename(file)) => {
    const n = counts[op] ?? 0;
    counts[op] = n + 1;
    const e = fail(op, file, n);
    log.push(`${op}${e ? '!' : ''}:${detail}`);
    if (e) throw e;
  };
  return {
    log,
    async openForWrite(file) {
      step('open', file);
      const h = await nodeFileOps.openForWrite(file);
      return {
        async write(data) {
          step('write', file);
          await h.write(data);
        },
        async sync() {
          step('sync', file);
          await h.sync();
        },
        close: async () => {
          log.push(`close:${path.basename(file)}`);
          await h.close();
        },
      };
    },
    async rename(from, to) {
      step('rename', to, `${path.basename(from)}->${path.basename(to)}`);
      await nodeFileOps.rename(from, to);
    },
    async syncDir(dir) {
      step('syncDir', dir);
      await nodeFileOps.syncDir(dir);
    },
    async mkdir(dir) {
      step('mkdir', dir);
      await nodeFileOps.mkdir(dir);
    },
    async unlink(file) {
      step('unlink', file);
      await nodeFileOps.unlink(file);
    },
  };
}
