/**
 * What the PACS administrator needs to see of DICOM associations on /metrics (src/web/metrics.ts):
 * how many are open, how many were accepted, and why others were refused or cut off. Plain
 * counts, so the DICOM side needs no metrics library; reasons are a fixed set of codes (never an
 * AE title, a host or a certificate name), so the label set stays bounded.
 */

/** Why an inbound association (or the connection that would have carried it) was refused. */
export const REJECT_REASONS = [
  /** A-ASSOCIATE-RJ reason 7: the called AE title is not dicom.aeTitle */
  'called_ae',
  /** A-ASSOCIATE-RJ reason 3: the caller is not in dicom.allowedCallers (AE title, host or certificate CN) */
  'calling_ae',
  /** over dicom.maxAssociations: A-ASSOCIATE-RJ "local limit exceeded", or dropped in a flood */
  'max_associations',
  /** A-ASSOCIATE-AC with every presentation context rejected (PS3.8 9.3.3.2): nothing can be sent on it */
  'no_presentation_context',
  /** the TLS handshake failed (no or untrusted certificate under TLS 1.2, plain DICOM on the TLS port, old TLS) */
  'tls_handshake',
  /** the handshake completed but the client certificate did not verify against dicom.tls.ca (or was missing) */
  'tls_certificate',
] as const;
export type RejectReasonCode = (typeof REJECT_REASONS)[number];

/** How an accepted association ended without an A-RELEASE. */
export const ABORT_REASONS = [
  /** the peer sent an A-ABORT */
  'peer_abort',
  /** no PDU for dicom.associationTimeoutSeconds */
  'timeout',
  /** a PDU over our maximum length was announced */
  'pdu_too_long',
  /** the connection closed or failed (reset) without a release or an abort */
  'connection_lost',
  /** the gateway was stopping */
  'shutdown',
] as const;
export type AbortReasonCode = (typeof ABORT_REASONS)[number];

export interface InboundAssociationCounts {
  /** connections holding an association slot now (negotiating or associated; what dicom.maxAssociations limits) */
  open: number;
  accepted: number;
  rejected: Record<RejectReasonCode, number>;
  aborted: Record<AbortReasonCode, number>;
}

export interface AssociationCounts {
  inbound: InboundAssociationCounts;
  /** associations to destinations in progress now (result sends) */
  outboundOpen: number;
}

/** The listener's running counts (one per listener; counts start at zero with the process). */
export class AssociationTally {
  accepted = 0;
  readonly rejected = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReasonCode, number>;
  readonly aborted = Object.fromEntries(ABORT_REASONS.map((r) => [r, 0])) as Record<AbortReasonCode, number>;

  reject(reason: RejectReasonCode): void {
    this.rejected[reason]++;
  }

  abort(reason: AbortReasonCode): void {
    this.aborted[reason]++;
  }

  snapshot(open: number): InboundAssociationCounts {
    return { open, accepted: this.accepted, rejected: { ...this.rejected }, aborted: { ...this.aborted } };
  }
}
