import { hostPolicy } from '../../src/web/hostCheck';
import { parseConfig } from '../../src/config/load';

describe('http.allowedHosts: the host names the dashboard answers to', () => {
  test('absent: only localhost on a loopback address, any name on others', () => {
    for (const listen of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) {
      const ok = hostPolicy(listen, undefined);
      expect([listen, ok('localhost'), ok('attacker.example'), ok('sonogate.hospital.org')]).toEqual([listen, true, false, false]);
    }
    const lan = hostPolicy('0.0.0.0', undefined);
    expect([lan('sonogate.hospital.org'), lan('anything')]).toEqual([true, true]);
  });

  test('given: exact names, ".domain" for it and its subdomains, "*" for any', () => {
    const ok = hostPolicy('0.0.0.0', ['Sonogate.Hospital.org', '.radiology.example']);
    expect(ok('sonogate.hospital.org')).toBe(true);
    expect(ok('evil-sonogate.hospital.org')).toBe(false);
    expect(ok('radiology.example')).toBe(true);
    expect(ok('ws3.radiology.example')).toBe(true);
    expect(ok('radiology.example.attacker.net')).toBe(false);
    expect(ok('notradiology.example')).toBe(false);
    expect(hostPolicy('127.0.0.1', ['*'])('whatever')).toBe(true);
  });

  test('the config key takes names only', () => {
    expect(parseConfig({ http: { allowedHosts: ['dash.example.org', '.example.org', '*'] } }).http.allowedHosts).toHaveLength(3);
    expect(() => parseConfig({ http: { allowedHosts: ['http://dash.example.org'] } })).toThrow(/allowedHosts/);
  });
});
