// Walks a zod object schema by key path, so environment variables, the example file, secret
// redaction and `config check` all follow the one schema instead of keeping lists of their own.
import { z } from 'zod';

type Def = { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType> };
const WRAPPERS = ['default', 'prefault', 'optional', 'nullable', 'readonly'];

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** The schema and every wrapper around it (default, optional...), outermost first. */
function layers(schema: z.ZodType): z.ZodType[] {
  const found = [schema];
  let def = defOf(schema);
  while (def.innerType && WRAPPERS.includes(def.type)) {
    found.push(def.innerType);
    def = defOf(def.innerType);
  }
  return found;
}

export function unwrap(schema: z.ZodType): z.ZodType {
  return layers(schema).at(-1)!;
}

export function shapeOf(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const def = defOf(unwrap(schema));
  return def.type === 'object' ? def.shape : undefined;
}

export function isArraySchema(schema: z.ZodType): boolean {
  return defOf(unwrap(schema)).type === 'array';
}

/** Every key path that holds a value rather than a section, in schema order. */
export function leafPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  const shape = shapeOf(schema);
  if (!shape) return [prefix];
  return Object.entries(shape).flatMap(([key, child]) => leafPaths(child, [...prefix, key]));
}

export function schemaAt(schema: z.ZodType, path: readonly (string | number)[]): z.ZodType | undefined {
  let current: z.ZodType | undefined = schema;
  for (const key of path) current = current && shapeOf(current)?.[String(key)];
  return current;
}

/** Marks a key whose value must never be printed: `config check` redacts it, messages do not quote it. */
export function secret<T extends z.ZodType>(schema: T): T {
  return schema.meta({ secret: true });
}

function isSecretSchema(schema: z.ZodType): boolean {
  return layers(schema).some((layer) => z.globalRegistry.get(layer)?.secret === true);
}

export function secretPaths(schema: z.ZodType): string[][] {
  return leafPaths(schema).filter((path) => isSecretSchema(schemaAt(schema, path)!));
}
