/**
 * Real DICOM peers for integration tests, on loopback: DCMTK storescp as a fake PACS, and the
 * storescu / dcmsend / echoscu command-line clients as scanners. Every integration test uses
 * these instead of talking to our own code with our own code.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { readHeader } from '../../src/dicom/header';

export const LOOPBACK = '127.0.0.1';

/** A TCP port nobody listens on right now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, LOOPBACK, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs = 10_000, host = LOOPBACK): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout + stderr, for assertions on DCMTK's messages */
  output: string;
}

/** Runs a command-line tool to completion; never rejects on a non-zero exit. */
export function runTool(cmd: string, args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, env: { ...process.env, TCP_NODELAY: '1' }, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), output: `${stdout}\n${stderr}` });
    });
  });
}

export interface ScuOptions {
  port: number;
  host?: string;
  /** called AE (the gateway's) */
  calledAe?: string;
  /** calling AE (the scanner's) */
  callingAe?: string;
  extraArgs?: string[];
}

function aeArgs(o: ScuOptions): string[] {
  return ['-aet', o.callingAe ?? 'US_SCANNER', '-aec', o.calledAe ?? 'SONOGATE'];
}

/** DCMTK storescu: proposes uncompressed syntaxes for the usual storage classes. `-v` makes it report statuses. */
export function storescu(files: string[], o: ScuOptions): Promise<ToolResult> {
  return runTool('storescu', ['-v', ...aeArgs(o), ...(o.extraArgs ?? []), o.host ?? LOOPBACK, String(o.port), ...files]);
}

/** DCMTK dcmsend: negotiates per file (sends compressed files as they are). */
export function dcmsend(files: string[], o: ScuOptions): Promise<ToolResult> {
  return runTool('dcmsend', ['-v', ...aeArgs(o), ...(o.extraArgs ?? []), o.host ?? LOOPBACK, String(o.port), ...files]);
}

export function echoscu(o: ScuOptions): Promise<ToolResult> {
  return runTool('echoscu', ['-v', ...aeArgs(o), ...(o.extraArgs ?? []), o.host ?? LOOPBACK, String(o.port)]);
}

export interface ReceivedFile {
  file: string;
  sopInstanceUid: string;
  sopClassUid: string;
  studyInstanceUid: string;
}

export interface StoreScpPeer {
  aeTitle: string;
  port: number;
  dir: string;
  /** every file received so far (one per C-STORE: unique file names, so duplicates show) */
  received(): Promise<ReceivedFile[]>;
  /** waits until at least n files arrived */
  waitForFiles(n: number, timeoutMs?: number): Promise<ReceivedFile[]>;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts DCMTK storescp as a PACS: all storage SOP classes DCMTK knows (US, SC, SEG, SR...), all
 * transfer syntaxes, unique file names per reception, data sets written exactly as received (+B). TCP_NODELAY=1: stock storescp waits on
 * delayed ACKs otherwise (NOTES.md).
 */
export async function startStoreScp(opts: { dir: string; aeTitle?: string; port?: number; extraArgs?: string[] }): Promise<StoreScpPeer> {
  const aeTitle = opts.aeTitle ?? 'PACS';
  const port = opts.port ?? (await freePort());
  fs.mkdirSync(opts.dir, { recursive: true });
  let log = '';
  const verbosity = process.env.SONOGATE_TEST_PEER_DEBUG ? '-d' : '-v';
  const child: ChildProcess = spawn('storescp', [verbosity, '-aet', aeTitle, '-od', opts.dir, '+xa', '+uf', '+B', ...(opts.extraArgs ?? []), String(port)], {
    env: { ...process.env, TCP_NODELAY: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (log += String(d)));
  child.stderr!.on('data', (d) => (log += String(d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([waitForPort(port), exited.then(() => Promise.reject(new Error(`storescp exited: ${log}`)))]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const received = async (): Promise<ReceivedFile[]> => {
    const out: ReceivedFile[] = [];
    for (const name of fs.readdirSync(opts.dir)) {
      const file = path.join(opts.dir, name);
      if (!fs.statSync(file).isFile()) continue;
      try {
        const h = await readHeader(file);
        out.push({ file, sopInstanceUid: h.sopInstanceUid, sopClassUid: h.sopClassUid, studyInstanceUid: h.studyInstanceUid });
      } catch {
        /* still being written */
      }
    }
    return out;
  };
  return {
    aeTitle,
    port,
    dir: opts.dir,
    received,
    async waitForFiles(n, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await received();
        if (r.length >= n) return r;
        if (Date.now() > deadline) throw new Error(`PACS got ${r.length} of ${n} files within ${timeoutMs} ms\n${log}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls until `check` returns a truthy value (or throws after timeoutMs). */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 20_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A PACS that accepts connections and then stops answering. It never reads, so it never sees our
 * FIN and never closes its side either. `held` lists the connections it took.
 */
export async function startHungPeer(port = 0): Promise<{ port: number; held: net.Socket[]; close(): Promise<void> }> {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => {
    s.pause();
    held.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(port, LOOPBACK, () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    held,
    close: async () => {
      held.forEach((s) => s.destroy());
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
