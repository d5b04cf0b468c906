/**
 * The effective routing: the config file's `routing.analyze` and destinations, with the changes
 * an admin made on the dashboard's Routing page laid over them. The overrides live in the
 * database (web_settings, key `routing.overrides`), so they survive a restart and win over the
 * file; a field without an override follows the file.
 *
 * The gateway reads `current()` for every job: the analyse rules travel with each instance's
 * request to the inference workers, and the send targets are chosen from the enabled
 * destinations. A change therefore applies to the next study without a restart; a study already
 * in the pipeline finishes with the rules it started with (its send targets are chosen when its
 * job finishes). Sends already queued are not withdrawn when a destination is disabled.
 *
 * Keys are written as in the config file (`routing.analyze.bodyParts`), and
 * `destinations.<name>.enabled` for the per-destination switch.
 */
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { analyzeRulesSchema, type AnalyzeRules, type Config } from '../config/schema';

export const ANALYZE_FIELDS = ['bodyParts', 'requireBodyPart', 'studyDescription', 'stations'] as const;
export type AnalyzeField = (typeof ANALYZE_FIELDS)[number];

/** One overridden value: what it is, who set it, when. */
export interface RoutingOverride {
  value: unknown;
  by: string | null;
  at: number;
}

/** Overrides by key (`routing.analyze.<field>` or `destinations.<name>.enabled`). */
export type RoutingOverrides = Record<string, RoutingOverride>;

/** What the pipeline uses. */
export interface EffectiveRouting {
  analyze: AnalyzeRules;
  /** configured destinations that get results (the others are switched off on the dashboard) */
  enabledDestinations: ReadonlySet<string>;
}

/** The parts of the config this concerns. */
export type RoutingConfig = Pick<Config, 'routing' | 'destinations'>;

export const analyzeKey = (field: AnalyzeField) => `routing.analyze.${field}`;
export const destinationKey = (name: string) => `destinations.${name}.enabled`;

const shape = analyzeRulesSchema.shape;

/**
 * A change as the API takes it (PUT /api/routing): any of the analyse fields, validated by the
 * config schema's own pieces (without their defaults: a field left out stays as it is), and an
 * on/off per configured destination.
 */
export const routingPatchSchema = z
  .object({
    analyze: z
      .object({
        bodyParts: shape.bodyParts.unwrap().optional(),
        requireBodyPart: shape.requireBodyPart.unwrap().optional(),
        studyDescription: shape.studyDescription.unwrap().optional(),
        stations: shape.stations.unwrap().optional(),
      })
      .strict()
      .optional(),
    destinations: z.record(z.string(), z.boolean()).optional(),
  })
  .strict();
export type RoutingPatch = z.infer<typeof routingPatchSchema>;

/** Thrown for a change that does not validate; `message` names the key, as config errors do. */
export class RoutingError extends Error {}

/** Formats zod issues of a patch with config-style keys (`routing.analyze.studyDescription: ...`). */
function patchIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const p = i.path.map(String);
      const key = p[0] === 'analyze' ? ['routing', ...p].join('.') : p.length ? p.join('.') : 'routing';
      if (i.code === 'unrecognized_keys') return `${key}: unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`;
      return `${key}: ${i.message}`;
    })
    .join('; ');
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Validates one stored override against the schema piece of its key (a bad row is ignored, never fatal). */
function validOverride(key: string, value: unknown, config: RoutingConfig): boolean {
  for (const f of ANALYZE_FIELDS) if (key === analyzeKey(f)) return shape[f].unwrap().safeParse(value).success;
  const m = /^destinations\.(.+)\.enabled$/.exec(key);
  return !!m && typeof value === 'boolean' && config.destinations.some((d) => d.name === m[1]);
}

/** The effective routing: config values, each replaced by its override when there is a valid one. Pure. */
export function mergeRouting(config: RoutingConfig, overrides: RoutingOverrides): EffectiveRouting {
  const analyze = { ...config.routing.analyze };
  for (const f of ANALYZE_FIELDS) {
    const o = overrides[analyzeKey(f)];
    if (o && validOverride(analyzeKey(f), o.value, config)) (analyze as Record<string, unknown>)[f] = o.value;
  }
  const enabled = new Set<string>();
  for (const d of config.destinations) {
    const o = overrides[destinationKey(d.name)];
    if (!o || typeof o.value !== 'boolean' || o.value) enabled.add(d.name);
  }
  return { analyze, enabledDestinations: enabled };
}

/** One field as the Routing page shows it. */
export interface RoutingField<T> {
  value: T;
  /** the config file's value */
  file: T;
  source: 'file' | 'dashboard';
  changedBy: string | null;
  changedAt: number | null;
}

export interface RoutingView {
  analyze: { [F in AnalyzeField]: RoutingField<AnalyzeRules[F]> };
  destinations: { name: string; aeTitle: string; host: string; port: number; enabled: RoutingField<boolean> }[];
}

/** A change of one key, for the audit log. */
export type RoutingChanges = Record<string, { old: unknown; new: unknown }>;

const SETTINGS_KEY = 'routing.overrides';

export class RoutingSettings {
  constructor(
    private readonly config: RoutingConfig,
    private readonly db: Database.Database,
  ) {}

  /** The overrides as stored (an unreadable row counts as none). */
  overrides(): RoutingOverrides {
    const row = this.db.prepare('SELECT value FROM web_settings WHERE key = ?').get(SETTINGS_KEY) as { value: string } | undefined;
    if (!row) return {};
    try {
      const parsed = JSON.parse(row.value) as unknown;
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as RoutingOverrides) : {};
    } catch {
      return {};
    }
  }

  /** The routing in force now (read from the database on every call: cheap, and never stale). */
  current(): EffectiveRouting {
    return mergeRouting(this.config, this.overrides());
  }

  view(): RoutingView {
    const o = this.overrides();
    const eff = mergeRouting(this.config, o);
    const field = <T>(key: string, value: T, file: T): RoutingField<T> => {
      const x = o[key] && validOverride(key, o[key].value, this.config) ? o[key] : null;
      return { value, file, source: x ? 'dashboard' : 'file', changedBy: x?.by ?? null, changedAt: x?.at ?? null };
    };
    const file = this.config.routing.analyze;
    return {
      analyze: {
        bodyParts: field(analyzeKey('bodyParts'), eff.analyze.bodyParts, file.bodyParts),
        requireBodyPart: field(analyzeKey('requireBodyPart'), eff.analyze.requireBodyPart, file.requireBodyPart),
        studyDescription: field(analyzeKey('studyDescription'), eff.analyze.studyDescription, file.studyDescription),
        stations: field(analyzeKey('stations'), eff.analyze.stations, file.stations),
      },
      destinations: this.config.destinations.map((d) => ({
        name: d.name,
        aeTitle: d.aeTitle,
        host: d.host,
        port: d.port,
        enabled: field(destinationKey(d.name), eff.enabledDestinations.has(d.name), true),
      })),
    };
  }

  /**
   * Validates and applies a change. A value equal to the file's drops the override (the field
   * follows the file again). Returns what changed in effect, old → new (empty: nothing did).
   * Throws RoutingError naming the key when the change does not validate.
   */
  update(raw: unknown, by: string | null, now = Date.now()): RoutingChanges {
    const parsed = routingPatchSchema.safeParse(raw);
    if (!parsed.success) throw new RoutingError(patchIssues(parsed.error));
    const patch = parsed.data;
    const names = new Set(this.config.destinations.map((d) => d.name));
    const unknown = Object.keys(patch.destinations ?? {}).filter((n) => !names.has(n));
    if (unknown.length) throw new RoutingError(unknown.map((n) => `destinations.${n}: no destination named "${n}" in the config file`).join('; '));
    const wanted = new Map<string, { value: unknown; file: unknown }>();
    for (const f of ANALYZE_FIELDS) {
      const v = patch.analyze?.[f];
      if (v !== undefined) wanted.set(analyzeKey(f), { value: v, file: this.config.routing.analyze[f] });
    }
    for (const [n, v] of Object.entries(patch.destinations ?? {})) wanted.set(destinationKey(n), { value: v, file: true });
    return this.write((o) => {
      for (const [key, { value, file }] of wanted) {
        if (same(value, file)) delete o[key];
        else if (!o[key] || !same(o[key].value, value)) o[key] = { value, by, at: now };
      }
    });
  }

  /** Drops overrides (the given keys, or all): those fields follow the config file again. */
  revert(keys: string[] | undefined): RoutingChanges {
    return this.write((o) => {
      for (const k of keys ?? Object.keys(o)) delete o[k];
    });
  }

  private write(change: (o: RoutingOverrides) => void): RoutingChanges {
    return this.db.transaction(() => {
      const before = this.overrides();
      const after: RoutingOverrides = JSON.parse(JSON.stringify(before));
      change(after);
      if (Object.keys(after).length) {
        this.db.prepare('INSERT INTO web_settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(SETTINGS_KEY, JSON.stringify(after));
      } else {
        this.db.prepare('DELETE FROM web_settings WHERE key = ?').run(SETTINGS_KEY);
      }
      return diff(mergeRouting(this.config, before), mergeRouting(this.config, after), this.config);
    })();
  }
}

/** Keys whose effective value differs between two routings, old → new. */
export function diff(a: EffectiveRouting, b: EffectiveRouting, config: RoutingConfig): RoutingChanges {
  const out: RoutingChanges = {};
  for (const f of ANALYZE_FIELDS) if (!same(a.analyze[f], b.analyze[f])) out[analyzeKey(f)] = { old: a.analyze[f], new: b.analyze[f] };
  for (const d of config.destinations) {
    const x = a.enabledDestinations.has(d.name);
    const y = b.enabledDestinations.has(d.name);
    if (x !== y) out[destinationKey(d.name)] = { old: x, new: y };
  }
  return out;
}
