/** `sonogate serve`: the analysis engine, the gateway (listener, store, sender), the dashboard, housekeeping, and shutdown. */
import path from 'node:path';
import { Config } from '../config/schema';
import { loadTlsConfig } from '../config/tlsFiles';
import { startGateway } from '../gateway';
import { Logger } from '../log';
import { startAnalysisEngine } from '../runtime';
import { AuditLog } from '../web/audit';
import { Housekeeping } from '../housekeeping/housekeeping';
import { startWebServer, takeDashboardSecrets, WebServer } from '../web/server';

export async function runServe(config: Config, logger: Logger): Promise<number> {
  // received images and results hold patient data: not readable by other local users
  process.umask(0o027);
  // a bad certificate or key file is a configuration error (exit 2): find it before the model loads
  loadTlsConfig(config);
  // before the first worker process starts: none of them may inherit a password or the session secret
  const dashboardEnv = takeDashboardSecrets(process.env);
  const engine = await startAnalysisEngine(config, logger);
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config, engine.processor, logger);
  } catch (e) {
    await engine.close();
    throw e;
  }
  // made before the dashboard, whose /metrics reads its storage cap verdict; started after it
  const housekeeping = new Housekeeping({
    settings: config.housekeeping,
    gateway,
    dataDir: path.resolve(config.dataDir),
    destinations: config.destinations.map((d) => d.name),
    audit: new AuditLog(gateway.store.db),
    logger,
  });
  let web: WebServer;
  try {
    web = await startWebServer({
      config,
      gateway,
      model: {
        name: engine.model.spec.name,
        version: engine.model.spec.version,
        provider: engine.pool.provider,
        specPath: engine.model.specPath,
        spec: engine.model.spec as unknown as Record<string, unknown>,
      },
      logger,
      env: dashboardEnv,
      workersRecycled: () => engine.pool.recycled,
      storageCapUnmet: () => housekeeping.capUnmet,
    });
  } catch (e) {
    await gateway.close();
    await engine.close();
    throw e;
  }
  housekeeping.start();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      try {
        await housekeeping.stop();
        await web.close();
        await gateway.close();
        await engine.close();
        resolve(0);
      } catch (e) {
        logger.error({ err: (e as Error).message }, 'error during shutdown');
        resolve(1);
      }
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
  });
}
