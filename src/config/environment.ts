// MLGATE_* variables: one per key of the schema, named after its path (auth.bcryptCost is
// MLGATE_AUTH_BCRYPT_COST), so a new key gets its variable without anyone listing it.
import { parse as parseYamlValue } from 'yaml';
import type { z } from 'zod';
import { isArraySchema, leafPaths, schemaAt } from './schema-paths.ts';
import { closestName } from './suggest.ts';

const ENV_PREFIX = 'MLGATE_';
export const CONFIG_FILE_VARIABLE = 'MLGATE_CONFIG';
/** The directory relative paths resolve against, as `--dir` names it: not a key, so read apart. */
export const HOME_VARIABLE = 'MLGATE_HOME';
/** MLGATE_* names that choose where the configuration is rather than a value in it. */
const LOCATION_VARIABLES = [CONFIG_FILE_VARIABLE, HOME_VARIABLE];

interface EnvironmentValue {
  path: string[];
  value: unknown;
  text: string;
  origin: string;
}

/** MLGATE_TLS_CERT -> ['tls', 'cert']. */
export function variableNames(schema: z.ZodType): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const path of leafPaths(schema)) {
    names.set(ENV_PREFIX + path.map((part) => part.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()).join('_'), path);
  }
  return names;
}

/** The values set in the environment, and a problem for each MLGATE_* name that is not a key. */
export function readEnvironment(env: NodeJS.ProcessEnv, schema: z.ZodType): { values: EnvironmentValue[]; problems: string[] } {
  const known = variableNames(schema);
  const values: EnvironmentValue[] = [];
  const problems: string[] = [];
  for (const name of Object.keys(env).sort()) {
    const text = env[name];
    // As viper does for oauth2-proxy, an empty variable is unset: `NAME=` in compose files and units means "no value".
    if (!name.startsWith(ENV_PREFIX) || LOCATION_VARIABLES.includes(name) || !text) continue;
    const path = known.get(name);
    if (path) {
      values.push({ path, value: parseScalar(text), text, origin: `${name} (environment)` });
      continue;
    }
    const guess = closestName(name, [...known.keys(), ...LOCATION_VARIABLES]);
    problems.push(`${name} (environment): unknown variable${guess ? `; did you mean ${guess}?` : ''} (the variables are listed in docs/configuration.md)`);
  }
  return { values, problems };
}

/**
 * Text from the environment or a flag read as YAML would read a value: 8888 a number, false a
 * boolean, [a, b] a list, "quoted" text. Anything else stays the text as given, so a value such as
 * "a: b" or "x # y" is never turned into a mapping or cut at the '#'.
 */
export function parseScalar(text: string): unknown {
  let value: unknown;
  try {
    value = parseYamlValue(text);
  } catch {
    return text;
  }
  const trimmed = text.trim();
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (value === null && /^(|~|null|Null|NULL)$/.test(trimmed)) return null;
  if (/^["'[{]/.test(trimmed)) return value;
  return text;
}

/** The parsed value if the key takes it, else the text as typed; a list key also takes "a,b". */
export function valueForKey(schema: z.ZodType, path: string[], value: unknown, text?: string): unknown {
  const leaf = schemaAt(schema, path);
  if (!leaf) return value;
  if (isArraySchema(leaf) && typeof value === 'string') return value.split(',').map((item) => item.trim()).filter(Boolean);
  const typed = text ?? (typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined);
  if (typeof value !== 'string' && typed !== undefined && !leaf.safeParse(value).success && leaf.safeParse(typed).success) return typed;
  return value;
}
