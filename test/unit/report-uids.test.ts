import { resultUids } from '../../src/report/common';
import { derivedUid } from '../../src/report/uids';
import { phantomDataset } from '../helpers/phantom';

const model = { name: 'attention-unet-busi', version: '1.0.0' };

describe('derived UIDs: a resend replaces rather than duplicates', () => {
  test('are valid 2.25 UIDs of at most 64 characters', () => {
    const uid = derivedUid('1.2.840.113619.2.55.3.604688119.969.1268071029.320', 'a-very-long-model-name-for-good-measure', '10.20.30', 'seg');
    expect(uid).toMatch(/^2\.25\.[1-9][0-9]*$/);
    expect(uid.length).toBeLessThanOrEqual(64);
    // 128 bits written in decimal: at most 39 digits
    expect(uid.length).toBeLessThanOrEqual(5 + 39);
  });

  test('are the same for the same parts and differ for any other', () => {
    expect(derivedUid('1.2.3', 'm', '1.0.0', 'seg')).toBe(derivedUid('1.2.3', 'm', '1.0.0', 'seg'));
    expect(derivedUid('1.2.3', 'm', '1.0.0', 'seg')).not.toBe(derivedUid('1.2.3', 'm', '1.0.1', 'seg'));
    expect(derivedUid('1.2.3', 'm', '1.0.0', 'seg')).not.toBe(derivedUid('1.2.3', 'm', '1.0.0', 'sr'));
    // parts are kept apart, not just concatenated
    expect(derivedUid('1.2', '3')).not.toBe(derivedUid('1.2.3'));
    expect(derivedUid('1.2', '3')).not.toBe(derivedUid('1', '2.3'));
  });

  test('series are per source series, instances per source instance, both per model version and kind', () => {
    const a = phantomDataset({ seed: 1, studyInstanceUid: '2.25.77', seriesInstanceUid: '2.25.77.1' });
    const b = phantomDataset({ seed: 2, studyInstanceUid: '2.25.77', seriesInstanceUid: '2.25.77.1' });
    const seg = resultUids(a, model, 'seg');
    expect(resultUids(b, model, 'seg').seriesInstanceUid).toBe(seg.seriesInstanceUid);
    expect(resultUids(b, model, 'seg').sopInstanceUid).not.toBe(seg.sopInstanceUid);
    expect(resultUids(a, model, 'sr').seriesInstanceUid).not.toBe(seg.seriesInstanceUid);
    expect(resultUids(a, { ...model, version: '1.1.0' }, 'seg').sopInstanceUid).not.toBe(seg.sopInstanceUid);
    expect(resultUids(a, { ...model, version: '1.1.0' }, 'seg').seriesInstanceUid).not.toBe(seg.seriesInstanceUid);
  });
});

describe('study attributes copied from old-style source files', () => {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { studyAttributes } = require('../../src/report/common');
  test('ACR-NEMA style dates and times are rewritten as DA / TM; unrepairable ones become empty', () => {
    const a = studyAttributes({ StudyDate: '1997.04.24', StudyTime: '14:04:38', PatientBirthDate: 'unknown', StudyInstanceUID: '1.2' });
    expect(a.StudyDate).toBe('19970424');
    expect(a.StudyTime).toBe('140438');
    expect(a.PatientBirthDate).toBe('');
    expect(studyAttributes({ StudyDate: '20261126', StudyTime: '101500.25' })).toMatchObject({ StudyDate: '20261126', StudyTime: '101500.25' });
  });

  test('values that break their VR (sex, age, an over-long description) are repaired or left out, as dciodvfy wants', () => {
    const a = studyAttributes({ PatientSex: 'Female', PatientAge: '45', StudyDescription: 'x'.repeat(80) });
    expect([a.PatientSex, a.PatientAge, a.StudyDescription.length]).toEqual(['F', '045Y', 64]);
    expect(studyAttributes({ PatientSex: 'unknown', PatientAge: 'forty' })).toMatchObject({ PatientSex: '' });
    expect(studyAttributes({ PatientAge: 'forty' })).not.toHaveProperty('PatientAge');
    expect(studyAttributes({ PatientSex: 'M', PatientAge: '030Y', StudyDescription: 'US BREAST' })).toMatchObject({ PatientSex: 'M', PatientAge: '030Y', StudyDescription: 'US BREAST' });
    expect(studyAttributes({ PatientAge: '6m' }).PatientAge).toBe('006M');
  });
});
