/**
 * Starting and ending the gateway's worker processes (the inference pool, the preview renderer).
 *
 * They are child processes rather than worker threads: a native abort inside a thread (onnxruntime,
 * sharp, a codec) takes the whole gateway down with it, and a thread ended while a native call is
 * pending in it aborts the process too (node-addon-api: "terminate called after throwing an
 * instance of 'Napi::Error'"). A child process can be killed at any moment and nothing outside it
 * is hurt; it exits by itself when the gateway goes away (its IPC channel closes).
 */
import { ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * A worker's compiled script: `relative` is its path under dist/ (e.g. "inference/worker.js").
 * From dist/ it lies beside this module's tree; from the TypeScript sources (the tests) the built
 * one in dist/ is used (`npm test` builds first).
 */
function workerScript(relative: string): string {
  for (const root of [__dirname, path.resolve(__dirname, '..', 'dist')]) {
    const file = path.join(root, relative);
    if (fs.existsSync(file)) return file;
  }
  throw new Error(`worker ${relative} is not built: run \`npm run build\``);
}

/** Starts a worker process; `env` is added to the gateway's environment. */
export function spawnWorker(relative: string, env: Record<string, string> = {}): ChildProcess {
  const child = fork(workerScript(relative), [], {
    // advanced serialization: typed arrays and buffers cross as binary, not as JSON
    serialization: 'advanced',
    env: { ...process.env, ...env },
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // a failed send to a worker that just died is reported by its 'exit'; keep it from throwing
  child.on('error', () => undefined);
  return child;
}

/** Ends a worker process at once (SIGKILL) and resolves when it is gone. */
export function killWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** Lets the gateway exit while an idle worker is still running (or not, while one is busy). */
export function holdProcess(child: ChildProcess, hold: boolean): void {
  const channel = child.channel as { ref(): void; unref(): void } | undefined | null;
  if (hold) {
    child.ref();
    channel?.ref();
  } else {
    child.unref();
    channel?.unref();
  }
}

/** In a worker: the gateway's end of the IPC channel (throws when run on its own). */
export function parentChannel(): (message: unknown) => void {
  const send = process.send?.bind(process);
  if (!send) throw new Error('this worker runs as a child of the gateway, not on its own');
  process.on('disconnect', () => process.exit(0));
  return (m) => void send(m);
}
