// The route table against MLflow's own route lists (test/fixtures, copied from the reference) and
// against what the real MLflow client sends (mlflow-client-paths.md, transcribed below).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalizeTarget } from '../src/authz/canonical-path.ts';
import { extractResources, parseRequestJson } from '../src/authz/extract-params.ts';
import type { PermissionLevel } from '../src/authz/levels.ts';
import type { RouteRule } from '../src/authz/route-rule.ts';
import { requestMessageOf } from '../src/authz/request-message.ts';
import { matchRule, needsRequestBody, ROUTE_RULES, type RuleMatch } from '../src/authz/route-table.ts';

interface FixtureRoute {
  method: string;
  path: string;
  since: string;
  rpc: string;
  /** The request message's name. */
  req: string;
  /** The auth app's validator (3.11.1 and newest fixtures); "?" where it could not be read. */
  v3?: string | null;
  /** Newest fixture only: the route is not in 3.11.1. */
  new_since_3111?: boolean;
}

function fixture(name: string): FixtureRoute[] {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as FixtureRoute[];
}

const V3_ROUTES = fixture('mlflow-3.11.1-routes.json');
const V2_ROUTES = fixture('mlflow-2.17.2-routes.json');
/** The newest routes that could be rebuilt (about 3.13-3.16); `"?"` marks what could not be read. */
const NEWEST_ROUTES = fixture('mlflow-newest-routes.json');
const unsure = (route: FixtureRoute) => route.method === '?' || route.path === '?';
const NEWEST_KNOWN = NEWEST_ROUTES.filter((route) => !unsure(route));

const RUN_ID = '0123456789abcdef0123456789abcdef';

/** A concrete path for a proto path template, as a client would send it (before decoding). */
function samplePath(template: string): string {
  return template
    .replace('<path:artifact_path>', `1/${RUN_ID}/artifacts/model%20dir/My%20File%25.txt`)
    .replace(/\{[^}]+\}/g, 'x-1');
}

/** Flask registers each RPC at /api/<major>.0<path> and /ajax-api/<major>.0<path> (reference §1.1). */
function servedPaths(route: FixtureRoute): string[] {
  const version = `${route.since.split('.')[0]}.0`;
  return ['api', 'ajax-api'].map((prefix) => `/${prefix}/${version}${samplePath(route.path)}`);
}

function routed(method: string, target: string): RuleMatch | undefined {
  const canonical = canonicalizeTarget(target);
  if (!canonical.ok) throw new Error(`${target}: ${canonical.reason}`);
  return matchRule(method, canonical.path);
}

describe('every route of the reference lists is classified', () => {
  for (const [name, routes] of [['3.11.1', V3_ROUTES], ['2.17.2', V2_ROUTES], ['newest (about 3.16, method and path known)', NEWEST_KNOWN]] as const) {
    it(`MLflow ${name}: ${routes.length} routes, both prefixes`, () => {
      const unclassified: string[] = [];
      for (const route of routes) {
        for (const path of servedPaths(route)) {
          const found = routed(route.method, path);
          if (!found || found.rule.name === 'OPTIONS') unclassified.push(`${route.method} ${path}`);
        }
      }
      expect(unclassified).toEqual([]);
    });
  }

  it('2.17.2 is a subset of 3.11.1, so one table serves both', () => {
    const key = (r: FixtureRoute) => `${r.method} ${r.since.split('.')[0]} ${r.path}`;
    const newer = new Set(V3_ROUTES.map(key));
    expect(V2_ROUTES.filter((r) => !newer.has(key(r))).map(key)).toEqual([]);
  });

  it('the newest list keeps every 3.11.1 route and adds 69, of which 10 cannot be matched', () => {
    const key = (r: FixtureRoute) => `${r.method} ${r.since.split('.')[0]} ${r.path}`;
    const newest = new Set(NEWEST_ROUTES.map(key));
    expect(V3_ROUTES.filter((r) => !newest.has(key(r))).map(key)).toEqual([]);
    expect(NEWEST_ROUTES.filter((r) => r.new_since_3111)).toHaveLength(69);
    expect(NEWEST_ROUTES.filter(unsure).map((r) => r.req)).toHaveLength(10);
  });
});

/** What the 3.11.1 auth app asks for, from its validator's name (reference §3, §7.4). */
function authAppExpectation(validator: string | null | undefined): { resource: RouteRule['resource'] | 'other'; level?: PermissionLevel } {
  if (!validator || validator === '-') return { resource: 'none' };
  if (validator === 'sender_is_admin') return { resource: 'admin-only' };
  if (validator === 'validate_can_create_experiment' || validator === 'validate_can_create_registered_model') return { resource: 'none' };
  const verb = /^validate_can_(read|update|delete)_(.+)$/.exec(validator);
  if (!verb) return { resource: 'other' };
  const level = ({ read: 'READ', update: 'EDIT', delete: 'MANAGE' } as const)[verb[1] as 'read' | 'update' | 'delete'];
  const object = verb[2]!;
  if (['experiment', 'experiment_by_name', 'run', 'logged_model'].includes(object)) return { resource: 'experiment', level };
  if (object === 'registered_model') return { resource: 'registered-model', level };
  return { resource: 'other', level };
}

describe('deviations from the auth app are written down', () => {
  it('a rule that asks for other than the 3.11.1 auth app says why', () => {
    const silent: string[] = [];
    for (const route of V3_ROUTES) {
      if (route.v3 === '(proxy-artifact fallback)') continue;
      const expected = authAppExpectation(route.v3);
      for (const path of servedPaths(route)) {
        const { rule } = routed(route.method, path)!;
        const same = rule.resource === expected.resource && rule.level === expected.level;
        if (!same && !rule.deviation) silent.push(`${route.method} ${path}: auth app ${route.v3}, table ${rule.resource} ${rule.level ?? ''}`);
      }
    }
    expect(silent).toEqual([]);
  });

  it('a rule for a route added after 3.11.1 that asks for other than the auth app says why', () => {
    const silent: string[] = [];
    for (const route of NEWEST_KNOWN.filter((r) => r.new_since_3111)) {
      // "?": the auth app's validator was not read; docs/mlflow-versions.md says what is known.
      if (!route.v3 || route.v3.startsWith('?')) continue;
      const expected = authAppExpectation(route.v3);
      for (const path of servedPaths(route)) {
        const { rule } = routed(route.method, path)!;
        const same = rule.resource === expected.resource && rule.level === expected.level;
        if (!same && !rule.deviation) silent.push(`${route.method} ${path}: auth app ${route.v3}, table ${rule.resource} ${rule.level ?? ''}`);
      }
    }
    expect(silent).toEqual([]);
  });

  it('every artifact-proxy rule says how it differs from the auth app\'s fallback', () => {
    const proxy = ROUTE_RULES.filter((rule) => rule.template.includes('/mlflow-artifacts/'));
    expect(proxy.length).toBe(16);
    for (const rule of proxy) expect(rule.deviation, rule.template).toBeDefined();
  });
});

type Expect = { resource: RouteRule['resource']; level?: PermissionLevel };
const NONE: Expect = { resource: 'none' };
const ADMIN: Expect = { resource: 'admin-only' };
const exp = (level: PermissionLevel): Expect => ({ resource: 'experiment', level });
const model = (level: PermissionLevel): Expect => ({ resource: 'registered-model', level });

describe('Flask, FastAPI and basic-auth routes outside the RPC lists (reference §4, §5, §7.8)', () => {
  const cases: [string, Expect][] = [
    ['GET /health', { resource: 'public' }],
    ['GET /version', NONE],
    ['GET /static-files/static/js/main.12ab.js', NONE],
    ['GET /', NONE],
    ['GET /get-artifact', exp('READ')],
    ['GET /model-versions/get-artifact', model('READ')],
    ['GET /ajax-api/2.0/mlflow/metrics/get-history-bulk', exp('READ')],
    ['GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval', exp('READ')],
    ['POST /ajax-api/2.0/mlflow/experiments/search-datasets', exp('READ')],
    ['POST /ajax-api/2.0/mlflow/runs/create-promptlab-run', exp('EDIT')],
    ['GET /ajax-api/2.0/mlflow/gateway-proxy', ADMIN],
    ['POST /ajax-api/2.0/mlflow/gateway-proxy', ADMIN],
    ['POST /ajax-api/2.0/mlflow/upload-artifact', exp('EDIT')],
    ['GET /ajax-api/2.0/mlflow/get-trace-artifact', exp('READ')],
    ['GET /ajax-api/3.0/mlflow/get-trace-artifact', exp('READ')],
    ['GET /ajax-api/2.0/mlflow/logged-models/m-1/artifacts/files', exp('READ')],
    ['GET /ajax-api/3.0/mlflow/ui-telemetry', NONE],
    ['POST /ajax-api/3.0/mlflow/ui-telemetry', NONE],
    ['GET /graphql', ADMIN],
    ['POST /graphql', ADMIN],
    ['GET /api/3.0/mlflow/server-info', NONE],
    ['GET /ajax-api/3.0/mlflow/server-info', NONE],
    ['GET /api/3.0/mlflow/scorers/online-configs', ADMIN],
    ['GET /ajax-api/3.0/mlflow/scorers/online-configs', ADMIN],
    ['PUT /api/3.0/mlflow/scorers/online-config', exp('EDIT')],
    ['PUT /ajax-api/3.0/mlflow/scorers/online-config', exp('EDIT')],
    ['GET /ajax-api/3.0/mlflow/gateway/supported-providers', ADMIN],
    ['GET /ajax-api/3.0/mlflow/gateway/supported-models', ADMIN],
    ['GET /ajax-api/3.0/mlflow/gateway/provider-config', ADMIN],
    ['GET /ajax-api/3.0/mlflow/gateway/secrets/config', ADMIN],
    ['POST /ajax-api/3.0/mlflow/scorer/invoke', ADMIN],
    ['POST /ajax-api/3.0/mlflow/issues/invoke', ADMIN],
    ['POST /ajax-api/3.0/mlflow/demo/generate', ADMIN],
    ['POST /ajax-api/3.0/mlflow/demo/delete', ADMIN],
    ['GET /ajax-api/3.0/mlflow/jobs/j-1', ADMIN],
    ['PATCH /ajax-api/3.0/mlflow/jobs/cancel/j-1', ADMIN],
    // FastAPI (uvicorn only)
    ['POST /v1/traces', exp('EDIT')],
    ['POST /gateway/my-endpoint/mlflow/invocations', ADMIN],
    ['POST /gateway/mlflow/v1/chat/completions', ADMIN],
    ['POST /gateway/openai/v1/chat/completions', ADMIN],
    ['POST /gateway/openai/v1/embeddings', ADMIN],
    ['POST /gateway/openai/v1/responses', ADMIN],
    ['POST /gateway/anthropic/v1/messages', ADMIN],
    ['POST /gateway/gemini/v1beta/models/my-endpoint:generateContent', ADMIN],
    ['POST /gateway/gemini/v1beta/models/my-endpoint:streamGenerateContent', ADMIN],
    ['GET /ajax-api/3.0/jobs/j-1', ADMIN],
    ['POST /ajax-api/3.0/jobs/', ADMIN],
    ['PATCH /ajax-api/3.0/jobs/cancel/j-1', ADMIN],
    ['POST /ajax-api/3.0/jobs/search', ADMIN],
    ['POST /ajax-api/3.0/mlflow/assistant/message', { resource: 'blocked' }],
    ['GET /ajax-api/3.0/mlflow/assistant/sessions/s-1/stream', { resource: 'blocked' }],
    ['PATCH /ajax-api/3.0/mlflow/assistant/sessions/s-1', { resource: 'blocked' }],
    ['GET /ajax-api/3.0/mlflow/assistant/providers/p/health', { resource: 'blocked' }],
    ['GET /ajax-api/3.0/mlflow/assistant/config', { resource: 'blocked' }],
    ['PUT /ajax-api/3.0/mlflow/assistant/config', { resource: 'blocked' }],
    ['POST /ajax-api/3.0/mlflow/assistant/skills/install', { resource: 'blocked' }],
    // --app-name basic-auth
    ['GET /signup', ADMIN],
    ['POST /api/2.0/mlflow/users/create-ui', ADMIN],
    ['POST /api/2.0/mlflow/users/create', ADMIN],
    ['GET /api/2.0/mlflow/users/get', ADMIN],
    ['GET /api/2.0/mlflow/users/list', ADMIN],
    ['GET /ajax-api/2.0/mlflow/users/list', ADMIN],
    ['PATCH /api/2.0/mlflow/users/update-password', ADMIN],
    ['PATCH /api/2.0/mlflow/users/update-admin', ADMIN],
    ['DELETE /api/2.0/mlflow/users/delete', ADMIN],
    ...['experiments', 'registered-models'].flatMap((kind): [string, Expect][] => [
      [`POST /api/2.0/mlflow/${kind}/permissions/create`, ADMIN],
      [`GET /api/2.0/mlflow/${kind}/permissions/get`, ADMIN],
      [`PATCH /api/2.0/mlflow/${kind}/permissions/update`, ADMIN],
      [`DELETE /api/2.0/mlflow/${kind}/permissions/delete`, ADMIN],
    ]),
    ['POST /api/3.0/mlflow/scorers/permissions/create', ADMIN],
    ['GET /api/3.0/mlflow/scorers/permissions/get', ADMIN],
    ['PATCH /api/3.0/mlflow/scorers/permissions/update', ADMIN],
    ['DELETE /api/3.0/mlflow/scorers/permissions/delete', ADMIN],
    ...['secrets', 'endpoints', 'model-definitions'].flatMap((kind): [string, Expect][] => [
      [`POST /api/3.0/mlflow/gateway/${kind}/permissions/create`, ADMIN],
      [`GET /api/3.0/mlflow/gateway/${kind}/permissions/get`, ADMIN],
      [`PATCH /api/3.0/mlflow/gateway/${kind}/permissions/update`, ADMIN],
      [`DELETE /api/3.0/mlflow/gateway/${kind}/permissions/delete`, ADMIN],
    ]),
    ['GET /api/3.0/mlflow/workspaces/team-a/permissions', ADMIN],
    ['POST /api/3.0/mlflow/workspaces/team-a/permissions', ADMIN],
    ['DELETE /api/3.0/mlflow/workspaces/team-a/permissions', ADMIN],
    ['GET /api/3.0/mlflow/workspace-permissions', ADMIN],
  ];
  it.each(cases)('%s', (line, expected) => {
    const [method, target] = line.split(' ') as [string, string];
    const found = routed(method, target);
    expect(found, line).toBeDefined();
    expect({ resource: found!.rule.resource, level: found!.rule.level }).toEqual({ level: undefined, ...expected });
  });
});

describe('routes added after 3.11.1 (routes-newest.ts, docs/mlflow-versions.md)', () => {
  const cases: [string, Expect][] = [
    ['POST /api/2.0/mlflow/artifacts/presigned-upload-url', exp('EDIT')],
    ['POST /api/3.0/mlflow/label-schemas/create', exp('MANAGE')],
    ['GET /ajax-api/3.0/mlflow/label-schemas/get-by-name', exp('READ')],
    ['GET /api/3.0/mlflow/label-schemas/list', exp('READ')],
    ['GET /ajax-api/3.0/mlflow/label-schemas/list', exp('READ')],
    ['POST /api/3.0/mlflow/label-schemas/upsert', exp('MANAGE')],
    ['GET /api/3.0/mlflow/label-schemas/get', ADMIN],
    ['PATCH /api/3.0/mlflow/label-schemas/update', ADMIN],
    ['DELETE /ajax-api/3.0/mlflow/label-schemas/delete', ADMIN],
    ['GET /ajax-api/3.0/mlflow/review-queues/list', exp('EDIT')],
    // Guardrails: the AI gateway rule (routes-admin.ts).
    ...['POST create', 'GET get', 'GET list', 'DELETE delete', 'POST add-to-endpoint', 'DELETE remove-from-endpoint', 'GET list-for-endpoint', 'PATCH update-config']
      .map((op): [string, Expect] => [op.replace(' ', ' /api/3.0/mlflow/gateway/guardrails/'), ADMIN]),
    ['GET /ajax-api/3.0/mlflow/gateway/guardrails/list', ADMIN],
    // MCP registry (FastAPI): names hold slashes; every method, every depth.
    ['GET /api/3.0/mlflow/mcp-servers', ADMIN],
    ['POST /ajax-api/3.0/mlflow/mcp-servers', ADMIN],
    ['GET /api/3.0/mlflow/mcp-servers/', ADMIN],
    ['GET /api/3.0/mlflow/mcp-servers/endpoints', ADMIN],
    ['GET /api/3.0/mlflow/mcp-servers/io.github.acme/tools', ADMIN],
    ['PATCH /api/3.0/mlflow/mcp-servers/io.github.acme/tools', ADMIN],
    ['GET /api/3.0/mlflow/mcp-servers/a/b/versions/1', ADMIN],
    ['DELETE /ajax-api/3.0/mlflow/mcp-servers/a/b/versions/1/tags/k', ADMIN],
    ['PUT /api/3.0/mlflow/mcp-servers/a/b/aliases/prod', ADMIN],
    ['POST /api/3.0/mlflow/mcp-servers/a/b/endpoints', ADMIN],
    // MLflow's own RBAC (its auth app only).
    ['POST /api/3.0/mlflow/roles/create', ADMIN],
    ['POST /ajax-api/3.0/mlflow/roles/create', ADMIN],
    ['GET /api/3.0/mlflow/roles/list', ADMIN],
    ['DELETE /api/3.0/mlflow/roles/unassign', ADMIN],
    ['PATCH /ajax-api/3.0/mlflow/roles/permissions/update', ADMIN],
    ['GET /api/3.0/mlflow/roles/users/list', ADMIN],
    ['GET /api/3.0/mlflow/users/roles/list', ADMIN],
    ['POST /api/3.0/mlflow/users/permissions/grant', ADMIN],
    ['POST /api/3.0/mlflow/users/permissions/revoke', ADMIN],
    ['GET /ajax-api/3.0/mlflow/users/permissions/list', ADMIN],
    ['GET /api/3.0/mlflow/users/current/permissions', ADMIN],
    ['GET /api/2.0/mlflow/users/current', ADMIN],
    ['GET /ajax-api/2.0/mlflow/users/current', ADMIN],
  ];
  it.each(cases)('%s', (line, expected) => {
    const [method, target] = line.split(' ') as [string, string];
    const found = routed(method, target);
    expect(found, line).toBeDefined();
    expect({ resource: found!.rule.resource, level: found!.rule.level }).toEqual({ level: undefined, ...expected });
  });

  it.each([
    ['POST', '/api/3.0/mlflow/review-queues/create', 'a review-queue RPC whose method and path are not known'],
    ['POST', '/api/3.0/mlflow/review-queues/items/add', 'a review-queue RPC whose method and path are not known'],
    ['GET', '/api/3.0/mlflow/mcp-serversx', 'not under the MCP prefix'],
    ['GET', '/api/2.0/mlflow/mcp-servers', 'the MCP registry is 3.0 only'],
    ['POST', '/api/3.0/mlflow/label-schemas/list', 'wrong method'],
  ])('%s %s is unknown (%s)', (method, path) => {
    expect(matchRule(method, path)).toBeUndefined();
  });

  /** What the check reads from a request to a new route: the resources and levels, or the 400. */
  function checksOf(method: string, target: string, body?: unknown) {
    const canonical = canonicalizeTarget(target);
    if (!canonical.ok) throw new Error(canonical.reason);
    const { rule, params } = matchRule(method, canonical.path)!;
    const parsed = needsRequestBody(rule, canonical.query !== '') ? parseRequestJson(JSON.stringify(body ?? {})) : undefined;
    if (parsed && !parsed.ok) throw new Error(parsed.message);
    const extracted = extractResources(rule, { query: new URLSearchParams(canonical.query), body: parsed?.value, pathParams: params, workspace: 'default' });
    return extracted.ok ? extracted.checks.map((check) => ({ ref: check.ref, level: check.level, source: check.source })) : extracted.status;
  }

  it('reads experiment_id where MLflow RPCs do: the query of a GET (its body without one), the body of other methods', () => {
    expect(checksOf('GET', '/api/3.0/mlflow/label-schemas/list?experiment_id=12&max_results=5')).toEqual([{ ref: { kind: 'experiment', id: '12' }, level: 'READ', source: 'query experiment_id' }]);
    expect(checksOf('GET', '/api/3.0/mlflow/label-schemas/get-by-name', { experiment_id: '12', name: 'q' })).toEqual([{ ref: { kind: 'experiment', id: '12' }, level: 'READ', source: 'body experiment_id' }]);
    expect(checksOf('POST', '/api/3.0/mlflow/label-schemas/create?experiment_id=1', { experiment_id: '12', name: 'q', type: 'FEEDBACK', title: 'Q', input: { pass_fail: {} } }))
      .toEqual([{ ref: { kind: 'experiment', id: '12' }, level: 'MANAGE', source: 'body experiment_id' }]);
    expect(checksOf('GET', '/ajax-api/3.0/mlflow/review-queues/list?experiment_id=12')).toEqual([{ ref: { kind: 'experiment', id: '12' }, level: 'EDIT', source: 'query experiment_id' }]);
    // Without an experiment (or spelled experimentId, which protobuf reads too) there is nothing to check against: 400.
    expect(checksOf('GET', '/api/3.0/mlflow/label-schemas/list?max_results=5')).toBe(400);
    expect(checksOf('POST', '/api/3.0/mlflow/label-schemas/upsert', { experimentId: '12', name: 'q' })).toBe(400);
  });

  it('presigned-upload-url: EDIT on the run in the body, and a path inside its artifacts', () => {
    expect(checksOf('POST', '/api/2.0/mlflow/artifacts/presigned-upload-url', { run_id: RUN_ID, path: 'models/model.pkl', expiration: 900 }))
      .toEqual([{ ref: { kind: 'run', id: RUN_ID }, level: 'EDIT', source: 'body run_id' }]);
    expect(checksOf('POST', '/api/2.0/mlflow/artifacts/presigned-upload-url', { run_id: RUN_ID, path: '../other-run/artifacts/x' })).toBe(400);
    expect(checksOf('POST', '/api/2.0/mlflow/artifacts/presigned-upload-url', { run_id: RUN_ID, path: '/etc/x' })).toBe(400);
    expect(checksOf('POST', '/api/2.0/mlflow/artifacts/presigned-upload-url', { path: 'x' })).toBe(400);
  });

  it('no MLflow message definition is known for the new RPCs yet, so protobuf\'s parser check is skipped for them', () => {
    expect(requestMessageOf('GET', '/api/3.0/mlflow/label-schemas/list')).toBeUndefined();
    expect(requestMessageOf('POST', '/api/2.0/mlflow/artifacts/presigned-upload-url')).toBeUndefined();
    expect(requestMessageOf('POST', '/api/2.0/mlflow/runs/log-metric')).toBe('mlflow.LogMetric');
  });

  it('docs/mlflow-versions.md lists every route that cannot be matched ("?" method or path)', () => {
    const doc = readFileSync(new URL('../docs/mlflow-versions.md', import.meta.url), 'utf8');
    const missing = NEWEST_ROUTES.filter(unsure).map((route) => route.req).filter((req) => !doc.includes(`\`${req}\``));
    expect(missing).toEqual([]);
  });
});

/**
 * Every line of mlflow-client-paths.md (2.17.2 and 3.11.1 clients), with the request the client
 * sends there and what the table must make of it.
 */
interface ClientCall {
  line: string;
  target: string;
  body?: unknown;
  expect: Expect & { ref?: string; stampsUser?: boolean; creates?: string; filter?: string };
}

const EXP = '12';
const MODEL_ID = 'm-0123456789abcdef0123456789abcdef';
const ARTIFACT = `${EXP}/${RUN_ID}/artifacts/plots/loss curve.png`;
const CLIENT_CALLS: ClientCall[] = [
  { line: 'DELETE /api/2.0/mlflow/registered-models/delete', target: '/api/2.0/mlflow/registered-models/delete', body: { name: 'iris' }, expect: { ...model('MANAGE'), ref: 'registered-model' } },
  { line: 'GET /api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{path}', target: `/api/2.0/mlflow-artifacts/artifacts/${EXP}/${RUN_ID}/artifacts/plots/loss%20curve.png`, expect: { ...exp('READ'), ref: 'artifact-path' } },
  { line: 'GET /api/2.0/mlflow-artifacts/artifacts/{exp_id}/models/{model_id}/artifacts/{path}', target: `/api/2.0/mlflow-artifacts/artifacts/${EXP}/models/${MODEL_ID}/artifacts/MLmodel`, expect: { ...exp('READ'), ref: 'artifact-path' } },
  { line: 'GET /api/2.0/mlflow-artifacts/artifacts?path', target: `/api/2.0/mlflow-artifacts/artifacts?path=${encodeURIComponent(`${EXP}/${RUN_ID}/artifacts/plots`)}`, expect: { ...exp('READ'), ref: 'artifact-path' } },
  { line: 'GET /api/2.0/mlflow/experiments/get-by-name?experiment_name', target: '/api/2.0/mlflow/experiments/get-by-name?experiment_name=team-a%2Fchurn', expect: { ...exp('READ'), ref: 'experiment-name' } },
  { line: 'GET /api/2.0/mlflow/experiments/get?experiment_id', target: `/api/2.0/mlflow/experiments/get?experiment_id=${EXP}`, expect: { ...exp('READ'), ref: 'experiment' } },
  { line: 'GET /api/2.0/mlflow/logged-models/{model_id}', target: `/api/2.0/mlflow/logged-models/${MODEL_ID}`, body: {}, expect: { ...exp('READ'), ref: 'logged-model' } },
  { line: 'GET /api/2.0/mlflow/metrics/get-history?max_results&metric_key&run_id&run_uuid', target: `/api/2.0/mlflow/metrics/get-history?max_results=25000&metric_key=loss&run_id=${RUN_ID}&run_uuid=${RUN_ID}`, expect: { ...exp('READ'), ref: 'run' } },
  { line: 'GET /api/2.0/mlflow/model-versions/get-download-uri?name&version', target: '/api/2.0/mlflow/model-versions/get-download-uri?name=iris&version=1', expect: { ...model('READ'), ref: 'registered-model' } },
  { line: 'GET /api/2.0/mlflow/model-versions/get?name&version', target: '/api/2.0/mlflow/model-versions/get?name=iris&version=1', expect: { ...model('READ'), ref: 'registered-model' } },
  { line: 'GET /api/2.0/mlflow/model-versions/search?filter&max_results', target: "/api/2.0/mlflow/model-versions/search?filter=name%3D%27iris%27&max_results=200000", expect: { ...NONE, filter: 'model-versions' } },
  { line: 'GET /api/2.0/mlflow/registered-models/alias?alias&name', target: '/api/2.0/mlflow/registered-models/alias?alias=champion&name=iris', expect: { ...model('READ'), ref: 'registered-model' } },
  { line: 'GET /api/2.0/mlflow/registered-models/get?name', target: '/api/2.0/mlflow/registered-models/get?name=iris', expect: { ...model('READ'), ref: 'registered-model' } },
  { line: 'GET /api/2.0/mlflow/registered-models/search?filter&max_results', target: "/api/2.0/mlflow/registered-models/search?filter=name%3D%27iris%27&max_results=100", expect: { ...NONE, filter: 'registered-models' } },
  { line: 'GET /api/2.0/mlflow/runs/get?run_id', target: `/api/2.0/mlflow/runs/get?run_id=${RUN_ID}`, expect: { ...exp('READ'), ref: 'run' } },
  { line: 'GET /api/2.0/mlflow/runs/get?run_id&run_uuid', target: `/api/2.0/mlflow/runs/get?run_id=${RUN_ID}&run_uuid=${RUN_ID}`, expect: { ...exp('READ'), ref: 'run' } },
  { line: 'GET /health', target: '/health', expect: { resource: 'public' } },
  { line: 'GET /version', target: '/version', expect: NONE },
  { line: 'PATCH /api/2.0/mlflow/logged-models/{model_id}', target: `/api/2.0/mlflow/logged-models/${MODEL_ID}`, body: { model_id: MODEL_ID, status: 'LOGGED_MODEL_READY' }, expect: { ...exp('EDIT'), ref: 'logged-model' } },
  { line: 'PATCH /api/2.0/mlflow/logged-models/{model_id}/tags', target: `/api/2.0/mlflow/logged-models/${MODEL_ID}/tags`, body: { tags: [{ key: 'a', value: 'b' }] }, expect: { ...exp('EDIT'), ref: 'logged-model' } },
  { line: 'PATCH /api/2.0/mlflow/model-versions/update', target: '/api/2.0/mlflow/model-versions/update', body: { name: 'iris', version: '1', description: 'x' }, expect: { ...model('EDIT'), ref: 'registered-model' } },
  { line: 'POST /api/2.0/mlflow/experiments/create', target: '/api/2.0/mlflow/experiments/create', body: { name: 'team-a/churn' }, expect: { ...exp('READ'), ref: 'experiment-name', creates: 'experiment' } },
  { line: 'POST /api/2.0/mlflow/experiments/delete', target: '/api/2.0/mlflow/experiments/delete', body: { experiment_id: EXP }, expect: { ...exp('MANAGE'), ref: 'experiment' } },
  { line: 'POST /api/2.0/mlflow/experiments/search', target: '/api/2.0/mlflow/experiments/search', body: { max_results: 1000 }, expect: { ...NONE, filter: 'experiments' } },
  { line: 'POST /api/2.0/mlflow/experiments/set-experiment-tag', target: '/api/2.0/mlflow/experiments/set-experiment-tag', body: { experiment_id: EXP, key: 'k', value: 'v' }, expect: { ...exp('EDIT'), ref: 'experiment' } },
  { line: 'POST /api/2.0/mlflow/logged-models', target: '/api/2.0/mlflow/logged-models', body: { experiment_id: EXP, source_run_id: RUN_ID }, expect: { ...exp('EDIT'), ref: 'experiment' } },
  { line: 'POST /api/2.0/mlflow/logged-models/search', target: '/api/2.0/mlflow/logged-models/search', body: { experiment_ids: [EXP] }, expect: { ...exp('READ'), ref: 'experiment', filter: 'logged-models' } },
  { line: 'POST /api/2.0/mlflow/model-versions/create', target: '/api/2.0/mlflow/model-versions/create', body: { name: 'iris', source: `models:/${MODEL_ID}`, run_id: RUN_ID }, expect: { ...model('EDIT'), ref: 'registered-model' } },
  { line: 'POST /api/2.0/mlflow/model-versions/set-tag', target: '/api/2.0/mlflow/model-versions/set-tag', body: { name: 'iris', version: '1', key: 'k', value: 'v' }, expect: { ...model('EDIT'), ref: 'registered-model' } },
  { line: 'POST /api/2.0/mlflow/registered-models/alias', target: '/api/2.0/mlflow/registered-models/alias', body: { name: 'iris', alias: 'champion', version: '1' }, expect: { ...model('EDIT'), ref: 'registered-model' } },
  { line: 'POST /api/2.0/mlflow/registered-models/create', target: '/api/2.0/mlflow/registered-models/create', body: { name: 'iris' }, expect: { ...model('READ'), ref: 'registered-model', creates: 'registered-model' } },
  { line: 'POST /api/2.0/mlflow/runs/create', target: '/api/2.0/mlflow/runs/create', body: { experiment_id: EXP, user_id: 'jovyan', tags: [{ key: 'mlflow.user', value: 'jovyan' }] }, expect: { ...exp('EDIT'), ref: 'experiment', stampsUser: true } },
  { line: 'POST /api/2.0/mlflow/runs/delete', target: '/api/2.0/mlflow/runs/delete', body: { run_id: RUN_ID }, expect: { ...exp('MANAGE'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/delete-tag', target: '/api/2.0/mlflow/runs/delete-tag', body: { run_id: RUN_ID, key: 'k' }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/log-batch', target: '/api/2.0/mlflow/runs/log-batch', body: { run_id: RUN_ID, metrics: [{ key: 'm', value: 1, timestamp: 1, step: 0 }] }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/log-metric', target: '/api/2.0/mlflow/runs/log-metric', body: { run_id: RUN_ID, run_uuid: RUN_ID, key: 'm', value: 1, timestamp: 1, step: 0 }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/log-model', target: '/api/2.0/mlflow/runs/log-model', body: { run_id: RUN_ID, model_json: '{}' }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/log-parameter', target: '/api/2.0/mlflow/runs/log-parameter', body: { run_id: RUN_ID, run_uuid: RUN_ID, key: 'p', value: '1' }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/outputs', target: '/api/2.0/mlflow/runs/outputs', body: { run_id: RUN_ID, models: [{ model_id: MODEL_ID, step: 0 }] }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/search', target: '/api/2.0/mlflow/runs/search', body: { experiment_ids: [EXP], max_results: 1000 }, expect: { ...exp('READ'), ref: 'experiment' } },
  { line: 'POST /api/2.0/mlflow/runs/set-tag', target: '/api/2.0/mlflow/runs/set-tag', body: { run_id: RUN_ID, run_uuid: RUN_ID, key: 'k', value: 'v' }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'POST /api/2.0/mlflow/runs/update', target: '/api/2.0/mlflow/runs/update', body: { run_id: RUN_ID, run_uuid: RUN_ID, status: 'FINISHED', end_time: 1 }, expect: { ...exp('EDIT'), ref: 'run' } },
  { line: 'PUT /api/2.0/mlflow-artifacts/artifacts/{exp_id}/models/{model_id}/artifacts/{path}', target: `/api/2.0/mlflow-artifacts/artifacts/${EXP}/models/${MODEL_ID}/artifacts/model.pkl`, expect: { ...exp('EDIT'), ref: 'artifact-path' } },
  { line: 'PUT /api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{path}', target: `/api/2.0/mlflow-artifacts/artifacts/${encodeURI(ARTIFACT)}`, expect: { ...exp('EDIT'), ref: 'artifact-path' } },
];

describe('what the real MLflow client sends (mlflow-client-paths.md)', () => {
  it.each(CLIENT_CALLS.map((call) => [call.line, call] as const))('%s', (_line, call) => {
    const method = call.line.split(' ')[0]!;
    const canonical = canonicalizeTarget(call.target);
    expect(canonical.ok).toBe(true);
    if (!canonical.ok) return;
    const found = matchRule(method, canonical.path);
    expect(found).toBeDefined();
    const { rule, params } = found!;
    expect({ resource: rule.resource, level: rule.level }).toEqual({ level: undefined, resource: call.expect.resource, ...(call.expect.level ? { level: call.expect.level } : {}) });
    if (call.expect.stampsUser) expect(rule.stampsUser).toBe(true);
    if (call.expect.creates) expect(rule.creates).toBe(call.expect.creates);
    expect(rule.filter).toBe(call.expect.filter);

    const query = new URLSearchParams(canonical.query);
    const body = needsRequestBody(rule, canonical.query !== '') ? parseRequestJson(JSON.stringify(call.body ?? {})) : undefined;
    if (body && !body.ok) throw new Error(body.message);
    const extracted = extractResources(rule, { query, body: body?.value, pathParams: params, workspace: 'default' });
    expect(extracted.ok, JSON.stringify(extracted)).toBe(true);
    if (!extracted.ok) return;
    if (call.expect.ref) {
      expect(extracted.checks[0]?.ref.kind).toBe(call.expect.ref);
      expect(extracted.checks[0]?.level).toBe(call.expect.level);
    } else expect(extracted.checks).toEqual([]);
    if (call.expect.ref === 'artifact-path') expect(extracted.checks[0]?.ref).toMatchObject({ experimentId: EXP });
  });

  it('the 200-step log_metric loop costs one Map lookup per call', () => {
    const started = performance.now();
    for (let i = 0; i < 100_000; i++) matchRule('POST', '/api/2.0/mlflow/runs/log-metric');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(matchRule('POST', '/api/2.0/mlflow/runs/log-metric')!.params).toEqual({});
  });
});

describe('matching', () => {
  it.each([
    ['GET', '/api/2.0/mlflow/runs/get/', 'trailing slash: MLflow answers 404 too'],
    ['GET', '/api/3.0/mlflow/runs/get', 'runs/get exists under 2.0 only'],
    ['GET', '/api/4.0/mlflow/traces', 'no 4.0 routes on the OSS server'],
    ['GET', '/api/2.0/mlflow/nope', 'unknown route'],
    ['POST', '/api/2.0/mlflow/runs/get', 'wrong method'],
    ['GET', '/api/2.0/mlflow/runs/log-metric', 'wrong method'],
    ['GET', '/API/2.0/mlflow/runs/get', 'routes are case-sensitive'],
    ['GET', '/api/2.0/mlflow/runs/get;jsessionid=1', 'no hop strips ";..." parameters'],
    ['GET', '/api/2.0/mlflow-artifacts/artifacts/', 'an empty artifact path'],
    ['TRACE', '/api/2.0/mlflow/runs/get', 'a method MLflow never serves'],
    ['GET', '/-/healthz', 'the gateway\'s own routes are not MLflow\'s'],
  ])('%s %s is unknown (%s)', (method, path) => {
    expect(matchRule(method, path)).toBeUndefined();
  });

  it('exact paths win over parameters, as in werkzeug', () => {
    expect(matchRule('GET', '/api/3.0/mlflow/traces/get')!.rule.name).toBe('traces/get');
    expect(matchRule('GET', '/ajax-api/3.0/mlflow/traces/batchGet')!.rule.name).toBe('traces/batchGet');
    expect(matchRule('GET', '/api/3.0/mlflow/datasets/search')!.rule.name).toBe('datasets/search');
    expect(matchRule('POST', '/api/2.0/mlflow/traces/link-to-run')!.rule.name).toBe('traces/link-to-run');
    // No GET route has the path, so werkzeug (and the table) take "search" as a model id.
    expect(matchRule('GET', '/api/2.0/mlflow/logged-models/search')!.params).toEqual({ model_id: 'search' });
  });

  it('path parameters come back decoded, one segment each, the artifact path whole', () => {
    expect(matchRule('DELETE', '/api/2.0/mlflow/logged-models/m-1/tags/my tag')!.params).toEqual({ model_id: 'm-1', tag_key: 'my tag' });
    expect(matchRule('GET', '/ajax-api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a b/c%.txt')!.params).toEqual({ artifact_path: '1/r/artifacts/a b/c%.txt' });
    expect(matchRule('POST', '/api/2.0/mlflow-artifacts/mpu/create/1/r/artifacts')!.params).toEqual({ artifact_path: '1/r/artifacts' });
  });

  it('HEAD is GET; OPTIONS needs no resource, except where everything is blocked', () => {
    expect(matchRule('HEAD', '/api/2.0/mlflow/runs/get')!.rule.name).toBe('runs/get');
    expect(matchRule('OPTIONS', '/api/2.0/mlflow/runs/log-metric')!.rule).toMatchObject({ resource: 'none', find: [] });
    expect(matchRule('OPTIONS', '/ajax-api/3.0/mlflow/assistant/config')!.rule.resource).toBe('blocked');
    expect(matchRule('OPTIONS', '/api/2.0/mlflow/nope')).toBeUndefined();
  });

  it('both prefixes reach the same kind of rule', () => {
    for (const rule of ROUTE_RULES.filter((r) => r.template.startsWith('/api/'))) {
      const twin = ROUTE_RULES.find((r) => r.method === rule.method && r.template === rule.template.replace('/api/', '/ajax-api/'));
      if (!twin) continue; // the basic-auth app's routes are /api only
      expect({ resource: twin.resource, level: twin.level, find: twin.find }).toEqual({ resource: rule.resource, level: rule.level, find: rule.find });
    }
  });
});

describe('what the lead wires from the rule', () => {
  const rule = (method: string, path: string) => matchRule(method, path)!.rule;

  it('drops what it remembers of a resource after the routes that change it without a create, rename or tag write', () => {
    expect(rule('POST', '/api/2.0/mlflow/experiments/delete').invalidates).toEqual(['experiment']);
    expect(rule('POST', '/ajax-api/2.0/mlflow/experiments/restore').invalidates).toEqual(['experiment']);
    expect(rule('DELETE', '/api/2.0/mlflow/registered-models/delete').invalidates).toEqual(['registered-model']);
    expect(rule('DELETE', '/api/3.0/mlflow/datasets/d-1').invalidates).toEqual(['dataset']);
    expect(rule('POST', '/api/3.0/mlflow/datasets/d-1/add-experiments').invalidates).toEqual(['dataset']);
    expect(rule('POST', '/api/3.0/mlflow/datasets/d-1/remove-experiments').invalidates).toEqual(['dataset']);
    expect(rule('GET', '/api/3.0/mlflow/datasets/d-1').invalidates).toBeUndefined();
  });

  it('reads the body only when the check needs it', () => {
    expect(needsRequestBody(rule('POST', '/api/2.0/mlflow/runs/log-metric'), false)).toBe(true);
    expect(needsRequestBody(rule('GET', '/api/2.0/mlflow/runs/get'), true)).toBe(false);
    expect(needsRequestBody(rule('GET', '/api/2.0/mlflow/runs/get'), false)).toBe(true);
    expect(needsRequestBody(rule('PUT', '/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x'), false)).toBe(false);
    expect(needsRequestBody(rule('GET', '/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x'), false)).toBe(false);
    expect(needsRequestBody(rule('POST', '/ajax-api/2.0/mlflow/upload-artifact'), true)).toBe(false);
    // A filtered search is paged on by the gateway with the caller's own parameters.
    expect(needsRequestBody(rule('POST', '/api/2.0/mlflow/experiments/search'), false)).toBe(true);
    expect(needsRequestBody(rule('POST', '/api/2.0/mlflow/experiments/create'), false)).toBe(true);
    expect(needsRequestBody(rule('POST', '/v1/traces'), false)).toBe(false);
    expect(needsRequestBody(rule('POST', '/graphql'), false)).toBe(false);
  });

  it('marks creates, owner-tag writes, renames and user stamping', () => {
    expect(rule('POST', '/ajax-api/2.0/mlflow/experiments/create')).toMatchObject({ creates: 'experiment', writesTags: { on: 'experiment', keyField: 'tags[].key' } });
    expect(rule('POST', '/api/2.0/mlflow/registered-models/create')).toMatchObject({ creates: 'registered-model', writesTags: { on: 'registered-model' } });
    for (const [method, path] of [
      ['POST', '/api/2.0/mlflow/experiments/set-experiment-tag'], ['POST', '/api/2.0/mlflow/experiments/delete-experiment-tag'],
      ['POST', '/api/2.0/mlflow/registered-models/set-tag'], ['DELETE', '/api/2.0/mlflow/registered-models/delete-tag'],
    ] as const) expect(rule(method, path).writesTags?.keyField, path).toBe('key');
    expect(rule('POST', '/api/2.0/mlflow/runs/log-batch').writesTags).toEqual({ on: 'run', keyField: 'tags[].key', adminOnly: { key: 'mlflow.user', why: expect.any(String) } });
    // The one tag key of a run or trace that only admins may write is data in the table, not code.
    expect(rule('PATCH', '/api/3.0/mlflow/traces/tr-1/tags').writesTags?.adminOnly?.key).toBe('mlflow.artifactLocation');
    expect(rule('POST', '/api/2.0/mlflow/experiments/update')).toMatchObject({ level: 'MANAGE', renames: { on: 'experiment', newNameField: 'new_name' } });
    expect(rule('POST', '/ajax-api/2.0/mlflow/registered-models/rename')).toMatchObject({ level: 'MANAGE', renames: { on: 'registered-model' } });
    expect(rule('POST', '/ajax-api/2.0/mlflow/runs/create').stampsUser).toBe(true);
    expect(rule('POST', '/ajax-api/2.0/mlflow/runs/create-promptlab-run').stampsUser).toBe(true);
    const stamping = ROUTE_RULES.filter((r) => r.stampsUser).map((r) => `${r.method} ${r.template}`);
    expect(stamping).toEqual(['POST /api/2.0/mlflow/runs/create', 'POST /ajax-api/2.0/mlflow/runs/create', 'POST /ajax-api/2.0/mlflow/runs/create-promptlab-run']);
  });

  it('lists its response filters', () => {
    const filters = ROUTE_RULES.filter((r) => r.filter).map((r) => `${r.method} ${r.template} ${r.filter}`);
    expect(filters).toEqual([
      'POST /api/2.0/mlflow/experiments/search experiments', 'POST /ajax-api/2.0/mlflow/experiments/search experiments',
      'GET /api/2.0/mlflow/experiments/search experiments', 'GET /ajax-api/2.0/mlflow/experiments/search experiments',
      'POST /api/2.0/mlflow/logged-models/search logged-models', 'POST /ajax-api/2.0/mlflow/logged-models/search logged-models',
      'GET /api/2.0/mlflow/registered-models/search registered-models', 'GET /ajax-api/2.0/mlflow/registered-models/search registered-models',
      'GET /api/2.0/mlflow/model-versions/search model-versions', 'GET /ajax-api/2.0/mlflow/model-versions/search model-versions',
      'GET /api/3.0/mlflow/workspaces workspaces', 'GET /ajax-api/3.0/mlflow/workspaces workspaces',
    ]);
  });
});
