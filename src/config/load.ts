import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isMap, LineCounter, parse as parseYamlValue, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';

export const DEFAULT_CONFIG_FILE = 'config/mlgate.yaml';
const ENV_PREFIX = 'MLGATE_';

/** A value set from outside the file: an environment variable or a command-line flag. */
export interface ConfigOverride {
  path: string[];
  value: unknown;
  origin: string;
}

export interface LoadConfigOptions {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigOverride[];
  cwd?: string;
}

export interface LoadedConfig {
  config: Config;
  /** The YAML file read, if any (absolute). */
  file?: string;
}

/** Every problem found, each as "where: key: what is wrong", so start-up can print them all. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Builds the one validated configuration: embedded defaults < YAML file < MLGATE_* environment < flags. */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const problems: string[] = [];

  const explicitPath = options.configPath ?? env.MLGATE_CONFIG;
  const defaultPath = resolve(cwd, DEFAULT_CONFIG_FILE);
  const file = explicitPath ? resolve(cwd, explicitPath) : existsSync(defaultPath) ? defaultPath : undefined;

  let raw: Record<string, unknown> = {};
  let doc: Document | undefined;
  const lines = new LineCounter();
  const label = file ? displayPath(file, cwd) : '';
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`${label}: cannot read the configuration file: ${(err as NodeJS.ErrnoException).code ?? err}`]);
    }
    doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
    for (const error of doc.errors) {
      const pos = lines.linePos(error.pos[0]);
      problems.push(`${label}:${pos.line}:${pos.col}: ${error.message.split('\n')[0]}`);
    }
    if (problems.length) throw new ConfigError(problems);
    const value = doc.toJS() as unknown;
    if (value !== null && value !== undefined) {
      if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError([`${label}:1:1: the file must be a mapping of keys to values`]);
      raw = value as Record<string, unknown>;
    }
  }

  const overrides = [...environmentOverrides(env, problems), ...(options.overrides ?? [])];
  for (const override of overrides) setPath(raw, override.path, coerceForLeaf(override.path, override.value));

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...issue.path, key]) : [issue.path];
      for (const path of keys) {
        const where = describeOrigin(path.map(String), overrides, doc, lines, label);
        const message = issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message;
        problems.push(`${where}${path.join('.') || '(top level)'}: ${message}`);
      }
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return { config: result.data!, file };
}

/** MLGATE_TLS_CERT -> ['tls', 'cert']: one variable per leaf of the schema. */
export function environmentVariableNames(): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const path of leafPaths(configSchema, [])) {
    names.set(ENV_PREFIX + path.map((part) => part.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()).join('_'), path);
  }
  return names;
}

function environmentOverrides(env: NodeJS.ProcessEnv, problems: string[]): ConfigOverride[] {
  const known = environmentVariableNames();
  const overrides: ConfigOverride[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === 'MLGATE_CONFIG' || value === undefined) continue;
    const path = known.get(name);
    if (!path) {
      problems.push(`${name} (environment): unknown variable; known: ${[...known.keys()].join(', ')}`);
      continue;
    }
    overrides.push({ path, value: parseScalar(value), origin: `${name} (environment)` });
  }
  return overrides;
}

/** Text from the environment or a flag read as YAML would read it: 8888 a number, false a boolean. */
export function parseScalar(text: string): unknown {
  try {
    return parseYamlValue(text);
  } catch {
    return text;
  }
}

/** Environment and flag values arrive as text; keep the text when the key wants a string. */
function coerceForLeaf(path: string[], value: unknown): unknown {
  if (typeof value === 'string') return value;
  const leaf = schemaAt(path);
  if (leaf && !leaf.safeParse(value).success && leaf.safeParse(String(value)).success) return String(value);
  return value;
}

type AnySchema = z.ZodType;

function unwrap(schema: AnySchema): AnySchema {
  let current = schema as AnySchema & { _zod: { def: { innerType?: AnySchema; type: string } } };
  while (current._zod.def.innerType && ['default', 'prefault', 'optional'].includes(current._zod.def.type)) {
    current = current._zod.def.innerType as typeof current;
  }
  return current;
}

function shapeOf(schema: AnySchema): Record<string, AnySchema> | undefined {
  const inner = unwrap(schema) as AnySchema & { _zod: { def: { type: string; shape?: Record<string, AnySchema> } } };
  return inner._zod.def.type === 'object' ? inner._zod.def.shape : undefined;
}

function* leafPaths(schema: AnySchema, prefix: string[]): Generator<string[]> {
  const shape = shapeOf(schema);
  if (!shape) {
    yield prefix;
    return;
  }
  for (const [key, child] of Object.entries(shape)) yield* leafPaths(child, [...prefix, key]);
}

function schemaAt(path: string[]): AnySchema | undefined {
  let current: AnySchema | undefined = configSchema;
  for (const key of path) current = current && shapeOf(current)?.[key];
  return current;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function describeOrigin(path: string[], overrides: ConfigOverride[], doc: Document | undefined, lines: LineCounter, label: string): string {
  const override = [...overrides].reverse().find((o) => o.path.length <= path.length && o.path.every((key, i) => key === path[i]));
  if (override) return `${override.origin}: `;
  if (!doc) return '(defaults): ';
  // The deepest node that exists in the file: the key itself, or its closest parent.
  for (let depth = path.length; depth >= 0; depth--) {
    const parent = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth - 1), true);
    if (depth === 0) {
      const pos = lines.linePos((parent as { range?: number[] } | null)?.range?.[0] ?? 0);
      return `${label}:${pos.line}: `;
    }
    if (!isMap(parent)) continue;
    const pair = parent.items.find((item) => String((item.key as { value?: unknown })?.value ?? item.key) === path[depth - 1]);
    const range = (pair?.key as { range?: number[] } | undefined)?.range;
    if (range) {
      const pos = lines.linePos(range[0]!);
      return `${label}:${pos.line}: `;
    }
  }
  return `${label}: `;
}

function displayPath(file: string, cwd: string): string {
  return file.startsWith(cwd + '/') ? file.slice(cwd.length + 1) : file;
}
