/**
 * Runs fn with the clock (Date) fixed, so result objects carry the same creation date and time on
 * every run and their bytes can be compared with recorded hashes. Timers, promises and hrtime stay
 * real: onnxruntime and the pipeline run as usual.
 */
export async function atFixedTime<T>(fn: () => Promise<T>, now = new Date(2030, 0, 2, 3, 4, 5)): Promise<T> {
  jest.useFakeTimers({
    now,
    doNotFake: ['hrtime', 'nextTick', 'performance', 'queueMicrotask', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'],
  });
  try {
    return await fn();
  } finally {
    jest.useRealTimers();
  }
}
