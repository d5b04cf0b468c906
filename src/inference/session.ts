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
