/**
 * Runs the built gateway (`node dist/cli.js serve --config FILE`) as a child process, the way an
 * administrator starts it, and waits until it answers C-ECHO.
 */
import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { echoscu, eventually } from './peers';

export const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');

export interface Serve {
  child: ChildProcess;
  /** everything the gateway printed so far */
  log: () => string;
}

export async function startServe(configFile: string, port: number, callingAe = 'US_SCANNER'): Promise<Serve> {
  let log = '';
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SONOGATE_ADMIN_PASSWORD: '' },
  });
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  await eventually(
    async () => (await echoscu({ port, callingAe })).code === 0 || (child.exitCode !== null && Promise.reject(new Error(log))),
    30_000,
    `gateway on ${port}\n${log}`,
  );
  return { child, log: () => log };
}

/** SIGTERM (a graceful stop) by default; SIGKILL simulates a crash. */
export async function stopServe(s: Serve | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill(signal);
  await exited;
}
