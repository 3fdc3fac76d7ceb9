// Removes what the caller cannot READ from MLflow's search answers: experiments/search,
// registered-models/search, model-versions/search and logged-models/search (the routes whose table
// line says `filter`, see route-rule.ts ResponseFilter).
//
// An answer with hidden entries removed must read exactly as MLflow's answer would if those entries
// did not exist, or a filter on a hidden attribute (`name LIKE 'secret-a%'`) tells them apart from
// none, a character at a time:
// - an empty list is left out of the JSON, as MLflow leaves it out;
// - a page holds max_results visible entries unless the results end: when hidden entries left it
//   short, the next upstream pages are fetched (each asking for just the entries still missing, so
//   nothing is cut mid-page) until it is full or MLflow gives no next_page_token;
// - next_page_token is there only when a visible entry follows, and points at it: after a full page
//   the gateway looks ahead one entry at a time past hidden ones (MLflow's tokens are offsets, good
//   for any max_results). Past MAX_UPSTREAM_PAGES upstream pages the answer is what was found, with
//   the token to go on.
//
// Pure apart from the pager it is given: no state, no request or response streams.
import { atLeast, type PermissionLevel } from './levels.ts';
import type { CarrierKind, ResponseFilter } from './route-rule.ts';
import { tagsFrom, type TaggedResource } from './mlflow-client.ts';

/** The caller's level on an experiment or registered model from what a search entry says about it (id, name, tags). */
export type LevelOf = (kind: CarrierKind, info: TaggedResource) => PermissionLevel | Promise<PermissionLevel>;

/** What the filter may ask about the caller. Bind the principal when building it (one per request). */
export interface SearchAccess {
  levelOf: LevelOf;
  /** The level on a registered model known only by name (model versions): looked up, and cached, by the caller's resolver. */
  levelOfModel(name: string): Promise<PermissionLevel>;
  /** The level on an experiment known only by id (logged models). */
  levelOfExperiment(id: string): Promise<PermissionLevel>;
  /** READ on a workspace the caller may use, NO_PERMISSIONS on any other. */
  levelOfWorkspace(name: string): Promise<PermissionLevel>;
}

/** The answer's shape is not MLflow's: the caller should answer 502 rather than pass it on unfiltered. */
export class SearchFilterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SearchFilterError';
  }
}

/** The list each search answers with. */
const SEARCH_LIST_FIELD: Readonly<Record<ResponseFilter, string>> = {
  experiments: 'experiments',
  'registered-models': 'registered_models',
  'model-versions': 'model_versions',
  'logged-models': 'models',
  workspaces: 'workspaces',
};

type Json = Record<string, unknown>;

const READ: PermissionLevel = 'READ';

/** At most this many upstream pages make one filtered page (the client's first included). */
const MAX_UPSTREAM_PAGES = 10;

/** Fetches the next upstream page of the same search: from `pageToken`, at most `maxResults` entries. */
type SearchPager = (pageToken: string, maxResults: number) => Promise<unknown>;

/**
 * The page the caller sees: the upstream answer without the entries the caller cannot READ, topped
 * up from the following upstream pages until it holds `maxResults` entries (the request's, or else
 * the size of MLflow's first page), as described at the top. An entry that does not name its
 * resource is removed (fails closed). Fields other than the list and the token come from the first page.
 */
export async function filterSearchResponse(kind: ResponseFilter, first: unknown, access: SearchAccess, maxResults?: number, nextPage?: SearchPager): Promise<unknown> {
  const field = SEARCH_LIST_FIELD[kind];
  const page = answerOf(kind, first);
  const firstEntries = page[field] as unknown[];
  const visible = await visibleOf(kind, firstEntries, access);
  let token = tokenOf(page);
  const wanted = maxResults ?? firstEntries.length;
  let pages = 1;
  for (; nextPage && token !== undefined && visible.length < wanted && pages < MAX_UPSTREAM_PAGES; pages++) {
    const more = answerOf(kind, await nextPage(token, wanted - visible.length));
    visible.push(...await visibleOf(kind, more[field] as unknown[], access));
    token = tokenOf(more);
  }
  // A full page: the token is kept only if a visible entry follows, and it must start there. One
  // entry at a time, the hidden ones are stepped over.
  for (; nextPage && token !== undefined && pages < MAX_UPSTREAM_PAGES; pages++) {
    const peek = answerOf(kind, await nextPage(token, 1));
    const entries = peek[field] as unknown[];
    if (entries.length === 0 && tokenOf(peek) === undefined) token = undefined;
    else if ((await visibleOf(kind, entries, access)).length > 0) break;
    else token = tokenOf(peek);
  }
  const answer: Json = { ...page };
  delete answer[field];
  delete answer.next_page_token;
  if (visible.length) answer[field] = visible;
  if (token !== undefined) answer.next_page_token = token;
  return answer;
}

/** The answer as an object whose list is an array (MLflow leaves an empty one out). */
function answerOf(kind: ResponseFilter, body: unknown): Json {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new SearchFilterError(`the ${kind} search answer is not a JSON object`);
  const field = SEARCH_LIST_FIELD[kind];
  const entries = (body as Json)[field];
  if (entries !== undefined && !Array.isArray(entries)) throw new SearchFilterError(`"${field}" in the ${kind} search answer is not a list`);
  return { ...(body as Json), [field]: entries ?? [] };
}

function tokenOf(page: Json): string | undefined {
  const token = page.next_page_token;
  return typeof token === 'string' && token !== '' ? token : undefined;
}

async function visibleOf(kind: ResponseFilter, entries: unknown[], access: SearchAccess): Promise<unknown[]> {
  const keep = await readable(kind, entries, access);
  return entries.filter((_, i) => keep[i]);
}

/** The same on the raw answer: parses it, filters, and serialises it again (for the proxy's buffered 2xx answers). */
export async function filterSearchResponseBytes(kind: ResponseFilter, bytes: Uint8Array | string, access: SearchAccess, maxResults?: number, nextPage?: SearchPager): Promise<Buffer> {
  let body: unknown;
  try {
    body = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new SearchFilterError(`the ${kind} search answer is not valid JSON`);
  }
  return Buffer.from(JSON.stringify(await filterSearchResponse(kind, body, access, maxResults, nextPage)), 'utf8');
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
    case 'workspaces':
      return byKey(entries, (entry) => stringField(entry, 'name'), access.levelOfWorkspace.bind(access));
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

function experimentInfo(entry: unknown): TaggedResource | undefined {
  const id = stringField(entry, 'experiment_id');
  const name = stringField(entry, 'name');
  return id === undefined || name === undefined ? undefined : { id, name, tags: tagsFrom(field(entry, 'tags')) };
}

function modelInfo(entry: unknown): TaggedResource | undefined {
  const name = stringField(entry, 'name');
  return name === undefined ? undefined : { name, tags: tagsFrom(field(entry, 'tags')) };
}
