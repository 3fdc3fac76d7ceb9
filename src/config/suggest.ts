// "did you mean ...?" for misspelt keys and environment variables. Typos and snake_case
// (bcrypt_cost for bcryptCost) are the usual reasons a key is unknown.
import type { z } from 'zod';
import { leafPaths, schemaAt, shapeOf } from './schema-paths.ts';

/** The candidate the name most plausibly meant, or undefined when none is close. */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  const wanted = normalize(name);
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(wanted, normalize(candidate));
    if (distance === 0) return candidate;
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  const allowed = Math.min(2, Math.floor(wanted.length / 3));
  return best && best.distance <= allowed ? best.candidate : undefined;
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/[_\-.\s]/g, '');
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** "unknown key", with the key probably meant: a near sibling, or the same name in another section. */
export function unknownKeyMessage(path: string[], schema: z.ZodType): string {
  const key = path.at(-1)!;
  const parent = path.slice(0, -1);
  const sibling = closestName(key, Object.keys(shapeOf(schemaAt(schema, parent) ?? schema) ?? {}));
  const guess = sibling ? [...parent, sibling].join('.') : keyFromAnotherSection(key, schema);
  return guess ? `unknown key (did you mean ${guess}?)` : 'unknown key';
}

/** `realm` at the top level meant auth.realm; `tls_cert` meant tls.cert. */
function keyFromAnotherSection(key: string, schema: z.ZodType): string | undefined {
  const letters = (text: string) => text.toLowerCase().replace(/[^a-z0-9]/g, '');
  return leafPaths(schema)
    .map((leaf) => leaf.join('.'))
    .find((leaf) => letters(leaf) === letters(key) || letters(leaf.split('.').at(-1)!) === letters(key));
}
