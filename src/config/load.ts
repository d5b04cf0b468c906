/**
 * Loads the configuration: JSON file (--config, SONOGATE_CONFIG, or config/default.json),
 * then single-key environment overrides, then validation against the schema.
 * Every failure is a ConfigError naming the key, so the CLI can exit 2 with a useful message.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { Config, configSchema } from './schema';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The repository / package root (dist/config/load.js or src/config/load.ts → two levels up). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
export const DEFAULT_CONFIG_FILE = path.join(PACKAGE_ROOT, 'config', 'default.json');

/** Environment variable → config key path and how to parse it. */
const ENV_OVERRIDES: Array<[string, string[], 'int' | 'float' | 'string' | 'json']> = [
  ['SONOGATE_DICOM_AE_TITLE', ['dicom', 'aeTitle'], 'string'],
  ['SONOGATE_DICOM_HOST', ['dicom', 'host'], 'string'],
  ['SONOGATE_DICOM_PORT', ['dicom', 'port'], 'int'],
  ['SONOGATE_HTTP_HOST', ['http', 'host'], 'string'],
  ['SONOGATE_HTTP_PORT', ['http', 'port'], 'int'],
  ['SONOGATE_DATA_DIR', ['dataDir'], 'string'],
  ['SONOGATE_STUDY_QUIET_SECONDS', ['study', 'quietSeconds'], 'float'],
  ['SONOGATE_MODEL', ['inference', 'model'], 'string'],
  ['SONOGATE_INFERENCE_PROVIDERS', ['inference', 'providers'], 'json'],
  ['SONOGATE_DESTINATIONS', ['destinations'], 'json'],
  ['SONOGATE_LOG_LEVEL', ['log', 'level'], 'string'],
];

function setPath(obj: Record<string, any>, keys: string[], value: unknown): void {
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (o[k] === undefined || o[k] === null || typeof o[k] !== 'object') o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}

function parseEnv(name: string, raw: string, kind: 'int' | 'float' | 'string' | 'json'): unknown {
  if (kind === 'string') return raw;
  if (kind === 'json') {
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw new ConfigError(`${name}: not valid JSON (${(e as Error).message})`);
    }
  }
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || (kind === 'int' && !Number.isInteger(n))) {
    throw new ConfigError(`${name}: expected ${kind === 'int' ? 'an integer' : 'a number'}, got "${raw}"`);
  }
  return n;
}

export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const key = i.path.length ? i.path.join('.') : '(root)';
      if (i.code === 'unrecognized_keys') {
        const where = i.path.length ? `${key}: ` : '';
        return `${where}unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`;
      }
      return `${key}: ${i.message}`;
    })
    .join('\n');
}

/** Validates a raw object (already merged with env overrides). */
export function parseConfig(raw: unknown): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid configuration:\n${formatIssues(r.error)}`);
  return r.data;
}

export interface LoadedConfig {
  config: Config;
  file: string;
}

export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const chosen = file ?? env.SONOGATE_CONFIG ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = fs.readFileSync(chosen, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${chosen}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${chosen} is not valid JSON: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`config file ${chosen} must hold a JSON object`);
  }
  for (const [name, keys, kind] of ENV_OVERRIDES) {
    const v = env[name];
    if (v !== undefined) setPath(raw as Record<string, any>, keys, parseEnv(name, v, kind));
  }
  const config = parseConfig(raw);
  // The shipped model path is relative to the package, so `sonogate` works from any directory.
  if (!path.isAbsolute(config.inference.model) && !fs.existsSync(config.inference.model)) {
    const inPackage = path.join(PACKAGE_ROOT, config.inference.model);
    if (fs.existsSync(inPackage)) config.inference.model = inPackage;
  }
  return { config, file: chosen };
}

/** Secrets never leave the process: private key paths are masked for display. */
export function maskSecrets(config: Config): Config {
  const c = JSON.parse(JSON.stringify(config)) as Config;
  if (c.dicom.tls) c.dicom.tls.key = '***';
  for (const d of c.destinations) if (d.tls) d.tls.key = '***';
  return c;
}
