/**
 * The effective routing (src/study/routingSettings.ts): config file values with the dashboard's
 * overrides laid over them, kept in the database (they survive a restart), validated with the
 * config schema's pieces, reverted per key or all at once; and the send targets that follow it.
 */
import fs from 'node:fs';
import { parseConfig } from '../../src/config/load';
import { Store } from '../../src/store/store';
import { sendTargetsFor } from '../../src/study/routing';
import { mergeRouting, RoutingError, RoutingSettings } from '../../src/study/routingSettings';
import { tempDir } from '../helpers/gatewayHarness';

const config = parseConfig({
  routing: { analyze: { bodyParts: ['BREAST'], studyDescription: 'breast' } },
  destinations: [
    { name: 'pacs', aeTitle: 'PACS', host: '10.0.0.1', port: 104 },
    { name: 'research', aeTitle: 'RES', host: '10.0.0.2', port: 104 },
  ],
});

let dir: string;
let store: Store;
beforeEach(() => {
  dir = tempDir('routing-settings');
  store = Store.open(dir);
});
afterEach(() => {
  if (!store.isClosed) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('merge: no override = the config file; an override replaces only its own field; destinations default to on', () => {
  const none = mergeRouting(config, {});
  expect(none.analyze).toEqual(config.routing.analyze);
  expect([...none.enabledDestinations]).toEqual(['pacs', 'research']);
  const merged = mergeRouting(config, {
    'routing.analyze.bodyParts': { value: ['THYROID', 'BREAST'], by: 'alice', at: 1 },
    'destinations.research.enabled': { value: false, by: 'alice', at: 1 },
  });
  expect(merged.analyze).toEqual({ bodyParts: ['THYROID', 'BREAST'], requireBodyPart: false, studyDescription: 'breast', stations: [] });
  expect([...merged.enabledDestinations]).toEqual(['pacs']);
});

test('merge ignores overrides that no longer fit: a bad value, a destination gone from the config file', () => {
  const merged = mergeRouting(config, {
    'routing.analyze.studyDescription': { value: '(', by: null, at: 1 },
    'routing.analyze.requireBodyPart': { value: 'yes', by: null, at: 1 },
    'destinations.gone.enabled': { value: false, by: null, at: 1 },
  });
  expect(merged.analyze).toEqual(config.routing.analyze);
  expect(merged.enabledDestinations.size).toBe(2);
});

test('update: validated, kept in the database across a restart, shown with its source; revert restores the file values', () => {
  const settings = new RoutingSettings(config, store.db);
  expect(settings.update({ analyze: { bodyParts: ['THYROID'], studyDescription: null }, destinations: { research: false } }, 'alice', 1000)).toEqual({
    'routing.analyze.bodyParts': { old: ['BREAST'], new: ['THYROID'] },
    'routing.analyze.studyDescription': { old: 'breast', new: null },
    'destinations.research.enabled': { old: true, new: false },
  });
  // "restart": a new object on a reopened database
  store.close();
  store = Store.open(dir);
  const again = new RoutingSettings(config, store.db);
  expect(again.current().analyze).toEqual({ bodyParts: ['THYROID'], requireBodyPart: false, studyDescription: null, stations: [] });
  expect(sendTargetsFor(config, { callingAe: null, callingHost: null }, again.current()).map((t) => t.destination)).toEqual(['pacs']);
  const v = again.view();
  expect(v.analyze.bodyParts).toEqual({ value: ['THYROID'], file: ['BREAST'], source: 'dashboard', changedBy: 'alice', changedAt: 1000 });
  expect(v.analyze.stations).toEqual({ value: [], file: [], source: 'file', changedBy: null, changedAt: null });
  expect(v.destinations.map((d) => [d.name, d.enabled.value, d.enabled.source])).toEqual([
    ['pacs', true, 'file'],
    ['research', false, 'dashboard'],
  ]);

  // setting a value back to the file's drops the override; an unchanged value changes nothing
  expect(again.update({ analyze: { studyDescription: 'breast', bodyParts: ['THYROID'] } }, 'bob')).toEqual({ 'routing.analyze.studyDescription': { old: null, new: 'breast' } });
  expect(again.view().analyze.studyDescription.source).toBe('file');
  expect(again.view().analyze.bodyParts.changedBy).toBe('alice');

  expect(again.revert(['routing.analyze.bodyParts'])).toEqual({ 'routing.analyze.bodyParts': { old: ['THYROID'], new: ['BREAST'] } });
  expect(again.revert(undefined)).toEqual({ 'destinations.research.enabled': { old: false, new: true } });
  expect(again.current().analyze).toEqual(config.routing.analyze);
  expect(again.overrides()).toEqual({});
});

test('update refuses what the config file would refuse, naming the key; nothing is stored', () => {
  const settings = new RoutingSettings(config, store.db);
  const refused = (patch: unknown) => {
    try {
      settings.update(patch, 'alice');
    } catch (e) {
      expect(e).toBeInstanceOf(RoutingError);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };
  expect(refused({ analyze: { studyDescription: '(unclosed' } })).toBe('routing.analyze.studyDescription: not a valid regular expression');
  expect(refused({ analyze: { bodyParts: [''] } })).toMatch(/^routing\.analyze\.bodyParts\.0: /);
  expect(refused({ analyze: { requireBodyPart: 'yes' } })).toMatch(/^routing\.analyze\.requireBodyPart: /);
  expect(refused({ analyze: { colour: 'red' } })).toBe('routing.analyze: unknown key "colour"');
  expect(refused({ destinations: { nowhere: false } })).toBe('destinations.nowhere: no destination named "nowhere" in the config file');
  expect(refused({ destinations: { pacs: 'off' } })).toMatch(/^destinations\.pacs: /);
  expect(refused({ outputs: {} })).toBe('routing: unknown key "outputs"');
  expect(settings.overrides()).toEqual({});
});

test('without overrides the send targets are those of the config file (per caller as before)', () => {
  const settings = new RoutingSettings(config, store.db);
  expect(sendTargetsFor(config, { callingAe: 'ANY', callingHost: '1.2.3.4' }, settings.current())).toEqual(sendTargetsFor(config, { callingAe: 'ANY', callingHost: '1.2.3.4' }));
});
