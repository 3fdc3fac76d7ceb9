import { existsSync } from 'node:fs';
import { relative, resolve, isAbsolute } from 'node:path';
import type { z } from 'zod';
import { CONFIG_FILE_VARIABLE, HOME_VARIABLE, readEnvironment, valueForKey, variableNames } from './environment.ts';
import { describeIssue } from './issue-message.ts';
import { secretPaths, shapeOf } from './schema-paths.ts';
import { configSchema, type Config } from './schema.ts';
import { unknownKeyMessage } from './suggest.ts';
import { readYamlFile, type YamlFile } from './yaml-file.ts';

const DEFAULT_CONFIG_FILE = 'config/mlgate.yaml';

/** A value set from outside the file: an environment variable or a command-line flag. */
export interface ConfigOverride {
  path: string[];
  value: unknown;
  origin: string;
  /** The value as typed, when it arrived as text: kept for keys that want text ("1.10" stays "1.10"). */
  text?: string;
}

export interface LoadConfigOptions {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: ConfigOverride[];
  cwd?: string;
  /**
   * 'optional': a ${NAME} in routes[].upstreamHeaders that is not set is left as written rather than
   * a problem, for commands that never forward a request. Default 'required'.
   */
  routeVariables?: 'required' | 'optional';
}

interface LoadedConfig {
  config: Config;
  /** The YAML file read, if any (absolute). */
  file?: string;
  /** Where a key's value came from, as problems name it: `mlgate.yaml:3`, `MLGATE_PORT (environment)`, `--port (command line)`, `(defaults)`. */
  originOf(keyPath: readonly (string | number)[]): string;
}

/** Every problem found, each as "where: key: what is wrong", so start-up can print them all. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Problems are listed file first (by line), then environment, then command line. */
const RANK = { file: 0, environment: 1, commandLine: 2, defaults: 3 } as const;
type Rank = (typeof RANK)[keyof typeof RANK];
interface Problem { rank: Rank; line: number; col: number; text: string }
interface RankedOverride extends ConfigOverride { rank: Rank }

/** Builds the one validated configuration: embedded defaults < YAML file < MLGATE_* environment < flags. */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const problems: Problem[] = [];
  const secrets = secretPaths(configSchema);
  const showInputAt = (path: readonly (string | number)[]) => !secrets.some((secret) => secret.every((key, i) => String(path[i]) === key));

  const explicitPath = options.configPath || env[CONFIG_FILE_VARIABLE] || undefined;
  const defaultPath = resolve(cwd, DEFAULT_CONFIG_FILE);
  const file = explicitPath ? resolve(cwd, explicitPath) : existsSync(defaultPath) ? defaultPath : undefined;
  const label = file ? displayPath(file, cwd) : '';
  const namedBy = !options.configPath && explicitPath ? ` (named by ${CONFIG_FILE_VARIABLE})` : '';

  let yaml: YamlFile | undefined;
  let raw: Record<string, unknown> | undefined = {};
  if (file) {
    yaml = readYamlFile(file);
    raw = yaml.value;
    for (const { line, col, path, message } of yaml.problems) {
      const text = !line ? `${label}: ${message}${namedBy}`
        : path ? `${label}:${line}: ${formatPath(path)}: ${message}`
        : `${label}:${line}:${col}: ${message}`;
      problems.push({ rank: RANK.file, line, col, text });
    }
  }

  const environment = readEnvironment(env, configSchema);
  for (const text of environment.problems) problems.push({ rank: RANK.environment, line: 0, col: 0, text });
  const overrides: RankedOverride[] = [
    ...environment.values.map((value) => ({ ...value, rank: RANK.environment })),
    ...(options.overrides ?? []).map((override) => ({ ...override, rank: RANK.commandLine })),
  ];

  // A file that is not valid YAML gives no values to check; its syntax errors are the news.
  if (raw) {
    emptySectionsToMappings(raw, configSchema);
    for (const { path, value, text } of overrides) setPath(raw, path, valueForKey(configSchema, path, value, text));
    const result = configSchema.safeParse(raw, { reportInput: true });
    if (result.success) {
      for (const { path, message } of expandRouteHeaders(result.data, env, options.routeVariables ?? 'required')) problems.push(locateProblem(path, message, overrides, yaml, label));
    }
    if (result.success && problems.length === 0) return { config: result.data, file, originOf: (keyPath) => originOf(keyPath, overrides, yaml, label) };
    for (const issue of result.error?.issues ?? []) {
      const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...issue.path, key]) : [issue.path];
      for (const path of paths.map(toKeyPath)) {
        const message = issue.code === 'unrecognized_keys' ? unknownKeyMessage(path.map(String), configSchema) : describeIssue(issue, showInputAt(path));
        problems.push(locateProblem(path, message, overrides, yaml, label));
      }
    }
  }
  throw new ConfigError(sortProblems(problems));
}

const ENVIRONMENT_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * routes[].upstreamHeaders values name their secrets as ${VARIABLE}, read here from the environment,
 * so tokens stay out of the file. Replaced in place; an unset variable or a value that cannot be
 * a header is a problem (the value itself is never quoted).
 */
function expandRouteHeaders(config: Config, env: NodeJS.ProcessEnv, unset: 'required' | 'optional'): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  config.routes.forEach((route, index) => {
    for (const [name, template] of Object.entries(route.upstreamHeaders)) {
      const path = ['routes', index, 'upstreamHeaders', name];
      const missing = [...template.matchAll(ENVIRONMENT_REFERENCE)].map((match) => match[1]!).filter((variable) => !env[variable]);
      if (missing.length) {
        if (unset === 'required') problems.push({ path, message: `names ${missing.map((variable) => `\${${variable}}`).join(', ')}, which is not set in the environment` });
        continue;
      }
      const value = template.replace(ENVIRONMENT_REFERENCE, (_, variable: string) => env[variable]!);
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) problems.push({ path, message: 'has a control character (a newline?) once its variables are filled in; a header value cannot hold one' });
      else route.upstreamHeaders[name] = value;
    }
  });
  return problems;
}

/**
 * Where the command line works, for relative paths (the default config/mlgate.yaml, config/htpasswd,
 * certs/, a --config typed as a relative path) to resolve against: --dir, else MLGATE_HOME, else
 * undefined (the current directory). Absolute, so it names the same place once the CLI moves there.
 */
export function homeDirectory(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string; origin: string } | undefined {
  // `--dir "$UNSET"` is a mistake; running in the current directory instead would hide it.
  if (flag === '') throw new Error('--dir names no directory (the path is empty)');
  if (flag !== undefined) return { path: resolve(flag), origin: '--dir' };
  // An empty variable is unset, as for every MLGATE_* variable.
  const named = env[HOME_VARIABLE];
  return named ? { path: resolve(named), origin: HOME_VARIABLE } : undefined;
}

/** MLGATE_TLS_CERT -> ['tls', 'cert']: one variable per leaf of the schema. */
export function environmentVariableNames(): Map<string, string[]> {
  return variableNames(configSchema);
}

export { parseScalar } from './environment.ts';

/** `tls:` with every key under it commented out is an empty section, not a missing value. */
function emptySectionsToMappings(raw: Record<string, unknown>, schema: z.ZodType): void {
  for (const [key, child] of Object.entries(shapeOf(schema) ?? {})) {
    if (!shapeOf(child)) continue;
    if (raw[key] === null) raw[key] = {};
    const section = raw[key];
    if (isMapping(section)) emptySectionsToMappings(section, child);
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (node[key] === undefined || node[key] === null) node[key] = {};
    const next = node[key];
    // The file already has something else here; leave it, so that problem is reported.
    if (!isMapping(next)) return;
    node = next;
  }
  node[path[path.length - 1]!] = value;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function toKeyPath(path: readonly PropertyKey[]): (string | number)[] {
  return path.map((key) => (typeof key === 'number' ? key : String(key)));
}

function locateProblem(keyPath: (string | number)[], message: string, overrides: RankedOverride[], yaml: YamlFile | undefined, label: string): Problem {
  const text = `${formatPath(keyPath) || '(top level)'}: ${message}`;
  const override = overrideOf(keyPath, overrides);
  if (override) return { rank: override.rank, line: 0, col: 0, text: `${override.origin}: ${text}` };
  if (!yaml) return { rank: RANK.defaults, line: 0, col: 0, text: `(defaults): ${text}` };
  const { line, col } = yaml.locate(keyPath);
  return { rank: RANK.file, line, col, text: `${label}:${line}: ${text}` };
}

/** The last override that set the key: flags come after the environment. */
function overrideOf(keyPath: readonly (string | number)[], overrides: RankedOverride[]): RankedOverride | undefined {
  return [...overrides].reverse().find((o) => o.path.length <= keyPath.length && o.path.every((key, i) => key === String(keyPath[i])));
}

/** Where a valid configuration's value came from: an override, the file's line that sets it, or the defaults. */
function originOf(keyPath: readonly (string | number)[], overrides: RankedOverride[], yaml: YamlFile | undefined, label: string): string {
  const override = overrideOf(keyPath, overrides);
  if (override) return override.origin;
  let node: unknown = yaml?.value;
  for (const key of keyPath) node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[String(key)] : undefined;
  return yaml && node !== undefined ? `${label}:${yaml.locate(keyPath).line}` : '(defaults)';
}

function sortProblems(problems: Problem[]): string[] {
  return problems
    .map((problem, order) => ({ ...problem, order }))
    .sort((a, b) => a.rank - b.rank || a.line - b.line || a.col - b.col || a.order - b.order)
    .map((problem) => problem.text);
}

/** tls.hosts[1]: the way a reader finds it in the file. */
export function formatPath(path: readonly (string | number)[]): string {
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : i ? `.${key}` : key)).join('');
}

/** Relative to the working directory when inside it, as users typed it; absolute otherwise. */
export function displayPath(file: string, cwd = process.cwd()): string {
  const inside = relative(cwd, file);
  return inside && !inside.startsWith('..') && !isAbsolute(inside) ? inside : file;
}
