/**
 * Where a study's results go: every configured destination, plus the calling scanner itself when
 * its allowedCallers entry asks for returnToSender (SPEC: "what a caller may do and where results
 * go is always explicit in the config").
 */
import type { Config } from '../config/schema';
import type { SendTarget } from '../store/rows';

/** Destination names of return-to-sender targets; config names cannot contain ':' so these never collide. */
export function returnDestinationName(aeTitle: string): string {
  return `return:${aeTitle.trim()}`;
}

export function sendTargetsFor(config: Config, callingAe: string | null, callingHost: string | null): SendTarget[] {
  const targets: SendTarget[] = config.destinations.map((d) => ({ destination: d.name, aeTitle: d.aeTitle, host: d.host, port: d.port }));
  if (callingAe) {
    const caller = config.dicom.allowedCallers.find((c) => c.aeTitle.trim() === callingAe.trim() && (!c.host || !callingHost || c.host === callingHost));
    const back = caller?.returnToSender;
    const host = back?.host ?? caller?.host ?? callingHost;
    if (caller && back && host) {
      targets.push({ destination: returnDestinationName(caller.aeTitle), aeTitle: back.aeTitle ?? caller.aeTitle, host, port: back.port });
    }
  }
  return targets;
}
