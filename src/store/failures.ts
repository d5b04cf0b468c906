/**
 * "A failure an admin has not discarded", as SQL: the Failures page lists such failures, and
 * retention keeps every study that has one. A discard covers the failure it was made for; a newer
 * failure of the same item (updated or received after the discard) counts again.
 */
export function notDiscarded(kind: 'study' | 'instance' | 'send', key: string, failedAt: string): string {
  return `NOT EXISTS (SELECT 1 FROM failure_dismissals d WHERE d.kind = '${kind}' AND d.key = ${key} AND d.at >= ${failedAt})`;
}
