/**
 * onnxruntime-node session creation with provider fallback: tries the configured providers in
 * order (CUDA first by default) and keeps the first that loads the model.
 */
import * as ort from 'onnxruntime-node';

export type Provider = 'cuda' | 'cpu';

export interface ModelSession {
  session: ort.InferenceSession;
  provider: Provider;
  /** why earlier providers were skipped */
  skipped: string[];
}

export async function createSession(onnxPath: string, providers: Provider[], intraOpThreads?: number): Promise<ModelSession> {
  const skipped: string[] = [];
  // A missing CUDA provider is expected on CPU hosts: we report the fallback in our own log line
  // instead of onnxruntime's native error print (set once, before the first session).
  ort.env.logLevel = 'fatal';
  for (const provider of providers) {
    try {
      const session = await ort.InferenceSession.create(onnxPath, {
        executionProviders: [provider],
        graphOptimizationLevel: 'all',

        ...(intraOpThreads ? { intraOpNumThreads: intraOpThreads } : {}),
      });
      return { session, provider, skipped };
    } catch (e) {
      skipped.push(`${provider}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`no inference provider could load ${onnxPath}: ${skipped.join('; ')}`);
}
