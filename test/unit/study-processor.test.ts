/** The study processor files every instance's outcome under its stored UID, and one instance's
 * failure (e.g. its inference worker died) never fails the rest of the study. */
import { createStudyProcessor } from '../../src/pipeline/processStudy';
import { tempDir } from '../helpers/gatewayHarness';

test('a rejected instance is failed alone; outcomes carry the UIDs the instances were stored under', async () => {
  const processor = createStudyProcessor(async (file) => {
    if (file.endsWith('b.dcm')) throw new Error('inference worker exited (1)');
    if (file.endsWith('c.dcm')) return { outcome: { sopInstanceUid: 'c.dcm', status: 'failed', reason: 'decode.malformed', message: 'not DICOM' }, outputs: [] };
    return { outcome: { sopInstanceUid: '1.2.3.1', status: 'analysed', label: 'malignant', malignancyProbability: 0.8, probability: 0.8 }, outputs: [] };
  });
  const r = await processor({
    studyInstanceUid: '1.2.3',
    outDir: tempDir('proc'),
    instances: [
      { sopInstanceUid: '1.2.3.1', path: '/x/a.dcm' },
      { sopInstanceUid: '1.2.3.2', path: '/x/b.dcm' },
      { sopInstanceUid: '1.2.3.3', path: '/x/c.dcm' },
    ],
  });
  expect(r.instances.map((i) => [i.sopInstanceUid, i.status, i.reason ?? null])).toEqual([
    ['1.2.3.1', 'analysed', null],
    ['1.2.3.2', 'failed', 'inference.failed'],
    ['1.2.3.3', 'failed', 'decode.malformed'],
  ]);
  expect(r.label).toBe('malignant');
});
