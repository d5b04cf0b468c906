/**
 * Where a study's results go: the configured destinations (all of them, or the ones the calling
 * AE's allowedCallers entry lists in `destinations`), plus the calling scanner itself when its
 * entry asks for returnToSender (SPEC: "what a caller may do and where results go is always
 * explicit in the config"). Which instances are analysed at all is src/pipeline/route.ts.
 */
import type { CallerConfig, Config } from '../config/schema';
import { normaliseHost } from '../dicom/scp';
import type { SendTarget } from '../store/rows';
import type { EffectiveRouting } from './routingSettings';

/**
 * Destination names of return-to-sender targets. They carry the address: the sender batches rows
 * by destination name, and two scanners may share an AE title on different hosts — one must never
 * receive the other's results. Config names cannot contain ':' so these never collide. A target
 * reached over DICOM TLS is named `return-tls:…`, so a queued send keeps its transport even if the
 * configuration changes before it is delivered.
 */
export function returnDestinationName(aeTitle: string, host: string, port: number, tls = false): string {
  return `${tls ? 'return-tls' : 'return'}:${aeTitle.trim()}@${host}:${port}`;
}

/** Whether a destination name is a return-to-sender target, and over which transport. */
export function returnTransport(destination: string): 'plain' | 'tls' | null {
  if (destination.startsWith('return:')) return 'plain';
  if (destination.startsWith('return-tls:')) return 'tls';
  return null;
}

/**
 * The allowedCallers entry of a study's caller: the first that matches AE title, host and, where
 * the entry pins one, the client certificate's CN — the listener's rule (decideAssociation), so
 * two devices sharing an AE title but not a certificate get their own entry's destinations.
 * `callingCN` undefined (a study recorded before the CN was kept) compares AE title and host only.
 */
function callerEntry(config: Config, callingAe: string | null, callingHost: string | null, callingCN?: string | null): CallerConfig | undefined {
  if (!callingAe) return undefined;
  // hosts compare as the listener compares them ("::ffff:10.1.2.3" is 10.1.2.3)
  return config.dicom.allowedCallers.find(
    (c) =>
      c.aeTitle.trim() === callingAe.trim() &&
      (!c.host || !callingHost || normaliseHost(c.host) === normaliseHost(callingHost)) &&
      (callingCN === undefined || !c.certificateCN || c.certificateCN === callingCN),
  );
}

/**
 * `routing` is the effective routing (src/study/routingSettings.ts): destinations switched off on
 * the dashboard get nothing. Return-to-sender targets are not configured destinations and are
 * not switched by it.
 */
export function sendTargetsFor(
  config: Config,
  caller: { callingAe: string | null; callingHost: string | null; callingCN?: string | null },
  routing?: Pick<EffectiveRouting, 'enabledDestinations'>,
): SendTarget[] {
  const { callingAe, callingHost } = caller;
  const entry = callerEntry(config, callingAe, callingHost, caller.callingCN);
  // names are checked against `destinations` when the config is validated
  const chosen = (entry?.destinations ? config.destinations.filter((d) => entry.destinations!.includes(d.name)) : config.destinations).filter(
    (d) => !routing || routing.enabledDestinations.has(d.name),
  );
  const targets: SendTarget[] = chosen.map((d) => ({ destination: d.name, aeTitle: d.aeTitle, host: d.host, port: d.port }));
  const back = entry?.returnToSender;
  const host = back?.host ?? entry?.host ?? callingHost;
  if (entry && back && host) {
    const aeTitle = back.aeTitle ?? entry.aeTitle;
    targets.push({ destination: returnDestinationName(aeTitle, host, back.port, back.tls), aeTitle, host, port: back.port });
  }
  return targets;
}
