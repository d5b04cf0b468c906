/**
 * Which Host the dashboard answers to, against DNS rebinding: a web page the admin opens can make
 * its own name point at the dashboard's address and then read what needs no session (/metrics,
 * the probes), guess passwords through the admin's browser, or use up the sign-in limit every
 * local user shares. Such a request carries the page's name in Host; an IP address there cannot
 * come from rebinding, so addresses always pass.
 */
import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';

/** the policy from http.host and http.allowedHosts: a predicate over a lower-case host name */
export function hostPolicy(listenHost: string, allowedHosts: string[] | undefined): (name: string) => boolean {
  const entries = allowedHosts?.map((h) => h.toLowerCase()) ?? (isLoopback(listenHost) ? ['localhost'] : ['*']);
  return (name) =>
    entries.some((e) => e === '*' || e === name || (e.startsWith('.') && (name === e.slice(1) || name.endsWith(e))));
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/** The request's host name, lower case, without port or IPv6 brackets; '' when there is none. */
export function requestHostName(req: Request): string {
  // req.hostname follows "trust proxy": X-Forwarded-Host from a trusted proxy, else Host
  return (req.hostname ?? '').toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

export function hostCheck(listenHost: string, allowedHosts: string[] | undefined) {
  const allowed = hostPolicy(listenHost, allowedHosts);
  return (req: Request, res: Response, next: NextFunction): void => {
    const name = requestHostName(req);
    // no Host at all (an HTTP/1.0 probe) is not a browser following a rebound name either
    if (name === '' || isIP(name) !== 0 || allowed(name)) {
      next();
      return;
    }
    res
      .status(403)
      .json({ error: 'host_not_allowed', message: `this dashboard does not answer to the host name "${name}"; an administrator can add it to http.allowedHosts` });
  };
}
