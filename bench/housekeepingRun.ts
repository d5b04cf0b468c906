/**
 * Housekeeping as the gateway builds it, on a benchmark's own store, and a timer for one of its
 * runs that also reports the event loop's longest stall (what the dashboard and DICOM listener
 * would have waited). Used by the retention and storage-cap benchmarks.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseConfig } from '../src/config/load';
import { Housekeeping } from '../src/housekeeping/housekeeping';
import { createLogger } from '../src/log';
import type { Store } from '../src/store/store';
import { AuditLog } from '../src/web/audit';

/** `housekeeping` config keys as a config file would set them; the rest are the defaults */
export function housekeepingFor(store: Store, dataDir: string, housekeeping: Record<string, unknown>): Housekeeping {
  return new Housekeeping({
    settings: parseConfig({ housekeeping }).housekeeping,
    gateway: { store, destination: () => undefined, kickSender: () => undefined },
    dataDir,
    destinations: ['pacs'],
    audit: new AuditLog(store.db),
    logger: createLogger('silent'),
  });
}

export async function timedRun<T>(run: () => Promise<T>): Promise<{ ms: number; eventLoopMaxStallMs: number; result: T }> {
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const t = Date.now();
  const result = await run();
  lag.disable();
  return { ms: Date.now() - t, eventLoopMaxStallMs: Math.round(lag.max / 1e6), result };
}
