/**
 * Where a worker thread's compiled script is: beside the caller when running from dist/, or in
 * dist/ when running from the TypeScript sources (the tests, after `npm run build`).
 */
import fs from 'node:fs';
import path from 'node:path';

/** `callerDir` is the caller's __dirname; `relative` the script's path under dist/ (e.g. "inference/worker.js"). */
export function workerFile(callerDir: string, relative: string): string {
  const here = path.join(callerDir, path.basename(relative));
  if (fs.existsSync(here)) return here;
  const built = path.resolve(__dirname, '..', 'dist', relative);
  if (fs.existsSync(built)) return built;
  throw new Error(`${relative} is not built: run \`npm run build\``);
}
