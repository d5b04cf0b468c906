/**
 * Which instances are analysed (config `routing.analyze`). The SOP class check (ultrasound only)
 * comes first, in processStudy; these filters narrow it further, e.g. to breast studies when a
 * PACS forwards every ultrasound. An instance that fails a filter stays stored and is reported
 * 'skipped' with reason 'route.filtered' and a message naming the rule, so an administrator can
 * tell "filtered on purpose" from "failed" on the dashboard.
 */
import type { AnalyzeRules } from '../config/schema';
import type { Dataset } from '../types/domain';

/** A filter that did not match: the config key, and why, for the instance's message. */
export interface RouteMiss {
  rule: 'routing.analyze.bodyParts' | 'routing.analyze.studyDescription' | 'routing.analyze.stations';
  message: string;
}

/** The defaults: no filter, every ultrasound instance is analysed. */
export const ANALYZE_EVERYTHING: AnalyzeRules = { bodyParts: [], requireBodyPart: false, studyDescription: null, stations: [] };

function text(v: unknown): string | null {
  const x = Array.isArray(v) ? v[0] : v;
  if (x === undefined || x === null) return null;
  const s = String(x).replace(/\0/g, '').trim();
  return s.length ? s : null;
}

/** Code strings compare case-insensitively and without padding (scanners write "Breast", "BREAST "). */
const same = (a: string, b: string) => a.trim().toUpperCase() === b.trim().toUpperCase();

/** null when the instance is to be analysed; otherwise the first filter it fails. */
export function checkAnalyzeRules(header: Dataset, rules: AnalyzeRules): RouteMiss | null {
  if (rules.bodyParts.length > 0) {
    const part = text(header.BodyPartExamined);
    if (part === null ? rules.requireBodyPart : !rules.bodyParts.some((b) => same(b, part))) {
      return {
        rule: 'routing.analyze.bodyParts',
        message: `routing.analyze.bodyParts: BodyPartExamined ${part === null ? 'is absent (routing.analyze.requireBodyPart is true)' : `"${part}" is not one of ${rules.bodyParts.join(', ')}`}`,
      };
    }
  }
  if (rules.studyDescription !== null) {
    const description = text(header.StudyDescription) ?? '';
    if (!new RegExp(rules.studyDescription, 'i').test(description)) {
      return {
        rule: 'routing.analyze.studyDescription',
        message: `routing.analyze.studyDescription: StudyDescription "${description}" does not match /${rules.studyDescription}/i`,
      };
    }
  }
  if (rules.stations.length > 0) {
    const station = text(header.StationName);
    if (station === null || !rules.stations.some((s) => same(s, station))) {
      return {
        rule: 'routing.analyze.stations',
        message: `routing.analyze.stations: StationName ${station === null ? `is absent (expected one of ${rules.stations.join(', ')})` : `"${station}" is not one of ${rules.stations.join(', ')}`}`,
      };
    }
  }
  return null;
}
