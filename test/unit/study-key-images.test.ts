/** The study processor's key object selection step, with a scripted per-instance processor. */
import fs from 'node:fs';
import path from 'node:path';
import { writePart10 } from '../../src/dicom/part10';
import { createStudyProcessor } from '../../src/pipeline/processStudy';
import { InstanceOutcome } from '../../src/types/pipeline';
import { tempDir } from '../helpers/gatewayHarness';
import { phantomDataset } from '../helpers/phantom';

const model = { name: 'attention-unet-busi', version: '1.0.0' };
const STUDY = '2.25.100077';

function analysed(sop: string, lesionCount: number): InstanceOutcome {
  return {
    sopInstanceUid: sop,
    status: 'analysed',
    label: lesionCount ? 'malignant' : 'normal',
    malignancyProbability: lesionCount ? 0.8 : 0.02,
    lesionCount,
    keyImage: { sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', sopInstanceUid: sop, seriesInstanceUid: `${STUDY}.1`, label: lesionCount ? 'malignant' : 'normal', malignancyProbability: lesionCount ? 0.8 : 0.02, lesionCount },
  };
}

test("a key object selection that cannot be made is reported, and the study's other results stand", async () => {
  const dir = tempDir('kos');
  try {
    const ds = phantomDataset({ seed: 1, studyInstanceUid: STUDY });
    const stored = path.join(dir, 'a.dcm');
    fs.writeFileSync(stored, writePart10(ds));
    const sop = String(ds.SOPInstanceUID);
    const processor = createStudyProcessor(async (_file, outDir) => ({ outcome: analysed(sop, 1), outputs: [{ kind: 'sr', path: path.join(outDir, 'sr.dcm'), sopClassUid: '1.2.840.10008.5.1.4.1.1.88.33', sopInstanceUid: '9.1', seriesInstanceUid: '9', sourceSopInstanceUid: sop }] }), { model, enabled: true });
    const outDir = path.join(dir, 'out');
    fs.mkdirSync(outDir);

    const ok = await processor({ studyInstanceUid: STUDY, instances: [{ sopInstanceUid: sop, path: stored }], outDir });
    expect(ok.outputs.map((o) => o.kind)).toEqual(['sr', 'kos']);
    expect(ok.keyImagesError).toBeUndefined();
    expect(fs.existsSync(ok.outputs[1].path)).toBe(true);

    // the stored file went missing between the analysis and the summary: no document, a reason
    fs.rmSync(stored);
    const broken = await processor({ studyInstanceUid: STUDY, instances: [{ sopInstanceUid: sop, path: stored }], outDir });
    expect(broken.outputs.map((o) => o.kind)).toEqual(['sr']);
    expect(broken.keyImagesError).toMatch(/ENOENT|no such file/);
    expect(broken.label).toBe('malignant');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
