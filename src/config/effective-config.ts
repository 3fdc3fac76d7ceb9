// The configuration in effect, printed so it can be read, diffed, or pasted back into mlgate.yaml.
import { stringify } from 'yaml';
import type { z } from 'zod';
import { leafPaths, schemaAt, secretPaths, unwrap } from './schema-paths.ts';
import { configSchema, duration, formatDuration, type Config } from './schema.ts';

export const REDACTED = '(redacted)';

/** A copy with the value at each path replaced; keys that are not set stay absent. */
export function redactSecrets<T>(value: T, paths: readonly (readonly string[])[]): T {
  const copy = structuredClone(value);
  for (const path of paths) {
    let node: unknown = copy;
    for (const key of path.slice(0, -1)) node = isRecord(node) ? node[key] : undefined;
    const leaf = path.at(-1)!;
    if (isRecord(node) && node[leaf] !== undefined) node[leaf] = REDACTED;
  }
  return copy;
}

/** YAML in schema order; durations as "30s" since a bare number in the file means seconds, not ms. */
export function effectiveConfigYaml(config: Config, schema: z.ZodType = configSchema): string {
  const printable = structuredClone(config) as unknown as Record<string, unknown>;
  for (const path of leafPaths(schema)) {
    if (unwrap(schemaAt(schema, path)!) !== duration) continue;
    // An optional section left out (state.redis) has no parent to print.
    const parent = path.slice(0, -1).reduce<Record<string, unknown> | undefined>((node, key) => node?.[key] as Record<string, unknown> | undefined, printable);
    if (!parent) continue;
    const ms = parent[path.at(-1)!];
    if (typeof ms === 'number') parent[path.at(-1)!] = formatDuration(ms);
  }
  // Route headers carry tokens read from the environment (${JUPYTER_TOKEN}): only their names show.
  for (const route of (printable.routes ?? []) as { upstreamHeaders?: Record<string, string> }[]) {
    for (const name of Object.keys(route.upstreamHeaders ?? {})) route.upstreamHeaders![name] = REDACTED;
  }
  return stringify(redactSecrets(printable, secretPaths(schema)));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
