/** Association decisions and transfer-syntax choice (pure parts of the listener). */
import fs from 'node:fs';
import path from 'node:path';
import { ACCEPTED_SOP_CLASSES, ACCEPTED_TRANSFER_SYNTAXES, chooseTransferSyntax, isUltrasoundSopClass } from '../../src/dicom/sopClasses';
import { decideAssociation, normaliseHost } from '../../src/dicom/scp';

const IMPLICIT = '1.2.840.10008.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';
const BIG = '1.2.840.10008.1.2.2';
const JPEG = '1.2.840.10008.1.2.4.50';
const J2K = '1.2.840.10008.1.2.4.90';
const RLE = '1.2.840.10008.1.2.5';

test('the first proposed compressed syntax is accepted as-is, else the SCU first choice', () => {
  expect(chooseTransferSyntax([EXPLICIT, IMPLICIT, JPEG, J2K])).toBe(JPEG);
  expect(chooseTransferSyntax([RLE, JPEG])).toBe(RLE);
  expect(chooseTransferSyntax([BIG, EXPLICIT, IMPLICIT])).toBe(BIG);
  expect(chooseTransferSyntax([IMPLICIT])).toBe(IMPLICIT);
  expect(chooseTransferSyntax(['1.2.840.10008.1.2.4.100'])).toBeNull(); // MPEG2: not decodable
  expect(chooseTransferSyntax(['1.2.840.10008.1.2.4.100', EXPLICIT])).toBe(EXPLICIT);
});

test('only the ultrasound storage classes are accepted', () => {
  expect(['1.2.840.10008.5.1.4.1.1.6.1', '1.2.840.10008.5.1.4.1.1.6', '1.2.840.10008.5.1.4.1.1.3.1'].every(isUltrasoundSopClass)).toBe(true);
  expect(['1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.7', '1.2.840.10008.5.1.4.1.1.66.4'].some(isUltrasoundSopClass)).toBe(false);
});

test('called AE and calling AE/host decide acceptance with the PS3.8 reasons', () => {
  const callers = [{ aeTitle: 'US_SCANNER', host: '10.1.2.3' }, { aeTitle: 'US_ANY' }];
  expect(decideAssociation('SONOGATE  ', 'US_SCANNER', '10.1.2.3', 'SONOGATE', callers)).toEqual({ accept: true, caller: callers[0] });
  expect(decideAssociation('OTHER', 'US_SCANNER', '10.1.2.3', 'SONOGATE', callers)).toMatchObject({ accept: false, reason: 7, why: 'called AE title not recognised' });
  expect(decideAssociation('SONOGATE', 'US_SCANNER', '10.9.9.9', 'SONOGATE', callers)).toMatchObject({ accept: false, reason: 3, why: 'calling AE title not recognised' });
  expect(decideAssociation('SONOGATE', 'STRANGER', '10.1.2.3', 'SONOGATE', callers)).toMatchObject({ accept: false, reason: 3 });
  expect(decideAssociation('SONOGATE', 'US_ANY', '192.168.0.1', 'SONOGATE', callers)).toMatchObject({ accept: true });
  expect(decideAssociation('SONOGATE', 'ANYONE', '1.1.1.1', 'SONOGATE', [])).toEqual({ accept: true, caller: null });
  expect(decideAssociation('sonogate', 'ANYONE', '1.1.1.1', 'SONOGATE', [])).toMatchObject({ accept: false }); // AE titles are case-sensitive
  expect(normaliseHost('::ffff:10.1.2.3')).toBe('10.1.2.3');
  expect(normaliseHost('::1')).toBe('::1');
});

test('an entry that pins a client certificate CN matches only an association with that verified CN', () => {
  const callers = [{ aeTitle: 'US_SCANNER', certificateCN: 'us-scanner-01' }];
  expect(decideAssociation('SONOGATE', 'US_SCANNER', '10.1.2.3', 'SONOGATE', callers, 'us-scanner-01')).toEqual({ accept: true, caller: callers[0] });
  expect(decideAssociation('SONOGATE', 'US_SCANNER', '10.1.2.3', 'SONOGATE', callers, 'other-device')).toMatchObject({ accept: false, reason: 3 });
  // plain TCP (or TLS without a verified certificate): no CN
  expect(decideAssociation('SONOGATE', 'US_SCANNER', '10.1.2.3', 'SONOGATE', callers)).toMatchObject({ accept: false, reason: 3 });
});

test('the shipped Orthanc script forwards only SOP classes the listener accepts (one refused instance fails the whole transfer)', () => {
  const lua = fs.readFileSync(path.resolve(__dirname, '..', '..', 'config', 'orthanc', 'sonogate-forward.lua'), 'utf8');
  const block = /SopClasses = \{([^}]*)\}/.exec(lua)![1];
  const listed = [...block.matchAll(/'([0-9.]+)'/g)].map((m) => m[1]);
  expect(listed.length).toBeGreaterThan(0);
  expect(listed.filter((uid) => !ACCEPTED_SOP_CLASSES.includes(uid))).toEqual([]);
  // and only in transfer syntaxes it reads: exactly the listener's list
  const syntaxes = [...(/TransferSyntaxes = \{([^}]*)\}/.exec(lua)![1]).matchAll(/'([0-9.]+)'/g)].map((m) => m[1]);
  expect([...syntaxes].sort()).toEqual([...ACCEPTED_TRANSFER_SYNTAXES].sort());
});
