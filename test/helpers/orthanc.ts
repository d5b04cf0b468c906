/**
 * A real PACS for integration tests: Debian's Orthanc (`/usr/sbin/Orthanc`) as a child process on
 * free loopback ports, with its own configuration, storage and index in a temp folder, and a small
 * REST client on Node's fetch. Orthanc 1.10 binds 0.0.0.0 whatever we ask (NOTES.md);
 * RemoteAccessAllowed: false keeps its HTTP API to loopback callers.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, LOOPBACK, waitForPort } from './peers';

export const ORTHANC_BINARY = process.env.SONOGATE_ORTHANC ?? '/usr/sbin/Orthanc';

/** Whether Orthanc is installed and built with Lua (the Debian package is). */
export function haveOrthanc(): boolean {
  const r = spawnSync(ORTHANC_BINARY, ['--version'], { encoding: 'utf8' });
  return r.status === 0 && /Orthanc/.test(r.stdout ?? '');
}

export interface OrthancModality {
  AET: string;
  Host: string;
  Port: number;
  [key: string]: unknown;
}

export interface OrthancOptions {
  aeTitle?: string;
  /** seconds without a new instance before a study/series is "stable" (Lua OnStable* events) */
  stableAge?: number;
  /** absolute paths of Lua scripts to load */
  luaScripts?: string[];
  /** DicomModalities: name → address */
  modalities?: Record<string, OrthancModality>;
  /** further top-level configuration keys (they win over the defaults here) */
  extra?: Record<string, unknown>;
}

/** Summary of a study, series or instance as GET /studies/{id} etc. return it. */
export interface OrthancResource {
  ID: string;
  MainDicomTags: Record<string, string>;
  ParentStudy?: string;
  ParentSeries?: string;
  Instances?: string[];
  Series?: string[];
  IsStable?: boolean;
  [key: string]: unknown;
}

export interface OrthancPeer {
  aeTitle: string;
  dicomPort: number;
  httpPort: number;
  url: string;
  /** the temp folder holding config.json, the database and the log */
  dir: string;
  get<T = any>(uri: string): Promise<T>;
  /** raw body, e.g. GET /instances/{id}/file */
  getBytes(uri: string): Promise<Buffer>;
  post<T = any>(uri: string, body: unknown): Promise<T>;
  put(uri: string, body: string): Promise<void>;
  delete(uri: string): Promise<void>;
  /** Orthanc's ID of a study from its Study Instance UID, or null */
  findStudy(studyInstanceUid: string): Promise<string | null>;
  /** the study's series with their main tags */
  seriesOfStudy(studyId: string): Promise<OrthancResource[]>;
  /** Orthanc's log so far (its own output and our Lua prints) */
  log(): string;
  /** stops Orthanc and removes its folder (kept when SONOGATE_KEEP_ORTHANC is set) */
  stop(): Promise<void>;
}

export class OrthancHttpError extends Error {
  constructor(
    readonly status: number,
    readonly uri: string,
    readonly body: string,
  ) {
    super(`Orthanc ${uri}: HTTP ${status} ${body.slice(0, 300)}`);
  }
}

/** Starts Orthanc and resolves once its REST API answers. */
export async function startOrthanc(opts: OrthancOptions = {}): Promise<OrthancPeer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sonogate-orthanc-'));
  const aeTitle = opts.aeTitle ?? 'ORTHANC';
  const httpPort = await freePort();
  let dicomPort = await freePort();
  while (dicomPort === httpPort) dicomPort = await freePort();
  const db = path.join(dir, 'db');
  const config = {
    Name: `sonogate-test-${path.basename(dir)}`,
    StorageDirectory: db,
    IndexDirectory: db,
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: aeTitle,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    HttpServerEnabled: true,
    DicomServerEnabled: true,
    // no plugins, no Orthanc Explorer 2, no WebDAV: the test needs the core only
    Plugins: [],
    WebDavEnabled: false,
    StableAge: opts.stableAge ?? 1,
    LuaScripts: opts.luaScripts ?? [],
    DicomModalities: opts.modalities ?? {},
    // SaveJobs false: a leftover job from another run can never replay
    SaveJobs: false,
    JobsHistorySize: 100,
    // a scanner that sends fast would otherwise wait 5 s per idle association to close
    DicomAssociationCloseDelay: 0,
    ...(opts.extra ?? {}),
  };
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));

  let log = '';
  const child: ChildProcess = spawn(ORTHANC_BINARY, [configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (log += String(d)));
  child.stderr!.on('data', (d) => (log += String(d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://${LOOPBACK}:${httpPort}`;

  const request = async (method: string, uri: string, body?: string | Buffer): Promise<Response> => {
    const res = await fetch(`${url}${uri}`, { method, body, headers: body === undefined ? undefined : { 'Content-Type': 'application/json' } });
    if (!res.ok) throw new OrthancHttpError(res.status, uri, await res.text());
    return res;
  };

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    if (!process.env.SONOGATE_KEEP_ORTHANC) fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 30_000;
    await Promise.race([
      (async () => {
        await waitForPort(httpPort, 30_000);
        for (;;) {
          try {
            await request('GET', '/system');
            break;
          } catch (e) {
            if (Date.now() > deadline) throw e;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        await waitForPort(dicomPort, Math.max(1000, deadline - Date.now()));
      })(),
      exited.then(() => Promise.reject(new Error(`Orthanc exited during start:\n${log}`))),
    ]);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${log}`);
  }

  const peer: OrthancPeer = {
    aeTitle,
    dicomPort,
    httpPort,
    url,
    dir,
    get: async <T>(uri: string) => (await (await request('GET', uri)).json()) as T,
    getBytes: async (uri) => Buffer.from(await (await request('GET', uri)).arrayBuffer()),
    post: async <T>(uri: string, body: unknown): Promise<T> => {
      const text = await (await request('POST', uri, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body))).text();
      return (text ? JSON.parse(text) : undefined) as T;
    },
    put: async (uri, body) => {
      await request('PUT', uri, body);
    },
    delete: async (uri) => {
      await request('DELETE', uri);
    },
    async findStudy(studyInstanceUid) {
      const ids: string[] = await peer.post('/tools/lookup', studyInstanceUid).then((r: { Type: string; ID: string }[]) => r.filter((x) => x.Type === 'Study').map((x) => x.ID));
      return ids[0] ?? null;
    },
    async seriesOfStudy(studyId) {
      return peer.get<OrthancResource[]>(`/studies/${studyId}/series`);
    },
    log: () => log,
    stop,
  };
  return peer;
}
