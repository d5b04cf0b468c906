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
  /** ends the associations in progress at once (shutdown): their files count as not delivered */
  abort?(): void;
}

/**
 * Warning statuses after which the object is stored all the same: C-STORE's own (PS3.4 B.2.3:
 * coercion of data elements, data set does not match SOP class, elements discarded) and the
 * general DIMSE warnings some archives answer (PS3.7 C: 0001 optional attributes not supported,
 * 0107 attribute list error, 0116 attribute value out of range).
 */
export const STORE_WARNINGS: readonly number[] = [0xb000, 0xb007, 0xb006, 0x0001, 0x0107, 0x0116];

export function isDelivered(status: number): boolean {
  return status === 0x0000 || STORE_WARNINGS.includes(status);
}

/**
 * Statuses by which the PACS refuses this object itself, not for the moment: data set does not
 * match SOP class (A9xx), cannot understand (Cxxx), SOP class not supported (0122), not authorized
 * (0124). Sending the same bytes again will not change the answer; out of resources (A7xx) and
 * processing failure (0110) may, and are retried.
 */
export function isRefusal(status: number): boolean {
  return (status & 0xff00) === 0xa900 || (status & 0xf000) === 0xc000 || status === 0x0122 || status === 0x0124;
}

/** Attempts after which a refused object stops being retried (failed, on the Failures page). */
export const REFUSED_ATTEMPTS = 3;
