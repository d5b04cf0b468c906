/**
 * A listening socket that cannot be opened, as the configuration error it almost always is
 * (exit 2, naming the keys), instead of a stack trace: the port is taken, the address is not
 * this machine's, the host name does not resolve, or the port needs privileges.
 */
import { ConfigError } from './load';

const WHY: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another Sonogate, another service, or one of our own ports twice)',
  EADDRNOTAVAIL: 'this machine has no such address',
  ENOTFOUND: 'the host name does not resolve',
  EACCES: 'ports below 1024 need privileges',
};

export function listenError(e: unknown, keys: string, host: string, port: number): Error {
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  return WHY[code] ? new ConfigError(`${keys}: cannot listen on ${host}:${port}: ${WHY[code]} (${code})`) : (e as Error);
}
