// How MLflow reads a request message (handlers._get_request_message, reference §2.1): the body
// as JSON whatever its Content-Type, a double-encoded body decoded again, the query string flat,
// and protobuf's camelCase field names. Shared by everything that reads parameters.

export interface ExtractionError {
  ok: false;
  status: 400 | 403;
  code: 'INVALID_PARAMETER_VALUE' | 'PERMISSION_DENIED';
  message: string;
}

export function invalid(message: string): ExtractionError {
  return { ok: false, status: 400, code: 'INVALID_PARAMETER_VALUE', message };
}

export type JsonObject = Record<string, unknown>;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** MLflow's reading of a request body: empty or `null` is `{}`, a JSON string is decoded once more. */
export function parseRequestJson(raw: Uint8Array | string): { ok: true; value: JsonObject } | ExtractionError {
  let text: string;
  try {
    text = typeof raw === 'string' ? raw : UTF8.decode(raw);
  } catch {
    return invalid('the request body is not UTF-8');
  }
  if (text.trim() === '') return { ok: true, value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
    if (typeof value === 'string') value = JSON.parse(value);
  } catch {
    return invalid('the request body is not valid JSON');
  }
  if (value === null) return { ok: true, value: {} };
  if (typeof value !== 'object' || Array.isArray(value)) return invalid('the request body must be a JSON object');
  return { ok: true, value: value as JsonObject };
}

/** Whether werkzeug's request.args has anything: without, a GET takes its message from the body. */
export function hasQueryParams(query: URLSearchParams): boolean {
  for (const _ of query.keys()) return true;
  return false;
}

/** What a field holds: absent, or the strings found (one per list element for `[]` fields). */
export type Read = { absent: true } | { absent: false; values: string[] } | ExtractionError;

export const ABSENT: Read = { absent: true };

const CAMEL_CASE = new Map<string, string>();

/** Field names come from the route table, a few dozen: each is converted once (this runs on every checked request). */
function camelCase(name: string): string {
  let camel = CAMEL_CASE.get(name);
  if (camel === undefined) {
    camel = name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    if (CAMEL_CASE.size < 1000) CAMEL_CASE.set(name, camel);
  }
  return camel;
}

/**
 * A field of the JSON body; dots walk into objects, `[]` into arrays. MLflow's protobuf parser also
 * takes the camelCase spelling of a field (`runId`), so a body that uses it for a field the gateway
 * reads is refused: otherwise the gateway would check `run_uuid` while MLflow acts on `runId`.
 */
export function readJsonField(body: JsonObject, field: string): Read {
  const steps = field.split('.');
  let nodes: unknown[] = [body];
  let list: string | undefined;
  for (const [i, step] of steps.entries()) {
    const each = step.endsWith('[]');
    const key = each ? step.slice(0, -2) : step;
    const last = i === steps.length - 1;
    const next: unknown[] = [];
    for (const node of nodes) {
      if (typeof node !== 'object' || node === null || Array.isArray(node)) return invalid(`${plainField(steps.slice(0, i).join('.'))} must hold JSON objects`);
      const alias = camelCase(key);
      if (alias !== key && Object.hasOwn(node, alias)) return invalid(`the body spells ${key} as ${alias}; use ${key}`);
      const value = Object.hasOwn(node, key) ? (node as JsonObject)[key] : undefined;
      // Protobuf reads null, and an empty string, as "not set".
      if (value === undefined || value === null || (last && list === undefined && value === '')) {
        if (list !== undefined) return invalid(`an element of ${list} has no ${plainField(steps.slice(i).join('.'))}`);
        return ABSENT;
      }
      if (!each) next.push(value);
      else if (Array.isArray(value)) next.push(...value);
      else return invalid(`${key} must be a JSON array`);
    }
    if (each && list === undefined) list = key;
    nodes = next;
  }
  if (nodes.length === 0) return ABSENT;
  const values: string[] = [];
  for (const node of nodes) {
    if (typeof node !== 'string') return invalid(`${plainField(field)} must hold ${list === undefined ? 'a string' : 'strings'}`);
    values.push(node);
  }
  return { absent: false, values };
}

export function plainField(field: string): string {
  return field.replace(/\[\]/g, '');
}

/** Query strings are flat: `name[]` is every value of a repeated key, `name` the first. */
export function readQueryField(query: URLSearchParams, field: string): Read {
  if (field.endsWith('[]')) {
    const values = query.getAll(field.slice(0, -2));
    return values.length === 0 ? ABSENT : { absent: false, values };
  }
  if (field.includes('.')) return ABSENT;
  const value = query.get(field);
  return value === null || value === '' ? ABSENT : { absent: false, values: [value] };
}
