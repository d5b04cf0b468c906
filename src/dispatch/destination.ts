/**
 * Pluggable destinations (after mercure's dispatch/target_types): the sender only knows this
 * interface; DICOM C-STORE is the one implementation today, DICOMweb or TLS variants fit beside it.
 */

export interface OutgoingFile {
  path: string;
  sopClassUid: string;
  sopInstanceUid: string;
}

export interface FileSendResult {
  sopInstanceUid: string;
  /** delivered: Success, or a warning status that still means "stored" */
  delivered: boolean;
  /** the DIMSE status the peer answered, null when there was no answer */
  status: number | null;
  /** reason code + detail, e.g. "send.association_rejected: ..." */
  error?: string;
  /** true when retrying cannot help (the file cannot be read) */
  permanent?: boolean;
}

export interface EchoResult {
  ok: boolean;
  error?: string;
  ms: number;
}

export interface Destination {
  readonly name: string;
  /** sends the files over one connection; one result per file, in order */
  send(files: OutgoingFile[]): Promise<FileSendResult[]>;
  /** tests the connection (C-ECHO for DICOM) */
  echo(): Promise<EchoResult>;
}

/** Warning statuses of C-STORE (PS3.4 B.2.3) after which the object is stored all the same. */
export const STORE_WARNINGS: readonly number[] = [0xb000, 0xb007, 0xb006];

export function isDelivered(status: number): boolean {
  return status === 0x0000 || STORE_WARNINGS.includes(status);
}
