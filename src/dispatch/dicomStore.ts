/**
 * A DICOM C-STORE destination (dcmjs-dimse Client): all files of one batch over one association,
 * each proposed with its SOP class and Explicit + Implicit VR Little Endian (what every PACS
 * accepts; our outputs are written in Explicit VR LE). A destination with a `tls` block connects
 * with DICOM TLS (dcmjs-dimse `securityOptions` → tls.connect): the PACS certificate must chain
 * to its `ca` and name the configured host (Node's hostname/IP check), our client certificate is
 * presented for mutual authentication, TLS 1.2 at least. A failed handshake is a network error,
 * retried like any other and shown on the send row.
 */
import fsp from 'node:fs/promises';
import dimse from 'dcmjs-dimse';
import { part10DatasetOffset } from '../dicom/part10';
import { TLS_CIPHERS } from '../dicom/tlsPolicy';
import { Destination, EchoResult, FileSendResult, OutgoingFile, isDelivered } from './destination';

const { Client, Dataset } = dimse;
const { CStoreRequest, CEchoRequest } = dimse.requests;
const { Status } = dimse.constants;

export interface DicomStoreTarget {
  name: string;
  aeTitle: string;
  host: string;
  port: number;
  /** PEM material for DICOM TLS (destinations[].tls, read at start); absent = plain TCP */
  tls?: { cert: Buffer; key: Buffer; ca: Buffer } | null;
}

/**
 * A data set that goes on the wire as the exact bytes of its file. dcmjs-dimse would otherwise
 * re-encode the parsed elements, which is not byte-preserving (it dropped an empty sequence item
 * of a SEG once, and dciodvfy then failed the copy the PACS got). When the peer accepted another
 * transfer syntax, dcmjs-dimse transcodes from the parsed elements as before.
 */
class FileBytesDataset extends Dataset {
  constructor(
    private readonly raw: Buffer,
    elements: Record<string, unknown>,
    transferSyntaxUid: string,
  ) {
    super(elements, transferSyntaxUid);
  }

  override getDenaturalizedDataset(): Buffer {
    return this.raw;
  }
}

/**
 * TCP_NODELAY on the association's socket (created synchronously by Client.send): without it the
 * last small segment of each request can wait for a delayed ACK (NOTES.md measured ~40 ms each).
 */
function noDelay(client: dimse.Client): void {
  socketOf(client)?.setNoDelay?.(true);
}

type ClientSocket = { setNoDelay?(on: boolean): void; setTimeout?(ms: number): void; destroy(): void };

function socketOf(client: dimse.Client): ClientSocket | undefined {
  return (client as unknown as { network?: { socket?: ClientSocket } }).network?.socket;
}

async function loadDataset(file: string): Promise<dimse.Dataset> {
  const bytes = await fsp.readFile(file);
  const parsed = await new Promise<dimse.Dataset>((resolve, reject) => {
    Dataset.fromFile(file, (err, ds) => (err || !ds ? reject(err ?? new Error('empty file')) : resolve(ds)));
  });
  return new FileBytesDataset(bytes.subarray(part10DatasetOffset(bytes)), parsed.getElements(), parsed.getTransferSyntaxUid());
}

/** send.minRateKiBps's default: the slowest link a large object must still get through */
export const DEFAULT_MIN_RATE_BYTES_PER_SECOND = 128 * 1024;

export class DicomStoreDestination implements Destination {
  readonly name: string;
  /** how to end each association in progress (abort) */
  private readonly active = new Set<() => void>();

  constructor(
    private readonly target: DicomStoreTarget,
    /** our AE title (calling AE) */
    private readonly callingAe: string,
    private readonly timeoutMs: number,
    /**
     * While an object goes out no PDU comes back, and dcmjs-dimse's PDU timeout counts from the
     * last one received: each object gets timeoutMs plus its size at this rate, so a 36 MB cine
     * over a slow link is not aborted (and retried, and aborted) for being large.
     */
    private readonly minRateBytesPerSecond = DEFAULT_MIN_RATE_BYTES_PER_SECOND,
  ) {
    this.name = target.name;
  }

  /** how long one object of this many bytes may take, from the last PDU received */
  private allowanceMs(bytes: number): number {
    return this.timeoutMs + Math.ceil((bytes / this.minRateBytesPerSecond) * 1000);
  }

  private sendOptions(largestBytes = 0) {
    const t = this.target.tls;
    return {
      connectTimeout: this.timeoutMs,
      associationTimeout: this.timeoutMs,
      pduTimeout: this.allowanceMs(largestBytes),
      // never rejectUnauthorized: false — a PACS we cannot verify gets nothing
      ...(t ? { securityOptions: { cert: t.cert, key: t.key, ca: t.ca, rejectUnauthorized: true, minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS } } : {}),
    };
  }

  async send(files: OutgoingFile[]): Promise<FileSendResult[]> {
    const results: FileSendResult[] = files.map((f) => ({ sopInstanceUid: f.sopInstanceUid, delivered: false, status: null }));
    const requests: { index: number; request: dimse.requests.CStoreRequest; bytes: number }[] = [];
    for (const [index, f] of files.entries()) {
      try {
        const { size: bytes } = await fsp.stat(f.path);
        const ds = await loadDataset(f.path);
        const request = new CStoreRequest(ds);
        request.on('response', (response: dimse.responses.CStoreResponse) => {
          const status = response.getStatus();
          results[index].status = status;
          results[index].delivered = isDelivered(status);
          if (!results[index].delivered) {
            const comment = response.getErrorComment?.();
            results[index].error = `send.status_failure: status 0x${status.toString(16).padStart(4, '0')}${comment ? ` (${comment})` : ''}`;
          }
        });
        requests.push({ index, request, bytes });
      } catch (e) {
        results[index].error = `send.file_unreadable: ${(e as Error)?.message ?? String(e)}`;
        results[index].permanent = true;
      }
    }
    if (requests.length === 0) return results;

    const failure = await new Promise<string | null>((resolve) => {
      const client = new Client();
      for (const r of requests) client.addRequest(r.request);
      let problem: string | null = null;
      let done = false;
      let lingering: NodeJS.Timeout | undefined;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(guard);
        clearTimeout(lingering);
        this.active.delete(stop);
        resolve(problem);
      };
      const stop = () => {
        problem ??= 'send.aborted: the gateway is shutting down; sent again after the restart';
        socketOf(client)?.destroy();
        finish();
      };
      this.active.add(stop);
      // an upper bound for the whole association, in case the peer stops answering mid-way
      const boundMs = requests.reduce((sum, r) => sum + this.allowanceMs(r.bytes), 2 * this.timeoutMs);
      const guard = setTimeout(() => {
        problem ??= `send.timeout: no end of association after ${Math.round(boundMs / 1000)} s for ${requests.length} file(s)`;
        try {
          client.abort();
        } catch {
          /* not connected */
        }
        // a peer that never answers never closes its side either: release the socket ourselves
        socketOf(client)?.destroy();
        finish();
      }, boundMs);
      client.on('associationRejected', (r: { result: number; source: number; reason: number }) => {
        problem ??= `send.association_rejected: result ${r.result}, source ${r.source}, reason ${r.reason}`;
      });
      client.on('networkError', (e: Error) => {
        problem ??= this.networkError(e);
        // dcmjs-dimse ends its side here (a timeout, a reset) and reports 'closed' only once the
        // peer closes too: a PACS that hangs (stopped process, deadlock) never does, and the
        // association used to stay open until the peer woke up or the whole batch's bound ran
        // out (28 min for 50 files at the defaults), holding every result for this destination.
        // A late answer still has timeoutMs to arrive; then the socket goes.
        if (!lingering) {
          lingering = setTimeout(() => {
            socketOf(client)?.destroy();
            finish();
          }, this.timeoutMs);
        }
      });
      client.on('closed', finish);
      try {
        const options = this.sendOptions(Math.max(...requests.map((r) => r.bytes)));
        client.send(this.target.host, this.target.port, this.callingAe, this.target.aeTitle, options);
        noDelay(client);
        // dcmjs-dimse also uses connectTimeout as the socket's idle timeout, and the socket is idle
        // while the kernel drains a large object: once connected, allow what a PDU may take
        client.on('connected', () => socketOf(client)?.setTimeout?.(options.pduTimeout));
      } catch (e) {
        problem = this.networkError(e as Error);
        finish();
      }
    });

    for (const { index } of requests) {
      const r = results[index];
      if (r.status === null && !r.error) {
        // no answer: the association failed, or the peer accepted no context for this SOP class
        r.error = failure ?? 'send.no_presentation_context: the destination accepted no presentation context for this SOP class';
      }
    }
    return results;
  }

  /**
   * A network error naming the peer as configured. dcmjs-dimse prefixes its messages with
   * "<called AE> -> ", which is empty before an association exists (a refused connection).
   */
  private networkError(e: Error): string {
    const { aeTitle, host, port } = this.target;
    return `send.network_error: ${aeTitle}@${host}:${port}: ${e.message.replace(/^[^>]{0,20}->\s*/, '')}`;
  }

  /** Ends every association in progress now (shutdown); their files are reported not delivered. */
  abort(): void {
    for (const stop of [...this.active]) stop();
  }

  async echo(): Promise<EchoResult> {
    const started = Date.now();
    const ok = await new Promise<string | null>((resolve) => {
      const client = new Client();
      const request = new CEchoRequest();
      let result: string | null = 'send.no_answer: no C-ECHO response';
      request.on('response', (response: dimse.responses.CEchoResponse) => {
        result = response.getStatus() === Status.Success ? null : `send.status_failure: status 0x${response.getStatus().toString(16)}`;
      });
      client.addRequest(request);
      client.on('associationRejected', (r: { result: number; source: number; reason: number }) => {
        result = `send.association_rejected: result ${r.result}, source ${r.source}, reason ${r.reason}`;
      });
      client.on('networkError', (e: Error) => {
        if (result?.startsWith('send.no_answer')) result = this.networkError(e);
      });
      const guard = setTimeout(() => {
        // a hung peer keeps the half-closed socket open for ever: each press of "Test" would leak one
        socketOf(client)?.destroy();
        resolve('send.timeout: no answer to C-ECHO');
      }, this.timeoutMs * 2);
      client.on('closed', () => {
        clearTimeout(guard);
        resolve(result);
      });
      client.send(this.target.host, this.target.port, this.callingAe, this.target.aeTitle, this.sendOptions());
      noDelay(client);
    });
    return { ok: ok === null, error: ok ?? undefined, ms: Date.now() - started };
  }
}
