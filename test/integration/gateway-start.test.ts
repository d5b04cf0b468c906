/**
 * A start that fails (the DICOM port is still held, e.g. by an old instance while systemd restarts
 * the service) must leave the queue as it found it: no job claimed, no attempt counted. Three
 * failed starts used to mark a queued study crashed without it ever being analysed.
 */
import net from 'node:net';
import { startGateway } from '../../src/gateway';
import { Store } from '../../src/store/store';
import { copyProcessor, silentLogger, tempDir, testConfig } from '../helpers/gatewayHarness';

jest.setTimeout(60_000);

test('failed starts (port in use) claim no queued job and count no attempt against it', async () => {
  const dataDir = tempDir('start');
  const study = '2.25.4400';
  const store = Store.open(dataDir);
  store.recordInstance(
    { sopInstanceUid: `${study}.1.1`, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', transferSyntaxUid: '1.2.840.10008.1.2.1', studyUid: study, seriesUid: `${study}.1`, path: '/nonexistent', bytes: 1, callingAe: 'US', callingHost: '127.0.0.1' },
    Date.now() - 60_000,
  );
  expect(store.queueStudyIfQuiet(study, 1000).queued).toBe(true);
  store.close();

  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  const config = testConfig({ dataDir, port });
  const calls: { studyInstanceUid: string; instances: number }[] = [];
  for (let i = 0; i < 4; i++) await expect(startGateway(config, copyProcessor(calls), silentLogger())).rejects.toThrow(/EADDRINUSE/);
  const after = Store.open(dataDir);
  expect(after.listJobs(study).map((j) => [j.status, j.attempts])).toEqual([['queued', 0]]);
  expect(after.getStudy(study)!.status).not.toBe('failed');
  after.close();
  expect(calls).toEqual([]);
  await new Promise<void>((r) => blocker.close(() => r()));
});
