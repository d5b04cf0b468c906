import { rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { buildOverlay } from '../../src/report/overlay';
import { buildSeg } from '../../src/report/seg';
import { buildSr } from '../../src/report/sr';
import { checkFile, dcentvfy, tempDir, writeDataset } from '../helpers/dicomTools';
import { lesionCase } from '../helpers/lesionResult';
import { phantomFile } from '../helpers/phantom';

const model = { name: 'attention-unet-busi', version: '1.0.0' };

test('the SEG, SR and overlay agree with their source on patient and study (dcentvfy)', async () => {
  const dir = tempDir();
  try {
    const opts = { frames: 2, seed: 11 };
    const { source, result } = lesionCase(opts);
    const sourcePath = join(dir, 'source.dcm');
    writeFileSync(sourcePath, phantomFile(opts));
    const seg = buildSeg(source, result, model);
    const paths = [
      sourcePath,
      writeDataset(dir, 'seg.dcm', seg),
      writeDataset(dir, 'sr.dcm', buildSr(source, result, model, seg)),
      writeDataset(dir, 'overlay.dcm', await buildOverlay(source, result, model)),
    ];
    const v = dcentvfy(paths);
    if (v.warnings.length) console.log(`dcentvfy warnings:\n${v.warnings.join('\n')}`);
    expect(v.errors).toEqual([]);
    // three new series in the source study
    expect(new Set([seg.SeriesInstanceUID, source.SeriesInstanceUID]).size).toBe(2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a sparse source (no laterality, accession, referring physician, body part) still gives valid objects', async () => {
  const dir = tempDir();
  try {
    const { source, result } = lesionCase({ seed: 12 });
    for (const key of ['Laterality', 'AccessionNumber', 'ReferringPhysicianName', 'BodyPartExamined', 'StudyDescription', 'PatientBirthDate']) delete source[key];
    const seg = buildSeg(source, result, model);
    const objects = { seg, sr: buildSr(source, result, model, seg), overlay: await buildOverlay(source, result, model) };
    for (const [kind, ds] of Object.entries(objects)) {
      const check = checkFile(writeDataset(dir, `${kind}.dcm`, ds));
      expect([kind, check.errors]).toEqual([kind, []]);
      // type 2: present and empty
      expect([kind, ds.AccessionNumber]).toEqual([kind, '']);
    }
    expect(objects.overlay.Laterality).toBe('');
    // a body part the source does not name is not made up
    expect([objects.seg.BodyPartExamined, objects.overlay.BodyPartExamined]).toEqual([undefined, undefined]);
    expect(objects.seg.SegmentSequence[0].AnatomicRegionSequence[0].AnatomicRegionModifierSequence).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
