// Every route of MLflow 2.17.2 and 3.11.1 (and its basic-auth app), compiled once at start-up into a
// Map for exact paths and a short list of patterns for paths with parameters. The table itself is
// data in routes-*.ts; a line that repeats a route, or a template that does not parse, fails here
// at import time rather than at the first request.
import { carrierOf, type HttpMethod, type RouteDef, type RouteRule } from './route-rule.ts';
import { AI_GATEWAY_ROUTES, JOB_ROUTES, UPSTREAM_AUTH_ROUTES, WEBHOOK_ROUTES, WORKSPACE_ROUTES } from './routes-admin.ts';
import { ARTIFACT_ROUTES } from './routes-artifacts.ts';
import { EXPERIMENT_ROUTES, RUN_ROUTES } from './routes-experiments.ts';
import { DATASET_ROUTES, ISSUE_ROUTES, PROMPT_OPTIMIZATION_ROUTES, SCORER_ROUTES } from './routes-genai.ts';
import { LOGGED_MODEL_ROUTES } from './routes-logged-models.ts';
import {
  LABEL_SCHEMA_ROUTES, MCP_REGISTRY_ROUTES, PRESIGNED_UPLOAD_ROUTES, REVIEW_QUEUE_ROUTES, UPSTREAM_RBAC_ROUTES,
} from './routes-newest.ts';
import { REGISTRY_ROUTES } from './routes-registry.ts';
import { SERVER_ROUTES } from './routes-server.ts';
import { TRACE_ROUTES } from './routes-traces.ts';

/** The table by family, in the order of the reference. */
const ROUTE_FAMILIES: Readonly<Record<string, readonly RouteDef[]>> = {
  experiments: EXPERIMENT_ROUTES,
  runs: RUN_ROUTES,
  traces: TRACE_ROUTES,
  'logged-models': LOGGED_MODEL_ROUTES,
  datasets: DATASET_ROUTES,
  issues: ISSUE_ROUTES,
  scorers: SCORER_ROUTES,
  'prompt-optimization': PROMPT_OPTIMIZATION_ROUTES,
  registry: REGISTRY_ROUTES,
  artifacts: ARTIFACT_ROUTES,
  webhooks: WEBHOOK_ROUTES,
  workspaces: WORKSPACE_ROUTES,
  'ai-gateway': AI_GATEWAY_ROUTES,
  jobs: JOB_ROUTES,
  'upstream-auth': UPSTREAM_AUTH_ROUTES,
  server: SERVER_ROUTES,
  // After 3.11.1 (routes-newest.ts, docs/mlflow-versions.md).
  'presigned-upload': PRESIGNED_UPLOAD_ROUTES,
  'label-schemas': LABEL_SCHEMA_ROUTES,
  'review-queues': REVIEW_QUEUE_ROUTES,
  'mcp-registry': MCP_REGISTRY_ROUTES,
  'upstream-rbac': UPSTREAM_RBAC_ROUTES,
};

export interface RuleMatch {
  rule: RouteRule;
  /** Path parameters, decoded (the path given to matchRule is). */
  params: Readonly<Record<string, string>>;
}

const METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

/** `{a,b}` alternatives expand; `{name}` (one segment) and `{name...}` (the rest) are parameters. */
function expandAlternatives(text: string): string[] {
  const group = /\{([^{}]*,[^{}]*)\}/.exec(text);
  if (!group) return [text];
  const head = text.slice(0, group.index);
  const tail = text.slice(group.index + group[0].length);
  return group[1]!.split(',').flatMap((choice) => expandAlternatives(head + choice + tail));
}

/** "runs/log-metric" for /api/2.0/mlflow/runs/log-metric; the path itself for non-API routes. */
function nameOf(template: string): string {
  const name = template.replace(/^\/(?:api|ajax-api)\/[0-9]\.0\/?/, '').replace(/^mlflow\//, '').replace(/^\//, '');
  return name === '' ? '/' : name;
}

/** Whether checking the route needs the request's JSON message (see needsRequestBody). */
function readsMessage(def: RouteDef): boolean {
  const fromMessage = (def.find ?? []).some((spec) => spec.from === 'message' || spec.twin !== undefined);
  const pathsInMessage = (def.checksPaths ?? []).some((check) => check.from === 'message');
  // A filtered search is paged on by the gateway with the caller's own parameters (search-filter.ts).
  return fromMessage || pathsInMessage || Boolean(def.writesTags || def.renames || def.creates || def.stampsUser || def.filter || def.adminOnlyFields);
}

function compileRule(def: RouteDef, method: HttpMethod | 'ANY', template: string, family: string): RouteRule {
  const find = def.find ?? [];
  const first = find[0];
  if (!def.access && !first) throw new Error(`route table: "${def.at}" has neither an access nor a resource to find`);
  const { at: _at, access, find: _find, ...facts } = def;
  return Object.freeze({
    ...facts,
    name: nameOf(template),
    family,
    method,
    template,
    resource: access ?? carrierOf(first!.ref),
    level: first?.level,
    find,
    readsMessage: readsMessage(def),
  });
}

interface Pattern {
  literalPrefix: string;
  regex: RegExp;
  names: readonly string[];
  rule: RouteRule;
}

const PARAM = /\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}/g;

function compilePattern(template: string, rule: RouteRule): Pattern {
  const names: string[] = [];
  let source = '';
  let last = 0;
  for (const param of template.matchAll(PARAM)) {
    source += escapeRegExp(template.slice(last, param.index));
    source += param[2] ? '(.+)' : '([^/]+)';
    names.push(param[1]!);
    last = param.index + param[0].length;
  }
  source += escapeRegExp(template.slice(last));
  return { literalPrefix: template.slice(0, template.indexOf('{')), regex: new RegExp(`^${source}$`), names, rule };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function compileTable(families: Readonly<Record<string, readonly RouteDef[]>>) {
  const exact = new Map<string, RouteRule>();
  const patterns = new Map<HttpMethod | 'ANY', Pattern[]>();
  const rules: RouteRule[] = [];
  const seen = new Set<string>();
  for (const [family, def] of Object.entries(families).flatMap(([family, defs]) => defs.map((def) => [family, def] as const))) {
    const space = def.at.indexOf(' ');
    if (space === -1) throw new Error(`route table: "${def.at}" is not "METHOD template"`);
    for (const method of expandAlternatives(def.at.slice(0, space))) {
      if (method !== 'ANY' && !(METHODS as readonly string[]).includes(method)) throw new Error(`route table: "${def.at}" has an unknown method ${method}`);
      for (const template of expandAlternatives(def.at.slice(space + 1))) {
        if (!template.startsWith('/') || /[{}]/.test(template.replace(PARAM, ''))) throw new Error(`route table: "${def.at}" has a template that does not parse`);
        const rule = compileRule(def, method as HttpMethod | 'ANY', template, family);
        const key = `${method} ${template}`;
        if (seen.has(key)) throw new Error(`route table: ${key} is listed twice`);
        seen.add(key);
        rules.push(rule);
        if (!template.includes('{')) exact.set(key, rule);
        else {
          const list = patterns.get(rule.method) ?? [];
          list.push(compilePattern(template, rule));
          patterns.set(rule.method, list);
        }
      }
    }
  }
  return { exact, patterns, rules };
}

const TABLE = compileTable(ROUTE_FAMILIES);

/** Every rule, one per (method, concrete template), in table order. */
export const ROUTE_RULES: readonly RouteRule[] = TABLE.rules;

/** OPTIONS never reaches a view in Flask (it answers with the allowed methods), so it needs no resource. */
const OPTIONS_RULE: RouteRule = Object.freeze({
  name: 'OPTIONS', family: 'options', method: 'ANY', template: '*', resource: 'none', level: undefined, find: [], readsMessage: false,
});

function matchMethod(method: HttpMethod | 'ANY', path: string): RuleMatch | undefined {
  const rule = TABLE.exact.get(`${method} ${path}`);
  if (rule) return { rule, params: NO_PARAMS };
  for (const pattern of TABLE.patterns.get(method) ?? []) {
    if (!path.startsWith(pattern.literalPrefix)) continue;
    const found = pattern.regex.exec(path);
    if (!found) continue;
    const params: Record<string, string> = {};
    pattern.names.forEach((name, i) => (params[name] = found[i + 1]!));
    return { rule: pattern.rule, params };
  }
  return undefined;
}

/**
 * The rule for a request, or undefined when MLflow has no such route (fail closed on API paths).
 * `path` is CanonicalTarget.path: decoded once, refused if ambiguous. HEAD is GET, as in Flask.
 * Exact paths win over parameters, as in werkzeug: GET /mlflow/traces/get is not trace "get".
 */
export function matchRule(method: string, path: string): RuleMatch | undefined {
  if (method === 'OPTIONS') {
    let found: RuleMatch | undefined;
    for (const other of [...METHODS, 'ANY' as const]) found ??= matchMethod(other, path);
    if (!found) return undefined;
    return found.rule.resource === 'blocked' ? found : { rule: OPTIONS_RULE, params: found.params };
  }
  const asked = method === 'HEAD' ? 'GET' : method;
  if (!(METHODS as readonly string[]).includes(asked)) return undefined;
  return matchMethod(asked as HttpMethod, path) ?? matchMethod('ANY', path);
}

/**
 * Whether the check needs the JSON body read (and held, to forward those very bytes) before the
 * request goes upstream. GET reads its message from the query string, or from the body when the
 * query string is empty; every other method from the body. `hasQuery`: the query string has at
 * least one parameter (werkzeug's request.args is not empty).
 */
export function needsRequestBody(rule: RouteRule, hasQuery: boolean): boolean {
  if (!rule.readsMessage) return false;
  return rule.method !== 'GET' || !hasQuery;
}
