// One reading of every request: MLflow's. MLflow parses a request with protobuf's JSON parser
// (json_format.ParseDict, unknown fields ignored), swallows a parse error and runs the handler on the
// half-filled message: fields are set in the order of the JSON object until the first value protobuf
// rejects, and the rest is dropped. A body whose bad value comes before the ids the gateway checked
// (`{"run_uuid": theirs, "timestamp": 1.5, "run_id": mine}`) would have MLflow act on other ids than
// the gateway decided on. So every message MLflow parses this way is checked here as protobuf's
// parser checks it, and a request it would reject is refused with 400 before anything is forwarded.
//
// The messages come from MLflow itself (mlflow-messages.ts, generated from 2.17.2 and 3.11.1 by
// test/mlflow/request-messages.test.ts); the rules are those of protobuf's python json_format.
import { MLFLOW_MESSAGES, type MessageField } from './mlflow-messages.ts';

type Json = Record<string, unknown>;

const INT_RANGE: Readonly<Record<string, readonly [number, number]>> = {
  int32: [-(2 ** 31), 2 ** 31 - 1], sint32: [-(2 ** 31), 2 ** 31 - 1], sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1], fixed32: [0, 2 ** 32 - 1],
  int64: [-(2 ** 63), 2 ** 63 - 1], sint64: [-(2 ** 63), 2 ** 63 - 1], sfixed64: [-(2 ** 63), 2 ** 63 - 1],
  uint64: [0, 2 ** 64 - 1], fixed64: [0, 2 ** 64 - 1],
};
const FLOAT_MAX = 3.4028234663852886e38;
/** Python's int() of a string: optional sign, digits with single underscores between them, blanks around. */
const PYTHON_INT = /^\s*[+-]?\d(?:_?\d)*\s*$/;
/** Python's float() of a string, and protobuf's own spellings of the special values. */
const PYTHON_FLOAT = /^\s*[+-]?(?:(?:\d(?:_?\d)*)?\.?\d(?:_?\d)*(?:[eE][+-]?\d(?:_?\d)*)?|\d(?:_?\d)*\.|inf|infinity|nan)\s*$/i;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
const DURATION = /^-?\d+(?:\.\d{1,9})?s$/;

interface Endpoint {
  message: string;
  segments: readonly string[];
}

/** The message each METHOD + path parses; templates' `{param}` segments match any one segment. */
const exact = new Map<string, string>();
const templated = new Map<string, Endpoint[]>();
for (const [at, message] of Object.entries(MLFLOW_MESSAGES.endpoints)) {
  const [method, path] = at.split(' ') as [string, string];
  if (!path.includes('{')) {
    exact.set(at, message);
    continue;
  }
  const segments = path.split('/');
  const key = `${method} ${segments.length}`;
  templated.set(key, [...(templated.get(key) ?? []), { message, segments }]);
}

/** The protobuf message MLflow parses this request into, or undefined (a Flask route, or one that parses otherwise). */
export function requestMessageOf(method: string, path: string): string | undefined {
  const hit = exact.get(`${method} ${path}`);
  if (hit !== undefined) return hit;
  const segments = path.split('/');
  const candidates = templated.get(`${method} ${segments.length}`);
  return candidates?.find((endpoint) => endpoint.segments.every((s, i) => s === segments[i] || (s.startsWith('{') && segments[i] !== '')))?.message;
}

/**
 * Why protobuf's parser would reject this message (undefined when it would not): `body` is the JSON
 * object of a POST/PATCH/DELETE (or of a GET without a query string); `query` the query string of a
 * GET, read as MLflow reads it (each field by its name, lists repeated, booleans "true"/"false").
 */
export function messageProblem(message: string, input: { body: Json } | { query: URLSearchParams }): string | undefined {
  if ('body' in input) return checkMessage(message, input.body, '');
  const fields = MLFLOW_MESSAGES.messages[message]?.fields ?? [];
  const json: Json = {};
  for (const field of fields) {
    if (!input.query.has(field.name)) continue;
    if (field.repeated) json[field.name] = input.query.getAll(field.name);
    else if (field.type === 'bool') {
      const value = input.query.get(field.name)!.toLowerCase();
      if (value !== 'true' && value !== 'false') return `'${field.name}' must be 'true' or 'false'`;
      json[field.name] = value === 'true';
    } else json[field.name] = input.query.get(field.name);
  }
  return checkMessage(message, json, '');
}

function checkMessage(message: string, value: unknown, path: string): string | undefined {
  switch (message) {
    case 'google.protobuf.Value':
      return undefined;
    case 'google.protobuf.Timestamp':
      return typeof value === 'string' && TIMESTAMP.test(value) ? undefined : `${where(path)} is not an RFC 3339 timestamp`;
    case 'google.protobuf.Duration':
      return typeof value === 'string' && DURATION.test(value) ? undefined : `${where(path)} is not a duration such as "1.5s"`;
    case 'google.protobuf.FieldMask':
      return typeof value === 'string' ? undefined : `${where(path)} is not a field mask string`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return `${where(path)} must be a JSON object`;
  const fields = MLFLOW_MESSAGES.messages[message]?.fields ?? [];
  const seen = new Map<string, string>();
  const oneofs = new Map<string, string>();
  for (const [key, item] of Object.entries(value as Json)) {
    const field = fields.find((f) => f.json === key) ?? fields.find((f) => f.name === key);
    if (!field) continue; // MLflow ignores unknown fields
    const at = path ? `${path}.${key}` : key;
    // Protobuf lets a later spelling (runId after run_id) overwrite an earlier one: one of each only.
    const before = seen.get(field.name);
    if (before !== undefined) return `'${at}' and '${before}' name the same field; give it once`;
    seen.set(field.name, at);
    if (field.oneof !== undefined && item !== null) {
      const other = oneofs.get(field.oneof);
      if (other !== undefined) return `'${at}' and '${other}' are alternatives (${field.oneof}); give one`;
      oneofs.set(field.oneof, at);
    }
    if (item === null) continue; // clears the field
    const problem = checkField(field, item, at);
    if (problem) return problem;
  }
  return undefined;
}

function checkField(field: MessageField, value: unknown, at: string): string | undefined {
  if (field.type === 'map') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return `${where(at)} must be a JSON object (a map)`;
    for (const [key, item] of Object.entries(value as Json)) {
      const keyProblem = field.key === 'string' ? undefined : scalarProblem(field.key!, undefined, key, `${at} key`);
      if (keyProblem) return keyProblem;
      const problem = field.message !== undefined ? checkMessage(field.message, item, `${at}[${key}]`) : scalarProblem(field.value!, field.enum, item, `${at}[${key}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) return `${where(at)} must be a list`;
    for (const [i, item] of value.entries()) {
      if (item === null && field.message !== 'google.protobuf.Value') return `${where(`${at}[${i}]`)} is null`;
      const problem = field.type === 'message' ? checkMessage(field.message!, item, `${at}[${i}]`) : scalarProblem(field.type, field.enum, item, `${at}[${i}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  return field.type === 'message' ? checkMessage(field.message!, value, at) : scalarProblem(field.type, field.enum, value, at);
}

function scalarProblem(type: string, enumValues: Readonly<Record<string, number>> | undefined, value: unknown, at: string): string | undefined {
  const range = INT_RANGE[type];
  if (range) {
    let n: number;
    if (typeof value === 'number') n = value;
    else if (typeof value === 'string' && PYTHON_INT.test(value)) n = Number(value.trim().replace(/_/g, ''));
    else return `${where(at)} is not an integer: ${show(value)}`;
    if (!Number.isInteger(n)) return `${where(at)} is not an integer: ${show(value)}`;
    return n < range[0] || n > range[1] ? `${where(at)} is out of range for ${type}: ${show(value)}` : undefined;
  }
  switch (type) {
    case 'double':
    case 'float': {
      if (typeof value === 'boolean') return undefined; // Python's float(True) is 1.0
      if (typeof value === 'number') return type === 'float' && Math.abs(value) > FLOAT_MAX ? `${where(at)} is out of range for float` : undefined;
      if (typeof value === 'string' && value !== 'nan' && PYTHON_FLOAT.test(value)) return undefined;
      return `${where(at)} is not a number: ${show(value)}`;
    }
    case 'bool':
      return typeof value === 'boolean' ? undefined : `${where(at)} must be true or false, without quotes: ${show(value)}`;
    case 'string':
      if (typeof value !== 'string') return `${where(at)} must be a string: ${show(value)}`;
      return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value) ? `${where(at)} holds an unpaired surrogate` : undefined;
    case 'bytes':
      return typeof value === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(value) ? undefined : `${where(at)} is not base64: ${show(value)}`;
    case 'enum': {
      if (typeof value === 'string' && enumValues && value in enumValues) return undefined;
      // A number (or digits) must be one of the enum's; an unknown name is ignored like an unknown field.
      const number = typeof value === 'boolean' ? Number(value) : typeof value === 'number' ? Math.trunc(value) : typeof value === 'string' && PYTHON_INT.test(value) ? Number(value.trim().replace(/_/g, '')) : undefined;
      if (number === undefined) return typeof value === 'string' ? undefined : `${where(at)} is not a value of its enum: ${show(value)}`;
      return enumValues && Object.values(enumValues).includes(number) ? undefined : `${where(at)} is not a value of its enum: ${show(value)}`;
    }
    default:
      return `${where(at)} has a type mlgate does not know (${type})`;
  }
}

function where(at: string): string {
  return at ? `'${at}'` : 'the message';
}

function show(value: unknown): string {
  return JSON.stringify(value)?.slice(0, 60) ?? String(value);
}
