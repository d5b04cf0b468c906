/**
 * Request ids and one structured log line per request (in the spirit of pino-http): each request
 * gets an id (a caller's X-Request-Id when it looks like one, else a new UUID), echoed in the
 * response header, carried by `req.log` (a pino child logger) and written to the audit log.
 * Only the method, the path (no query string), the status, the time and the user name are
 * logged: paths hold UIDs at most, never patient data.
 */
import crypto from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../log';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      id: string;
      log: Logger;
    }
  }
}

const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

export function requestLog(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const incoming = req.get('x-request-id');
    req.id = incoming && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();
    req.log = logger.child({ reqId: req.id });
    res.setHeader('X-Request-Id', req.id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const line = { method: req.method, path: req.originalUrl.split('?')[0], status: res.statusCode, ms: Math.round(ms * 10) / 10, user: res.locals.username as string | undefined };
      if (res.statusCode >= 500) req.log.error(line, 'request failed');
      else if (line.path === '/healthz' || line.path === '/readyz' || line.path === '/metrics') req.log.debug(line, 'request');
      else req.log.info(line, 'request');
    });
    next();
  };
}
