/**
 * The DICOM listener: association checks, C-ECHO, and C-STORE of ultrasound images streamed to
 * disk through InstanceReceiver. Built on dcmjs-dimse's Scp, but with our own net.Server (its
 * Server cannot bind a host, report an ephemeral port, set TCP_NODELAY or drain on close).
 *
 * DICOM TLS (PS3.15 B.1) is the same code path on a second server: tls.createServer hands the
 * Scp an already-authenticated TLSSocket, so association checks, receiving and draining on close
 * do not care which port an association came in on. Only the client certificate's subject CN is
 * extra, for allowedCallers entries that pin one.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import dimse from 'dcmjs-dimse';
import { listenError } from '../config/listenError';
import type { CallerConfig } from '../config/schema';
import type { Logger } from '../log';
import { AssociationTally, type AbortReasonCode, type InboundAssociationCounts, type RejectReasonCode } from './associationStats';
import { MAX_PDU_LENGTH, PduLengthGuard } from './pduGuard';
import { TLS_CIPHERS } from './tlsPolicy';
import { IncomingInstance, InstanceReceiver, StoreStatus } from './receive';
import { SopClass, chooseTransferSyntax, chooseVerificationTransferSyntax, isUltrasoundSopClass } from './sopClasses';

const { Scp, Dataset } = dimse;
const { CEchoResponse, CStoreResponse } = dimse.responses;
const { Status, PresentationContextResult, RejectResult, RejectSource, RejectReason } = dimse.constants;

type Association = dimse.association.Association;
type PresentationContext = dimse.association.PresentationContext;
type CStoreRequest = dimse.requests.CStoreRequest;

/** The DICOM TLS port (dicom.tls) with its PEM material already read and checked. */
export interface ListenerTls {
  /** 0 picks a free port (tests) */
  port: number;
  cert: Buffer;
  key: Buffer;
  /** CA bundle that client certificates must chain to */
  ca: Buffer;
  /** true: a client without a certificate signed by `ca` is disconnected right after the handshake (mutual TLS) */
  requireClientCert: boolean;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** revoked client certificates (PEM CRLs of `ca`) */
  crl?: Buffer;
}

export interface ListenerOptions {
  aeTitle: string;
  host: string;
  /** the plain TCP port; 0 picks a free port (tests); null = no plain port (dicom.tls.plain false) */
  port: number | null;
  /** a DICOM TLS port beside (or instead of) the plain one */
  tls?: ListenerTls | null;
  /** empty = any caller */
  allowedCallers: CallerConfig[];
  associationTimeoutSeconds: number;
  /** connections open at once over all ports; one more is closed at once (logged) */
  maxAssociations?: number;
  receiver: InstanceReceiver;
  logger: Logger;
}

export interface Listener {
  /** the plain port, null when closed */
  readonly port: number | null;
  /** the TLS port, null without dicom.tls */
  readonly tlsPort: number | null;
  /** open associations */
  connections(): number;
  /** open, accepted, refused and cut-off associations since the start (for /metrics) */
  counts(): InboundAssociationCounts;
  /** stops accepting, answers what was fully received, then closes the associations */
  close(): Promise<void>;
}

export type AssociationDecision =
  | { accept: true; caller: CallerConfig | null }
  | { accept: false; reason: number; code: RejectReasonCode; why: string };

/** "::ffff:10.1.2.3" (IPv4 seen by a dual-stack socket) → "10.1.2.3". */
export function normaliseHost(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

/**
 * Association-level checks (PS3.8 9.3.4: A-ASSOCIATE-RJ, source "service user"): a called AE
 * other than ours is reason 7, a caller not in the allow-list (AE title, host when the entry
 * names one, client certificate CN when it pins one) is reason 3. AE titles compare without
 * padding spaces, case-sensitively (PS3.5 6.2). `peerCN` is the subject CN of a client
 * certificate that verified against dicom.tls.ca, null on plain TCP or without a certificate.
 */
export function decideAssociation(calledAe: string, callingAe: string, host: string, ourAe: string, callers: CallerConfig[], peerCN: string | null = null): AssociationDecision {
  if (calledAe.trim() !== ourAe.trim()) {
    return { accept: false, reason: RejectReason.CalledAeNotRecognized, code: 'called_ae', why: 'called AE title not recognised' };
  }
  if (callers.length === 0) return { accept: true, caller: null };
  const caller = callers.find(
    (c) => c.aeTitle.trim() === callingAe.trim() && (!c.host || normaliseHost(c.host) === host) && (!c.certificateCN || c.certificateCN === peerCN),
  );
  if (!caller) return { accept: false, reason: RejectReason.CallingAeNotRecognized, code: 'calling_ae', why: 'calling AE title not recognised' };
  return { accept: true, caller };
}

/** Subject CN of a TLS peer's certificate, only when it verified against our CA. */
export function verifiedPeerCN(socket: Socket): string | null {
  if (!(socket instanceof tls.TLSSocket) || !socket.authorized) return null;
  const cn = socket.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' ? cn : Array.isArray(cn) ? (cn[0] ?? null) : null;
}

interface ScpContext extends ListenerOptions {
  register(scp: SonogateScp): void;
  tally: AssociationTally;
}

/**
 * How long a peer may keep its side open after we ended ours (a rejection, an abort, a network
 * error): a peer that never closes would otherwise hold its connection, its association slot and
 * the open-associations gauge for ever.
 */
const CLOSE_GRACE_MS = 2000;

/** Ends our side now (what was written still goes out) and the connection within CLOSE_GRACE_MS. */
function hangUp(socket: Socket, graceMs = CLOSE_GRACE_MS): void {
  if (socket.destroyed) return;
  socket.end();
  const timer = setTimeout(() => socket.destroy(), graceMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

class SonogateScp extends Scp {
  private callingAe = '';
  private readonly callingHost: string;
  private readonly peerCN: string | null;
  /** data sets being received or filed on this association */
  readonly active = new Set<IncomingInstance>();
  private readonly byRequest = new WeakMap<object, IncomingInstance>();
  private readonly log: Logger;
  /** negotiating: no answer sent yet; associated: accepted and in use; settled: rejected, released or unusable */
  private phase: 'negotiating' | 'associated' | 'settled' = 'negotiating';
  /** why an association that ends without a release ended (the first cause seen) */
  private endReason: AbortReasonCode | null = null;

  constructor(
    readonly socket: Socket,
    dimseOptions: ConstructorParameters<typeof Scp>[1],
    private readonly ctx: ScpContext,
  ) {
    super(socket, dimseOptions);
    this.callingHost = normaliseHost(socket.remoteAddress);
    this.peerCN = verifiedPeerCN(socket);
    this.log = ctx.logger.child({ remote: this.callingHost, ...(socket instanceof tls.TLSSocket ? { tls: true, peerCN: this.peerCN } : {}) });
    ctx.register(this);
    // dcmjs-dimse runs its association and PDU timers only for connections its own Server
    // accepted; these come from ours (TLS checks first), so arm them here
    Object.assign(this as unknown as { connected: boolean; connectedTime: number }, { connected: true, connectedTime: Date.now() });
    const guard = new PduLengthGuard();
    socket.on('data', (chunk: Buffer) => {
      const why = guard.feed(chunk);
      if (why && !socket.destroyed) {
        this.endReason ??= 'pdu_too_long';
        this.log.warn({ callingAe: this.callingAe || undefined, why }, 'connection closed: PDU too long');
        this.abandonAll();
        socket.destroy();
      }
    });
    this.on('close', () => {
      this.abandonAll();
      if (this.phase === 'associated') ctx.tally.abort(this.endReason ?? 'connection_lost');
      this.phase = 'settled';
    });
    this.on('networkError', (e: Error) => {
      // dcmjs-dimse's association and PDU timers and the socket's idle timeout all say "timeout"
      this.endReason ??= /timeout/i.test(e.message) ? 'timeout' : 'connection_lost';
      this.log.debug({ err: e.message }, 'association network error');
      this.abandonAll();
      hangUp(socket);
    });
  }

  /** The listener is stopping: end the connection (counted as such if an association was open). */
  shutDown(): void {
    this.endReason ??= 'shutdown';
    hangUp(this.socket, 500);
  }

  abandonAll(): void {
    for (const inc of this.active) inc.abandon();
  }

  override associationRequested(association: Association): void {
    const called = association.getCalledAeTitle();
    this.callingAe = association.getCallingAeTitle().trim();
    const decision = decideAssociation(called, this.callingAe, this.callingHost, this.ctx.aeTitle, this.ctx.allowedCallers, this.peerCN);
    if (!decision.accept) {
      this.log.warn({ callingAe: this.callingAe, calledAe: called.trim(), reason: decision.why }, 'association rejected');
      this.phase = 'settled';
      this.ctx.tally.reject(decision.code);
      this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, decision.reason);
      hangUp(this.socket);
      return;
    }
    // dcmjs-dimse would echo the caller's maximum PDU length back as ours (0: unlimited); ours is fixed
    association.setMaxPduLength(MAX_PDU_LENGTH);
    const accepted: string[] = [];
    for (const { id } of association.getPresentationContexts()) {
      const pc = association.getPresentationContext(id);
      const abstract = pc.getAbstractSyntaxUid();
      const proposed = pc.getTransferSyntaxUids();
      if (abstract === SopClass.Verification || isUltrasoundSopClass(abstract)) {
        const ts = abstract === SopClass.Verification ? chooseVerificationTransferSyntax(proposed) : chooseTransferSyntax(proposed);
        if (ts) {
          pc.setResult(PresentationContextResult.Accept, ts);
          accepted.push(`${abstract}/${ts}`);
        } else {
          pc.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
        }
      } else {
        pc.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      }
    }
    if (accepted.length === 0) {
      // PS3.8 9.3.3.2: an A-ASSOCIATE-AC whose every context is rejected is how a peer is told that
      // none of what it proposed is served here (DCMTK: "No Acceptable Presentation Contexts")
      this.log.warn({ callingAe: this.callingAe, proposed: association.getPresentationContexts().length }, 'association has no acceptable presentation context');
      this.phase = 'settled';
      this.ctx.tally.reject('no_presentation_context');
    } else {
      this.log.info({ callingAe: this.callingAe, accepted: accepted.length }, 'association accepted');
      this.phase = 'associated';
      this.ctx.tally.accepted++;
    }
    this.sendAssociationAccept();
  }

  override associationReleaseRequested(): void {
    this.phase = 'settled';
    this.sendAssociationReleaseResponse();
  }

  override cEchoRequest(request: dimse.requests.CEchoRequest, callback: (response: dimse.responses.CEchoResponse) => void): void {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  /** Called by dcmjs-dimse when a C-STORE's data set begins: the bytes go to a temp file, not RAM. */
  override createStoreWritableStream(context: PresentationContext, request: CStoreRequest): IncomingInstance {
    const sopClassUid = request.getAffectedSopClassUid();
    // dcmjs-dimse hands over data sets on any context the peer names, accepted or not (and then
    // reports the first proposed transfer syntax as accepted): only what negotiation accepted is filed
    const accepted = context.getResult() === PresentationContextResult.Accept && context.getAbstractSyntaxUid() === sopClassUid && isUltrasoundSopClass(sopClassUid);
    const refusal = accepted
      ? undefined
      : { status: StoreStatus.SopClassNotSupported, reason: 'receive.context_not_accepted', message: `SOP Class ${sopClassUid} on presentation context ${context.getPresentationContextId()}, which was not accepted for it` };
    const incoming = this.ctx.receiver.begin({
      sopClassUid,
      sopInstanceUid: request.getAffectedSopInstanceUid(),
      transferSyntaxUid: context.getAcceptedTransferSyntaxUid() ?? '',
      callingAe: this.callingAe,
      callingHost: this.callingHost,
      callingCN: this.peerCN,
    }, { pause: () => this.socket.pause(), resume: () => this.socket.resume() }, refusal);
    this.active.add(incoming);
    this.byRequest.set(request, incoming);
    void incoming.outcome.finally(() => this.active.delete(incoming));
    return incoming;
  }

  /**
   * dcmjs-dimse calls this right after end(), before the file is written out; the real work
   * waits in cStoreRequest on the instance's outcome. The data set passed on stays empty: nothing
   * downstream of this class reads it.
   */
  override createDatasetFromStoreWritableStream(_w: unknown, context: PresentationContext, callback: (dataset: dimse.Dataset) => void): void {
    callback(new Dataset({}, context.getAcceptedTransferSyntaxUid()));
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: dimse.responses.CStoreResponse) => void): void {
    const incoming = this.byRequest.get(request);
    const answer = (status: number, comment?: string) => {
      const response = CStoreResponse.fromRequest(request);
      response.setStatus(status);
      // Error Comment (0000,0902) is LO: at most 64 characters
      if (comment && status !== Status.Success) response.setErrorComment(comment.replace(/[\\\r\n]/g, ' ').slice(0, 64));
      callback(response);
    };
    if (!incoming) return answer(Status.ProcessingFailure, 'no data set received');
    void incoming.outcome.then((o) => {
      if (o.reason === 'receive.aborted') return; // nobody is listening any more
      answer(o.status, o.reason);
    });
  }

  override abort(): void {
    this.log.info({ callingAe: this.callingAe }, 'association aborted by peer');
    this.endReason ??= 'peer_abort';
    this.abandonAll();
    // PS3.8 7.3.2: after an A-ABORT the transport connection is closed; DCMTK's storescu waits
    // (30 s) for exactly that before it exits
    hangUp(this.socket);
  }
}

/** Listens on host:port; resolves with the bound port (the one picked for port 0). */
async function bind(server: net.Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as net.AddressInfo).port;
}

/**
 * The TLS server. A client certificate is always requested and checked here, before the socket
 * reaches an Scp: with requireClientCert a missing or unverifiable one closes the connection;
 * without it a client may come without one, but one that is presented must still verify (as
 * DCMTK's --verify-peer-cert), so a stranger's certificate never counts. Node would do the same
 * check itself with rejectUnauthorized, but silently (the log would only say "socket hang up");
 * doing it here logs the reason (DEPTH_ZERO_SELF_SIGNED_CERT, UNABLE_TO_VERIFY_LEAF_SIGNATURE...).
 */
function createTlsServer(opts: ListenerTls, handshakeTimeoutMs: number, onSocket: (socket: tls.TLSSocket) => void, onRefused: (code: RejectReasonCode) => void, logger: Logger): tls.Server {
  const server = tls.createServer(
    {
      cert: opts.cert,
      key: opts.key,
      ca: opts.ca,
      ...(opts.crl ? { crl: opts.crl } : {}),
      requestCert: true,
      rejectUnauthorized: false, // checked below, with a log line
      minVersion: opts.minVersion,
      ciphers: TLS_CIPHERS,
      handshakeTimeout: handshakeTimeoutMs,
    },
    (socket) => {
      if (!socket.authorized) {
        const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
        if (presented || opts.requireClientCert) {
          const err = presented ? String(socket.authorizationError) : 'no client certificate';
          logger.warn({ remote: normaliseHost(socket.remoteAddress), err }, 'DICOM TLS client refused: certificate not trusted');
          onRefused('tls_certificate');
          socket.destroy();
          return;
        }
      }
      onSocket(socket);
    },
  );
  // handshake failures: no certificate, one not signed by our CA, plain DICOM on the TLS port, old TLS versions
  server.on('tlsClientError', (e, socket) => {
    logger.warn({ remote: normaliseHost(socket?.remoteAddress), err: e.message }, 'DICOM TLS handshake failed');
    onRefused('tls_handshake');
    // with a listener for this event Node leaves the socket open: a peer that never finishes the
    // handshake would hold its connection (and a file descriptor) for as long as it likes
    socket?.destroy();
  });
  return server;
}

/**
 * A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected-transient (2), by the service provider's presentation
 * layer (3), local limit exceeded (2): DCMTK prints "Association Rejected … Local Limit Exceeded".
 */
const ASSOCIATE_RJ_LOCAL_LIMIT = Buffer.from([0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x02, 0x03, 0x02]);

/** Answers the caller's A-ASSOCIATE-RQ, once it starts, with the rejection; closes within CLOSE_GRACE_MS either way. */
function rejectOverLimit(socket: Socket): void {
  socket.on('error', () => undefined);
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('data', (chunk: Buffer) => {
    socket.pause();
    // only an association request is answered with a rejection; anything else just loses the connection
    if (chunk[0] === 0x01) socket.end(ASSOCIATE_RJ_LOCAL_LIMIT);
    else socket.destroy();
  });
  socket.once('close', () => clearTimeout(timer));
}

export async function startListener(opts: ListenerOptions): Promise<Listener> {
  const scps = new Set<SonogateScp>();
  const timeoutMs = opts.associationTimeoutSeconds * 1000;
  const dimseOptions = { connectTimeout: timeoutMs, associationTimeout: timeoutMs, pduTimeout: timeoutMs };
  const tally = new AssociationTally();
  const ctx: ScpContext = {
    ...opts,
    tally,
    register: (scp) => {
      scps.add(scp);
      scp.on('close', () => scps.delete(scp));
    },
  };
  let refusing = 0;
  const accept = (socket: Socket) => {
    if (opts.maxAssociations && scps.size >= opts.maxAssociations) {
      opts.logger.warn({ remote: normaliseHost(socket.remoteAddress), open: scps.size, max: opts.maxAssociations }, 'connection refused: dicom.maxAssociations reached');
      tally.reject('max_associations');
      // the caller is told why (A-ASSOCIATE-RJ, local limit exceeded) rather than seeing the peer
      // abort; a flood of such connections is not waited on: past as many again, they are dropped
      if (refusing >= opts.maxAssociations) {
        socket.destroy();
        return;
      }
      refusing++;
      socket.once('close', () => refusing--);
      rejectOverLimit(socket);
      return;
    }
    // without it every response waits ~40 ms for a delayed ACK (NOTES.md)
    socket.setNoDelay(true);
    new SonogateScp(socket, dimseOptions, ctx);
  };
  if (opts.port === null && !opts.tls) throw new Error('no DICOM port to listen on: the plain port is closed and dicom.tls is not set');
  const servers: net.Server[] = [];
  const stopAll = () => Promise.all(servers.map((srv) => new Promise<void>((resolve) => (srv.listening ? srv.close(() => resolve()) : resolve()))));
  let port: number | null = null;
  let tlsPort: number | null = null;
  try {
    if (opts.port !== null) {
      const plain = net.createServer(accept);
      plain.on('error', (e) => opts.logger.error({ err: e.message }, 'DICOM listener error'));
      servers.push(plain);
      port = await bind(plain, opts.host, opts.port).catch((e) => Promise.reject(listenError(e, 'dicom.host / dicom.port', opts.host, opts.port!)));
    }
    if (opts.tls) {
      const secure = createTlsServer(opts.tls, timeoutMs, accept, (code) => tally.reject(code), opts.logger);
      secure.on('error', (e) => opts.logger.error({ err: e.message }, 'DICOM TLS listener error'));
      // connections still in their handshake are not associations yet, but they hold a socket:
      // the TLS port takes no more than dicom.maxAssociations at once, handshakes included
      if (opts.maxAssociations) secure.maxConnections = opts.maxAssociations;
      servers.push(secure);
      tlsPort = await bind(secure, opts.host, opts.tls.port).catch((e) => Promise.reject(listenError(e, 'dicom.host / dicom.tls.port', opts.host, opts.tls!.port)));
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  opts.logger.info(
    { aeTitle: opts.aeTitle, host: opts.host, port, tlsPort, ...(opts.tls ? { requireClientCert: opts.tls.requireClientCert, minVersion: opts.tls.minVersion } : {}) },
    'DICOM listener started',
  );

  let closing: Promise<void> | null = null;
  return {
    port,
    tlsPort,
    connections: () => scps.size,
    counts: () => tally.snapshot(scps.size),
    close() {
      closing ??= (async () => {
        const stopped = stopAll();
        // transfers still streaming are dropped (never acknowledged, the sender retries);
        // those already received are filed and answered before the sockets go
        for (const scp of scps) scp.abandonAll();
        await opts.receiver.drain();
        for (const scp of scps) scp.shutDown();
        await stopped;
      })();
      return closing;
    },
  };
}
