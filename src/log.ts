/**
 * Structured JSON logs (pino). Patient names and IDs are never logged: log UIDs, AE titles,
 * reason codes and timings only.
 */
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string = process.env.SONOGATE_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'sonogate' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // defence in depth: should a dataset ever reach a log call, its identifying fields are dropped
      redact: { paths: ['PatientName', 'PatientID', 'PatientBirthDate', '*.PatientName', '*.PatientID', '*.PatientBirthDate'], remove: true },
    },
    destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
