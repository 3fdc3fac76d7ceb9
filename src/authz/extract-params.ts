// Reads the resource ids a request names exactly where MLflow's handler will read them, so the
// gateway never checks one id while MLflow acts on another. MLflow's rules (reference §2.1): GET
// takes the query string (repeated keys for lists, the first value otherwise), or the JSON body
// when the query string is empty; every other method takes the JSON body, whatever its
// Content-Type. Flask routes outside the RPCs read their own places (route-rule.ts ParamSource).
import { EXPERIMENT_ID, experimentOfArtifactPath, fileNameProblem, relativePathProblem } from './artifact-path.ts';
import { levelRank, type PermissionLevel } from './levels.ts';
import {
  ABSENT, hasQueryParams, invalid, plainField, readJsonField, readQueryField,
  type ExtractionError, type JsonObject, type Read,
} from './mlflow-message.ts';
import type { PathCheck, RefKind, ResourceSpec, RouteRule } from './route-rule.ts';
import { DEFAULT_WORKSPACE, WORKSPACE_NAME } from './workspace.ts';

export { hasQueryParams, parseRequestJson, type ExtractionError } from './mlflow-message.ts';

export type ResourceRef =
  | { kind: 'experiment' | 'run' | 'logged-model' | 'trace' | 'dataset'; id: string }
  | { kind: 'experiment-name' | 'registered-model' | 'workspace'; name: string }
  | { kind: 'artifact-path'; experimentId: string; path: string }
  /**
   * A location in no scheme the gateway can map to a resource (s3://, https://, file:, a path...):
   * it must lie inside the artifacts of the run (or logged model) the request names, and is checked
   * on that run's experiment.
   */
  | { kind: 'location'; uri: string; runId?: string; loggedModelId?: string };

export interface ResourceCheck {
  ref: ResourceRef;
  level: PermissionLevel;
  /** Where the id was read, for logs and messages: "body run_id", "query name", "path trace_id". */
  source: string;
  /** A create's own id (ResourceSpec.ifExists): checked only if something by that id exists now. */
  ifExists?: boolean;
}

export interface ExtractedResources {
  ok: true;
  /** Each resource once, with the highest level any of the rule's checks asks of it. */
  checks: ResourceCheck[];
  /** Tag keys written or deleted (rules with writesTags), for the reserved-key checks. */
  tagKeys: string[];
  /** The name a create gives, or a rename moves to. */
  newName?: string;
}

interface RequestParams {
  query: URLSearchParams;
  /** The parsed JSON body (parseRequestJson) when needsRequestBody said to read it; otherwise undefined. */
  body: unknown;
  pathParams: Readonly<Record<string, string>>;
  headers?: Readonly<Record<string, string | string[] | undefined>>;
  /** The MLflow workspace the request acts in (artifact paths may name it). */
  workspace: string;
}

/** Enough for the UI's widest comparisons; more would be a flood of upstream look-ups. */
export const MAX_IDS_PER_REQUEST = 1000;

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,255}$/;
const OBJECT_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}$/;
const NAME = /^[^\u0000-\u001f\u007f]{1,1024}$/;

/** `get`: a GET without a query string, whose message MLflow takes from the body instead. */
type Message = { from: 'query'; query: URLSearchParams } | { from: 'body'; body: JsonObject; get: boolean };

function messageOf(rule: RouteRule, request: RequestParams): Message {
  if (rule.method === 'GET' && hasQueryParams(request.query)) return { from: 'query', query: request.query };
  if (request.body === undefined) {
    if (rule.readsMessage) throw new Error(`extractResources: ${rule.method} ${rule.name} reads the JSON body, but none was given (see needsRequestBody)`);
    return { from: 'body', body: {}, get: rule.method === 'GET' };
  }
  return { from: 'body', body: request.body as JsonObject, get: rule.method === 'GET' };
}

function readMessageField(message: Message, field: string): Read {
  return message.from === 'query' ? readQueryField(message.query, field) : readJsonField(message.body, field);
}

function readSource(spec: Pick<ResourceSpec, 'from' | 'field'>, message: Message, request: RequestParams): Read {
  switch (spec.from) {
    case 'message':
      return readMessageField(message, spec.field);
    case 'query':
      return readQueryField(request.query, spec.field);
    case 'path': {
      const value = request.pathParams[spec.field];
      return value === undefined || value === '' ? ABSENT : { absent: false, values: [value] };
    }
    case 'header': {
      const value = request.headers?.[spec.field];
      if (Array.isArray(value)) return invalid(`the ${spec.field} header is given more than once`);
      return value === undefined || value === '' ? ABSENT : { absent: false, values: [value] };
    }
  }
}

/** "body", "query", "path" or "header": where a value was read. */
function whereOf(from: ResourceSpec['from'], message: Message): string {
  return from === 'message' ? message.from : from;
}

const PLACE: Readonly<Record<string, string>> = { body: 'the JSON body', query: 'the query string', path: 'the path', header: 'the request headers' };

function refFor(kind: RefKind, value: string, spec: ResourceSpec, workspace: string): ResourceRef | ExtractionError {
  const bad = (what: string) => invalid(`'${plainField(spec.field)}' is not ${what}: ${JSON.stringify(value.slice(0, 100))}`);
  switch (kind) {
    case 'experiment':
      return EXPERIMENT_ID.test(value) ? { kind, id: value } : bad('an experiment id');
    case 'run':
      return RUN_ID.test(value) ? { kind, id: value } : bad('a run id');
    case 'logged-model':
    case 'trace':
    case 'dataset':
      return OBJECT_ID.test(value) ? { kind, id: value } : bad(`a ${kind} id`);
    case 'experiment-name':
    case 'registered-model':
      return NAME.test(value) ? { kind, name: value } : bad('a name');
    case 'workspace':
      return value === DEFAULT_WORKSPACE || WORKSPACE_NAME.test(value) ? { kind, name: value } : bad('a workspace name');
    case 'artifact-path': {
      const found = experimentOfArtifactPath(value, spec.from !== 'path', workspace);
      return found.ok ? { kind, experimentId: found.experimentId, path: value } : invalid(found.reason);
    }
    case 'model-source':
      throw new Error('refFor: a model source may name several resources (refsOfModelSource)');
    case 'prompt-uri': {
      // MLflow reads `prompts:/<name>/<version>` (or `@<alias>`, or the name alone for the latest).
      const rest = value.startsWith('prompts:/') ? value.slice('prompts:/'.length) : undefined;
      if (rest === undefined || /[?#\u0000-\u001f\u007f]/.test(rest)) return bad('a prompts:/<name>/<version> URI');
      const name = rest.includes('/') ? rest.slice(0, rest.indexOf('/')) : rest.includes('@') ? rest.slice(0, rest.lastIndexOf('@')) : rest;
      return name.trim() !== '' && NAME.test(name) ? { kind: 'registered-model', name } : bad('a prompts:/<name>/<version> URI');
    }
  }
}

const URI_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

/**
 * Sources MLflow's own client gives prompt versions (3.x). MLflow reads a prompt version's source
 * without its local-path checks, so these placeholders are the only schemeless sources allowed.
 */
const PROMPT_PLACEHOLDER_SOURCES: ReadonlySet<string> = new Set(['prompt-template', 'dummy-source']);

/** Where the model version's files are looked for when the source is no URI the gateway maps: the run or logged model the request names. */
interface SourceOwners {
  runId?: string;
  loggedModelId?: string;
}

/**
 * What a model version's source URI names, read as MLflow reads it (urllib.parse.urlsplit, then the
 * mlflow-artifacts proxy, RunsArtifactRepository or _parse_model_uri): the experiment of a proxied
 * artifact path, the run of `runs:/<run_id>/...`, the registered model of `models:/<name>/<suffix>` or
 * `models:/<name>@<alias>`, the logged model of `models:/<model_id>` (3.x). Any other location (an
 * external store, an http(s) URL, a local path) is read by /model-versions/get-artifact straight
 * from there, so it must lie inside the artifacts of the run_id or model_id the request names
 * (a `location` ref); the prompt placeholders name nothing. A source these schemes would read
 * differently than the gateway (a query, a fragment, leading blanks, control characters, `..`) is
 * refused.
 */
function refsOfModelSource(source: string, workspace: string, field = 'source', owners: SourceOwners = {}): ResourceRef[] | ExtractionError {
  const bad = (why: string) => invalid(`'${field}' ${why}: ${JSON.stringify(source.slice(0, 100))}`);
  // urlsplit drops leading blanks and control characters, and tabs and newlines anywhere.
  if (/^[\u0000-\u0020]/.test(source) || /[\t\r\n]/.test(source)) return bad('starts with a blank or holds a tab or newline');
  const scheme = URI_SCHEME.exec(source)?.[1]?.toLowerCase();
  if (scheme !== 'mlflow-artifacts' && scheme !== 'runs' && scheme !== 'models') {
    if (PROMPT_PLACEHOLDER_SOURCES.has(source)) return [];
    if (/[\u0000-\u001f\u007f\\]/.test(source) || dotSegment(source)) return bad('holds a "." or ".." segment (raw or encoded), a backslash or a control character');
    return [{ kind: 'location', uri: source, ...owners }];
  }
  if (/[?#\u0000-\u001f\u007f]/.test(source)) return bad(`is a ${scheme}: URI with "?", "#" or a control character`);
  let path = source.slice(scheme.length + 1);
  if (path.startsWith('//')) {
    const end = path.indexOf('/', 2);
    path = end === -1 ? '' : path.slice(end);
  }
  switch (scheme) {
    case 'mlflow-artifacts': {
      // The proxy drops one leading slash of the path (_get_proxied_run_artifact_destination_path).
      const relative = path.startsWith('/') ? path.slice(1) : path;
      const found = experimentOfArtifactPath(relative, true, workspace);
      return found.ok ? [{ kind: 'artifact-path', experimentId: found.experimentId, path: relative }] : bad(found.reason.replace(/^artifact path/, 'is an artifact path that'));
    }
    case 'runs': {
      const runId = path.startsWith('/') ? path.slice(1).split('/')[0]! : '';
      if (!RUN_ID.test(runId)) return bad('is a runs:/ URI without a run id');
      if (owners.runId !== undefined && owners.runId !== runId) return bad(`names run ${runId}, but run_id is ${JSON.stringify(owners.runId)}`);
      return [{ kind: 'run', id: runId }];
    }
    case 'models': {
      const parts = path.startsWith('/') && path.length > 1 ? path.replace(/^\/+/, '').split('/') : [];
      const first = parts[0] ?? '';
      if (parts.length === 0 || parts.length > 2 || first.trim() === '') return bad('is not a models:/<name>/<version> or models:/<name>@<alias> URI');
      const name = parts.length === 2 ? first : first.includes('@') ? first.slice(0, first.lastIndexOf('@')) : undefined;
      if (name === undefined) return OBJECT_ID.test(first) ? [{ kind: 'logged-model', id: first }] : bad('is not a models:/<model_id> URI');
      return NAME.test(name) ? [{ kind: 'registered-model', name }] : bad('names no registered model');
    }
  }
}

/** A "." or ".." path segment, also percent-encoded (MLflow unquotes until nothing changes). */
function dotSegment(uri: string): boolean {
  let decoded = uri;
  for (let i = 0; i < 4; i++) {
    let next: string;
    try {
      next = decodeURIComponent(decoded);
    } catch {
      return true;
    }
    if (next === decoded) break;
    decoded = next;
  }
  return decoded.split(/[/\\]/).some((segment) => segment === '.' || segment === '..');
}

function missing(spec: ResourceSpec, message: Message): ExtractionError {
  if (spec.ref === 'artifact-path') {
    return { ok: false, status: 403, code: 'PERMISSION_DENIED', message: 'only admins may list the artifact root; give path=<experiment_id>/...' };
  }
  const atLeastOne = spec.field.includes('[]') ? ' (at least one)' : '';
  const place = spec.from === 'message' && message.from === 'body' && message.get ? 'the query string (or, without one, the JSON body)' : PLACE[whereOf(spec.from, message)];
  return invalid(`Missing value for required parameter '${plainField(spec.field)}'${atLeastOne} in ${place}`);
}

function checksOf(spec: ResourceSpec, message: Message, request: RequestParams): ResourceCheck[] | ExtractionError {
  let read = readSource(spec, message, request);
  let field = spec.field;
  if ('ok' in read) return read;
  if (spec.fallback !== undefined) {
    // MLflow takes the fallback (run_uuid) when the field (run_id) is empty: two that disagree are
    // two readings of one request, and are refused rather than guessed between.
    const fallback = readSource({ from: spec.from, field: spec.fallback }, message, request);
    if ('ok' in fallback) return fallback;
    if (read.absent) {
      read = fallback;
      field = spec.fallback;
    } else if (!fallback.absent && fallback.values.join('\u0000') !== read.values.join('\u0000')) {
      return invalid(`'${plainField(spec.field)}' and '${plainField(spec.fallback)}' name different resources: ${JSON.stringify(read.values[0]?.slice(0, 64))} and ${JSON.stringify(fallback.values[0]?.slice(0, 64))}`);
    }
  }
  if (read.absent) return spec.optional ? [] : missing(spec, message);
  if (read.values.length > MAX_IDS_PER_REQUEST) return invalid(`'${plainField(field)}' lists ${read.values.length} ids; at most ${MAX_IDS_PER_REQUEST} are checked per request`);
  const source = `${whereOf(spec.from, message)} ${field}`;
  const checks: ResourceCheck[] = [];
  for (const value of read.values) {
    if (spec.ref === 'model-source') {
      const refs = refsOfModelSource(value, request.workspace, plainField(field), sourceOwners(message));
      if (!Array.isArray(refs)) return refs;
      for (const ref of refs) checks.push({ ref, level: spec.level, source });
      continue;
    }
    const ref = refFor(spec.ref, value, spec, request.workspace);
    if ('ok' in ref) return ref;
    checks.push({ ref, level: spec.level, source, ...(spec.ifExists ? { ifExists: true } : {}) });
  }
  if (spec.twin !== undefined && checks.length === 1) {
    const twin = readMessageField(message, spec.twin);
    if ('ok' in twin) return twin;
    const named = (checks[0]!.ref as { id?: string }).id;
    if (!twin.absent && twin.values[0] !== named) {
      return invalid(`the path names ${spec.field} ${JSON.stringify(named)} but the ${message.from === 'body' ? 'body' : 'query'} names ${spec.twin} ${JSON.stringify(twin.values[0])}`);
    }
  }
  return checks;
}

function pathProblem(check: PathCheck, message: Message, request: RequestParams): ExtractionError | undefined {
  const read = check.from === 'message' ? readMessageField(message, check.field) : readQueryField(request.query, check.field);
  if ('ok' in read) return read;
  if (read.absent) return undefined;
  const value = read.values[0]!;
  const problem = check.kind === 'file-name' ? fileNameProblem(value) : relativePathProblem(value);
  return problem ? invalid(`'${check.field}' ${problem}`) : undefined;
}

/** The run_id and model_id a create names beside its source (absent or not a string: none). */
function sourceOwners(message: Message): SourceOwners {
  const owners: SourceOwners = {};
  for (const [field, key] of [['run_id', 'runId'], ['model_id', 'loggedModelId']] as const) {
    const read = readMessageField(message, field);
    if (!('ok' in read) && !read.absent && read.values[0]) owners[key] = read.values[0];
  }
  return owners;
}

function keyOf(ref: ResourceRef): string {
  if (ref.kind === 'location') return `${ref.kind}\u0000${ref.uri}`;
  if ('id' in ref) return `${ref.kind}\u0000${ref.id}`;
  if ('name' in ref) return `${ref.kind}\u0000${ref.name}`;
  return `${ref.kind}\u0000${ref.experimentId}`;
}

/**
 * The resources a request names, each with the level it needs, or the 400 (403 for listing the
 * artifact root) MLflow's shape calls for. Rules without resources give no checks. Admins need
 * not be checked at all, but still go through this for tag keys and names on creates.
 */
export function extractResources(rule: RouteRule, request: RequestParams): ExtractedResources | ExtractionError {
  const message = messageOf(rule, request);
  const byResource = new Map<string, ResourceCheck>();
  for (const spec of rule.find) {
    const found = checksOf(spec, message, request);
    if (!Array.isArray(found)) return found;
    for (const check of found) {
      const key = keyOf(check.ref);
      const seen = byResource.get(key);
      // Named twice: the higher level, and "only if it exists" only if both say so.
      const merged = !seen || levelRank(check.level) > levelRank(seen.level) ? check : seen;
      byResource.set(key, seen && !(seen.ifExists && check.ifExists) && merged.ifExists ? { ...merged, ifExists: false } : merged);
    }
  }
  for (const check of rule.checksPaths ?? []) {
    const problem = pathProblem(check, message, request);
    if (problem) return problem;
  }
  const result: ExtractedResources = { ok: true, checks: [...byResource.values()], tagKeys: [] };
  if (rule.writesTags) {
    const keys = readMessageField(message, rule.writesTags.keyField);
    if ('ok' in keys) return keys;
    if (!keys.absent) result.tagKeys = keys.values;
  }
  const nameField = rule.renames?.newNameField ?? (rule.creates ? 'name' : undefined);
  if (nameField !== undefined) {
    const name = readMessageField(message, nameField);
    if ('ok' in name) return name;
    if (!name.absent) result.newName = name.values[0];
  }
  return result;
}
