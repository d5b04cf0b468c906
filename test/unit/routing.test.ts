/**
 * Routing rules (issue 4 item 5): which instances are analysed (routing.analyze) and where a
 * caller's results go (allowedCallers[].destinations, returnToSender), with configuration errors
 * that name the key.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load';
import { ANALYZE_EVERYTHING, checkAnalyzeRules } from '../../src/pipeline/route';
import { returnTransport, sendTargetsFor } from '../../src/study/routing';

const rules = (over: Record<string, unknown>) => parseConfig({ routing: { analyze: over } }).routing.analyze;

test('the defaults analyse every ultrasound instance, and config/default.json says the same', () => {
  expect(parseConfig({}).routing).toEqual({ analyze: ANALYZE_EVERYTHING });
  const shipped = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'config', 'default.json'), 'utf8'));
  expect(parseConfig(shipped).routing).toEqual({ analyze: ANALYZE_EVERYTHING });
  expect(checkAnalyzeRules({ BodyPartExamined: 'THYROID', StudyDescription: 'Neck', StationName: 'X' }, ANALYZE_EVERYTHING)).toBeNull();
  // the shipped file is the schema's defaults written out, nothing more and nothing else
  expect(parseConfig(shipped)).toEqual(parseConfig({}));
});

test('bodyParts: case and padding do not matter; an absent body part passes unless requireBodyPart', () => {
  const breast = rules({ bodyParts: ['BREAST'] });
  expect(checkAnalyzeRules({ BodyPartExamined: 'BREAST' }, breast)).toBeNull();
  expect(checkAnalyzeRules({ BodyPartExamined: 'Breast ' }, breast)).toBeNull();
  expect(checkAnalyzeRules({ BodyPartExamined: 'THYROID' }, breast)).toEqual({
    rule: 'routing.analyze.bodyParts',
    message: 'routing.analyze.bodyParts: BodyPartExamined "THYROID" is not one of BREAST',
  });
  expect(checkAnalyzeRules({}, breast)).toBeNull();
  expect(checkAnalyzeRules({ BodyPartExamined: '' }, breast)).toBeNull();
  const strict = rules({ bodyParts: ['BREAST'], requireBodyPart: true });
  expect(checkAnalyzeRules({}, strict)?.message).toBe('routing.analyze.bodyParts: BodyPartExamined is absent (routing.analyze.requireBodyPart is true)');
  expect(checkAnalyzeRules({ BodyPartExamined: 'BREAST' }, strict)).toBeNull();
});

test('studyDescription is a case-insensitive regular expression; stations a list of StationName', () => {
  const r = rules({ studyDescription: 'breast|mamm', stations: ['US-ROOM-1', 'us-room-2'] });
  expect(checkAnalyzeRules({ StudyDescription: 'US BREAST LEFT', StationName: 'US-ROOM-1' }, r)).toBeNull();
  expect(checkAnalyzeRules({ StudyDescription: 'Mammo follow-up', StationName: 'US-ROOM-2' }, r)).toBeNull();
  expect(checkAnalyzeRules({ StudyDescription: 'US ABDOMEN', StationName: 'US-ROOM-1' }, r)).toEqual({
    rule: 'routing.analyze.studyDescription',
    message: 'routing.analyze.studyDescription: StudyDescription "US ABDOMEN" does not match /breast|mamm/i',
  });
  expect(checkAnalyzeRules({ StationName: 'US-ROOM-1' }, r)?.rule).toBe('routing.analyze.studyDescription');
  expect(checkAnalyzeRules({ StudyDescription: 'BREAST', StationName: 'CARDIO' }, r)?.message).toBe('routing.analyze.stations: StationName "CARDIO" is not one of US-ROOM-1, us-room-2');
  expect(checkAnalyzeRules({ StudyDescription: 'BREAST' }, r)?.message).toBe('routing.analyze.stations: StationName is absent (expected one of US-ROOM-1, us-room-2)');
});

test('configuration errors name the key', () => {
  const bad = (raw: unknown) => {
    try {
      parseConfig(raw);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };
  expect(bad({ routing: { analyze: { studyDescription: 'breast(' } } })).toMatch(/routing\.analyze\.studyDescription: not a valid regular expression/);
  expect(bad({ routing: { analyze: { bodyPart: ['BREAST'] } } })).toMatch(/routing\.analyze: unknown key "bodyPart"/);
  expect(bad({ routing: { analyze: { bodyParts: 'BREAST' } } })).toMatch(/routing\.analyze\.bodyParts: /);
  expect(bad({ routing: { analyse: {} } })).toMatch(/routing: unknown key "analyse"/);
  expect(
    bad({
      destinations: [{ name: 'pacs', aeTitle: 'PACS', host: 'h', port: 104 }],
      dicom: { allowedCallers: [{ aeTitle: 'US_A', destinations: ['pacs', 'archive'] }] },
    }),
  ).toMatch(/dicom\.allowedCallers\.0\.destinations\.1: no destination named "archive" in destinations/);
  expect(bad({ dicom: { port: 2762, tls: { port: 2762, cert: 'c', key: 'k', ca: 'a' } } })).toMatch(/dicom\.tls\.port: the TLS port must differ from dicom\.port/);
  expect(bad({ dicom: { tls: { cert: 'c', key: 'k', ca: 'a', minVersion: 'TLSv1.1' } } })).toMatch(/dicom\.tls\.minVersion/);
  expect(bad({ dicom: { allowedCallers: [{ aeTitle: 'US_A', returnToSender: { port: 4000, tls: true } }] } })).toMatch(
    /dicom\.allowedCallers\.0\.returnToSender\.tls: needs dicom\.tls/,
  );
  // with the plain port closed, the TLS port may reuse its number
  expect(parseConfig({ dicom: { port: 2762, tls: { port: 2762, cert: 'c', key: 'k', ca: 'a', plain: false } } }).dicom.tls?.plain).toBe(false);
});

test("a caller's results go to its listed destinations only, plus itself when returnToSender is set", () => {
  const config = parseConfig({
    destinations: [
      { name: 'pacs', aeTitle: 'PACS', host: '10.0.0.5', port: 104 },
      { name: 'research', aeTitle: 'RESEARCH', host: '10.0.0.6', port: 104 },
    ],
    dicom: {
      allowedCallers: [
        { aeTitle: 'US_A', destinations: ['pacs'], returnToSender: { port: 4000, host: '10.1.2.3' } },
        { aeTitle: 'US_B', destinations: [] },
        { aeTitle: 'US_C' },
      ],
    },
  });
  expect(sendTargetsFor(config, { callingAe: 'US_A', callingHost: '10.1.2.3' })).toEqual([
    { destination: 'pacs', aeTitle: 'PACS', host: '10.0.0.5', port: 104 },
    { destination: 'return:US_A@10.1.2.3:4000', aeTitle: 'US_A', host: '10.1.2.3', port: 4000 },
  ]);
  expect(sendTargetsFor(config, { callingAe: 'US_B', callingHost: '10.1.2.4' })).toEqual([]);
  expect(sendTargetsFor(config, { callingAe: 'US_C', callingHost: '10.1.2.5' }).map((t) => t.destination)).toEqual(['pacs', 'research']);
  // returnToSender.tls: the target's name says so, and it never collides with the plain one
  const overTls = parseConfig({
    dicom: {
      tls: { cert: 'c', key: 'k', ca: 'a' },
      allowedCallers: [{ aeTitle: 'US_T', host: '10.1.2.9', returnToSender: { port: 4001, tls: true } }],
    },
  });
  const back = sendTargetsFor(overTls, { callingAe: 'US_T', callingHost: '10.1.2.9' });
  expect(back).toEqual([{ destination: 'return-tls:US_T@10.1.2.9:4001', aeTitle: 'US_T', host: '10.1.2.9', port: 4001 }]);
  expect(returnTransport(back[0].destination)).toBe('tls');
  expect(returnTransport('return:US_A@10.1.2.3:4000')).toBe('plain');
  expect(returnTransport('pacs')).toBeNull();
  // a caller that is not listed (allowedCallers empty accepts anyone) gets every destination
  expect(sendTargetsFor({ ...config, dicom: { ...config.dicom, allowedCallers: [] } }, { callingAe: 'ANY', callingHost: '1.1.1.1' })).toHaveLength(2);
});

test('two devices sharing an AE title, told apart by their certificates, get their own entries\' destinations', () => {
  const config = parseConfig({
    destinations: [
      { name: 'siteA', aeTitle: 'PACS_A', host: '10.0.0.5', port: 104 },
      { name: 'siteB', aeTitle: 'PACS_B', host: '10.0.0.6', port: 104 },
    ],
    dicom: {
      tls: { cert: 'c', key: 'k', ca: 'a' },
      allowedCallers: [
        { aeTitle: 'US_SCANNER', certificateCN: 'US_SCANNER', destinations: ['siteA'] },
        { aeTitle: 'US_SCANNER', certificateCN: 'OTHER_DEVICE', destinations: ['siteB'] },
        { aeTitle: 'US_SCANNER', destinations: [] }, // plain TCP: nothing goes anywhere
      ],
    },
  });
  const to = (callingCN: string | null | undefined) => sendTargetsFor(config, { callingAe: 'US_SCANNER', callingHost: '10.1.2.3', callingCN }).map((t) => t.destination);
  expect(to('US_SCANNER')).toEqual(['siteA']);
  expect(to('OTHER_DEVICE')).toEqual(['siteB']);
  expect(to(null)).toEqual([]);
  // a study recorded before the CN was kept: AE title and host only, as before (the first entry)
  expect(to(undefined)).toEqual(['siteA']);
});
