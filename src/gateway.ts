/**
 * The gateway, composed in one place so SPEC's data flow reads top to bottom:
 *
 *   scanner ──C-STORE──▶ listener (dicom/scp) ──▶ receiver: file + row (store)
 *                                             └─▶ assembler: quiet timer per study ──▶ queued job
 *   job runner ──▶ StudyProcessor (injected: decode → inference → postprocess → report)
 *              ──▶ outputs + one send per output and destination (store)
 *   sender ──C-STORE──▶ destinations, retried with backoff until delivered
 */
import path from 'node:path';
import dimse from 'dcmjs-dimse';
import { quietDicomLibraries } from './dicom/libraryLogs';
import { ConfigError } from './config/load';
import type { Config } from './config/schema';
import { loadTlsConfig } from './config/tlsFiles';
import type { Logger } from './log';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './dicom/part10';
import { InstanceReceiver } from './dicom/receive';
import type { AssociationCounts } from './dicom/associationStats';
import { Listener, startListener } from './dicom/scp';
import type { Destination } from './dispatch/destination';
import { DicomStoreDestination } from './dispatch/dicomStore';
import { Sender } from './dispatch/sender';
import type { FileOps } from './store/files';
import type { DueSend } from './store/rows';
import { Store } from './store/store';
import { StudyAssembler } from './study/assembler';
import { returnTransport, sendTargetsFor } from './study/routing';
import { RoutingSettings } from './study/routingSettings';
import { JobRunner } from './study/runner';
import type { StudyProcessor } from './types/pipeline';

export interface GatewayOptions {
  /** file operations of the listener (tests inject a full disk) */
  fileOps?: FileOps;
  /** studies processed at once (default 1: the processor parallelises inside a study) */
  jobConcurrency?: number;
  /** how long close() waits for a running job before requeueing it (default 30 s) */
  closeGraceMs?: number;
  /** files per outgoing association (default 50) */
  sendBatchSize?: number;
}

export interface Gateway {
  /**
   * the plain DICOM port the listener is bound to (config.dicom.port); when dicom.tls.plain is
   * false there is none and this is the TLS port, the only way in
   */
  readonly dicomPort: number;
  /** the DICOM TLS port (dicom.tls.port), null without dicom.tls */
  readonly dicomTlsPort: number | null;
  readonly store: Store;
  /** the effective routing (config + dashboard overrides), read for every job */
  readonly routing: RoutingSettings;
  /** destination objects by name (configured ones), e.g. for a dashboard "test connection" */
  destination(name: string): Destination | undefined;
  /** wakes the sender now (e.g. after the dashboard resets failed sends) */
  kickSender(): void;
  /** wakes the job runner now (e.g. after the dashboard queued a re-run) */
  kickRunner(): void;
  /** DICOM associations open now, accepted and refused since the start (for /metrics) */
  associations(): AssociationCounts;
  /** stops accepting, files what was received, finishes or requeues the running job, closes the database */
  close(): Promise<void>;
  /** stops everything without updating any state, leaving what a kill -9 would (restart tests) */
  crash(): Promise<void>;
}

export async function startGateway(config: Config, processor: StudyProcessor, logger: Logger, options: GatewayOptions = {}): Promise<Gateway> {
  const dataDir = path.resolve(config.dataDir);
  const log = logger.child({ component: 'gateway' });
  // PEM files are read and checked before anything opens: a bad one is a ConfigError naming its key
  const tlsFiles = loadTlsConfig(config);
  for (const m of [tlsFiles.listener, ...tlsFiles.destinations.values()]) for (const w of m?.warnings ?? []) log.warn(w);
  // whose certificate, and until when: an expiry should be seen coming
  if (tlsFiles.listener) log.info({ key: 'dicom.tls', subjectCN: tlsFiles.listener.subjectCN, validTo: tlsFiles.listener.validTo }, 'DICOM TLS certificate');
  for (const [name, m] of tlsFiles.destinations) log.info({ destination: name, subjectCN: m.subjectCN, validTo: m.validTo }, 'DICOM TLS certificate for a destination');
  // the DICOM libraries' own console messages are not JSON (ours are structured and UID-only)
  quietDicomLibraries(config.log.level === 'debug' || config.log.level === 'trace');
  dimse.Implementation.setImplementationClassUid(IMPLEMENTATION_CLASS_UID);
  dimse.Implementation.setImplementationVersion(IMPLEMENTATION_VERSION_NAME);

  const timeoutMs = config.send.timeoutSeconds * 1000;
  const minRate = config.send.minRateKiBps * 1024;
  const configured = new Map<string, Destination>(
    config.destinations.map((d) => [
      d.name,
      new DicomStoreDestination({ name: d.name, aeTitle: d.aeTitle, host: d.host, port: d.port, tls: tlsFiles.destinations.get(d.name) ?? null }, config.dicom.aeTitle, timeoutMs, minRate),
    ]),
  );

  let store: Store;
  try {
    store = Store.open(dataDir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (['EEXIST', 'ENOTDIR', 'EACCES', 'EROFS', 'EPERM'].includes(code)) throw new ConfigError(`dataDir: cannot use ${dataDir} for the data: ${(e as Error).message}`);
    throw e;
  }
  const routing = new RoutingSettings(config, store.db);
  let assembler: StudyAssembler | undefined;
  let runner: JobRunner | undefined;
  let sender: Sender | undefined;
  let listener: Listener | undefined;
  try {
    // --- sending: one Destination per configured name; return-to-sender rows carry their address
    const destinationFor = (row: DueSend): Destination | null => {
      const named = configured.get(row.destination);
      if (named) return named;
      const transport = returnTransport(row.destination);
      if (transport === 'plain') {
        return new DicomStoreDestination({ name: row.destination, aeTitle: row.aeTitle, host: row.host, port: row.port }, config.dicom.aeTitle, timeoutMs, minRate);
      }
      // over TLS with the listener's certificate; never downgraded to plain TCP when dicom.tls is gone
      if (transport === 'tls' && tlsFiles.listener) {
        const { cert, key, ca } = tlsFiles.listener;
        return new DicomStoreDestination({ name: row.destination, aeTitle: row.aeTitle, host: row.host, port: row.port, tls: { cert, key, ca } }, config.dicom.aeTitle, timeoutMs, minRate);
      }
      return null;
    };
    const theSender = new Sender({
      store,
      destinationFor,
      initialDelayMs: config.send.initialDelaySeconds * 1000,
      maxDelayMs: config.send.maxDelaySeconds * 1000,
      batchSize: options.sendBatchSize,
      logger: logger.child({ component: 'sender' }),
    });
    sender = theSender;

    // --- processing: quiet timer → queued job → processor → outputs and sends
    const theRunner: JobRunner = new JobRunner({
      store,
      // the routing in force now: analyse rules when the job starts, send targets when it is filed
      processor: (input) => processor({ ...input, analyze: routing.current().analyze }),
      dataDir,
      concurrency: options.jobConcurrency ?? 1,
      targetsFor: (job) => sendTargetsFor(config, job, routing.current()),
      onFinished: (job, outcome) => {
        if (outcome.outputs > 0) theSender.kick();
        if (outcome.reopened) theAssembler.watch(job.studyUid);
      },
      logger: logger.child({ component: 'runner' }),
    });
    runner = theRunner;
    const theAssembler: StudyAssembler = new StudyAssembler(store, config.study.quietSeconds * 1000, () => theRunner.kick(), logger.child({ component: 'assembler' }));
    assembler = theAssembler;

    // --- receiving: file, row, then the study's quiet timer restarts
    const receiver = new InstanceReceiver({
      dataDir,
      maxInstanceBytes: config.dicom.maxInstanceBytes,
      fileOps: options.fileOps,
      logger: logger.child({ component: 'listener' }),
      onStored: (instance) => {
        const r = store.recordInstance(instance);
        if (r.transition === 'reopened') log.info({ studyInstanceUid: instance.studyUid }, 'study re-opened by a new instance');
        theAssembler.instanceArrived(instance.studyUid);
        return r;
      },
      onRejected: (instance) => store.recordRejectedInstance(instance),
    });
    await receiver.prepare();

    const tlsConfig = config.dicom.tls;
    const tlsPem = tlsFiles.listener;
    listener = await startListener({
      aeTitle: config.dicom.aeTitle,
      host: config.dicom.host,
      // dicom.tls.plain false closes the plain port: TLS is the only way in
      port: tlsConfig && !tlsConfig.plain ? null : config.dicom.port,
      tls:
        tlsConfig && tlsPem
          ? { port: tlsConfig.port, cert: tlsPem.cert, key: tlsPem.key, ca: tlsPem.ca, crl: tlsPem.crl, requireClientCert: tlsConfig.requireClientCert, minVersion: tlsConfig.minVersion }
          : null,
      allowedCallers: config.dicom.allowedCallers,
      associationTimeoutSeconds: config.dicom.associationTimeoutSeconds,
      maxAssociations: config.dicom.maxAssociations,
      receiver,
      logger: logger.child({ component: 'listener' }),
    });
    // only once the ports are bound: a start that fails (port in use) must not claim queued jobs
    // (each claim counts an attempt; three of them mark a study crashed) or start sending
    theAssembler.start();
    theSender.start();
  } catch (e) {
    assembler?.close();
    runner?.halt();
    sender?.halt();
    await listener?.close();
    store.close();
    throw e;
  }

  const theListener = listener;
  let closing: Promise<void> | null = null;
  return {
    dicomPort: theListener.port ?? theListener.tlsPort!,
    dicomTlsPort: theListener.tlsPort,
    store,
    routing,
    destination: (name) => configured.get(name),
    kickSender: () => sender!.kick(),
    kickRunner: () => runner!.kick(),
    associations: () => ({ inbound: theListener.counts(), outboundOpen: sender!.openAssociations }),
    close() {
      closing ??= (async () => {
        await theListener.close();
        assembler!.close();
        await runner!.close(options.closeGraceMs ?? 30_000);
        await sender!.close();
        store.close();
        log.info('gateway stopped');
      })();
      return closing;
    },
    crash() {
      closing ??= (async () => {
        assembler!.close();
        runner!.halt();
        sender!.halt();
        await theListener.close();
        store.close();
      })();
      return closing;
    },
  };
}
