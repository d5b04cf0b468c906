/** `sonogate serve`: the analysis engine, the gateway (listener, store, sender) and shutdown. */
import { Config } from '../config/schema';
import { startGateway } from '../gateway';
import { Logger } from '../log';
import { startAnalysisEngine } from '../runtime';

export async function runServe(config: Config, logger: Logger): Promise<number> {
  const engine = await startAnalysisEngine(config, logger);
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config, engine.processor, logger);
  } catch (e) {
    await engine.close();
    throw e;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      try {
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
