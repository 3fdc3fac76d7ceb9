// Removes what the caller cannot READ from MLflow's search answers: experiments/search,
// registered-models/search, model-versions/search and logged-models/search (the routes whose table
// line says `filter`, see route-rule.ts ResponseFilter).
//
// Pure: the functions take the parsed answer (or its bytes) and the caller's access, and return a
// new answer; they keep no state and never touch the request or response streams. The gateway
// buffers only a 2xx answer of these four routes (small: a page of at most max_results entries) and
// streams everything else untouched; any other status (an MLflow error) passes through unfiltered.
//
// Pagination: `next_page_token` is kept as MLflow sent it, so paging goes on where MLflow's page
// ended. A filtered page can therefore hold fewer than max_results entries, or none, while more
// pages follow. MLflow's own auth app does the same for model versions; for experiments and
// registered models it re-queries to refill the page, which needs the store, not HTTP. The MLflow
// clients and UI page until next_page_token is absent, so they see every entry they may read.
import { atLeast, type PermissionLevel } from './levels.ts';
import type { CarrierKind, ResponseFilter } from './route-rule.ts';
import { tagsFrom, type ResourceInfo } from './grants-client.ts';

export type { ResourceInfo } from './grants-client.ts';

/** The caller's level on an experiment or registered model from what a search entry says about it (id, name, tags). */
export type LevelOf = (kind: CarrierKind, info: ResourceInfo) => PermissionLevel | Promise<PermissionLevel>;

/** What the filter may ask about the caller. Bind the principal when building it (one per request). */
export interface SearchAccess {
  levelOf: LevelOf;
  /** The level on a registered model known only by name (model versions): looked up, and cached, by the caller's resolver. */
  levelOfModel(name: string): Promise<PermissionLevel>;
  /** The level on an experiment known only by id (logged models). */
  levelOfExperiment(id: string): Promise<PermissionLevel>;
}

/** The answer's shape is not MLflow's: the caller should answer 502 rather than pass it on unfiltered. */
export class SearchFilterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SearchFilterError';
  }
}

/** The list each search answers with. */
export const SEARCH_LIST_FIELD: Readonly<Record<ResponseFilter, string>> = {
  experiments: 'experiments',
  'registered-models': 'registered_models',
  'model-versions': 'model_versions',
  'logged-models': 'models',
};

type Json = Record<string, unknown>;

const READ: PermissionLevel = 'READ';

/**
 * The answer without the entries the caller cannot READ; every other field (next_page_token
 * included) as it was. An entry that does not name its resource is removed (fails closed). MLflow
 * leaves an empty list out of its JSON; an answer without the list comes back as it is.
 */
export async function filterSearchResponse(kind: ResponseFilter, body: unknown, access: SearchAccess): Promise<unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new SearchFilterError(`the ${kind} search answer is not a JSON object`);
  const field = SEARCH_LIST_FIELD[kind];
  const entries = (body as Json)[field];
  if (entries === undefined) return body;
  if (!Array.isArray(entries)) throw new SearchFilterError(`"${field}" in the ${kind} search answer is not a list`);
  const keep = await readable(kind, entries, access);
  return { ...(body as Json), [field]: entries.filter((_, i) => keep[i]) };
}

/** The same on the raw answer: parses it, filters, and serialises it again (for the proxy's buffered 2xx answers). */
export async function filterSearchResponseBytes(kind: ResponseFilter, bytes: Uint8Array | string, access: SearchAccess): Promise<Buffer> {
  let body: unknown;
  try {
    body = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new SearchFilterError(`the ${kind} search answer is not valid JSON`);
  }
  return Buffer.from(JSON.stringify(await filterSearchResponse(kind, body, access)), 'utf8');
}

async function readable(kind: ResponseFilter, entries: unknown[], access: SearchAccess): Promise<boolean[]> {
  switch (kind) {
    case 'experiments':
      return Promise.all(entries.map(async (entry) => {
        const info = experimentInfo(entry);
        return info !== undefined && atLeast(await access.levelOf('experiment', info), READ);
      }));
    case 'registered-models':
      return Promise.all(entries.map(async (entry) => {
        const info = modelInfo(entry);
        return info !== undefined && atLeast(await access.levelOf('registered-model', info), READ);
      }));
    case 'model-versions':
      // A version carries its model's name only: one lookup per distinct model, in parallel.
      return byKey(entries, (entry) => stringField(entry, 'name'), access.levelOfModel.bind(access));
    case 'logged-models':
      return byKey(entries, (entry) => stringField(field(entry, 'info'), 'experiment_id'), access.levelOfExperiment.bind(access));
  }
}

/** Looks each distinct key up once; an entry without a key is not readable. */
async function byKey(entries: unknown[], keyOf: (entry: unknown) => string | undefined, levelOf: (key: string) => Promise<PermissionLevel>): Promise<boolean[]> {
  const keys = entries.map(keyOf);
  const distinct = [...new Set(keys.filter((key): key is string => key !== undefined))];
  const levels = new Map(await Promise.all(distinct.map(async (key) => [key, await levelOf(key)] as const)));
  return keys.map((key) => key !== undefined && atLeast(levels.get(key) ?? 'NO_PERMISSIONS', READ));
}

function field(entry: unknown, name: string): unknown {
  return typeof entry === 'object' && entry !== null && !Array.isArray(entry) ? (entry as Json)[name] : undefined;
}

function stringField(entry: unknown, name: string): string | undefined {
  const value = field(entry, name);
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function experimentInfo(entry: unknown): ResourceInfo | undefined {
  const id = stringField(entry, 'experiment_id');
  const name = stringField(entry, 'name');
  return id === undefined || name === undefined ? undefined : { id, name, tags: tagsFrom(field(entry, 'tags')) };
}

function modelInfo(entry: unknown): ResourceInfo | undefined {
  const name = stringField(entry, 'name');
  return name === undefined ? undefined : { name, tags: tagsFrom(field(entry, 'tags')) };
}
