// Keeps the fake honest: the conformance scenario (conformance-scenario.ts) runs against the real
// MLflow server and against the fake (test/helpers/mlflow-upstream.ts) configured for the same
// version, each behind its own mlgate gateway as the admin (the way the gateway tests use the
// fake), and every answer must agree: status, content type, and the JSON body (error_code and
// message included) once ids and timestamps are normalised. A disagreement is fixed in the fake;
// what is deliberately not compared is in NOT_COMPARED below, each with its reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from '../helpers/mlflow-upstream.ts';
import type { MlflowVersion } from '../helpers/mlflow-tracking-store.ts';
import { CONFORMANCE_SCENARIO, type ScenarioStep } from './conformance-scenario.ts';

const servers = mlflowServersFor('the fake MLflow against the real one');

const FAKE_VERSIONS: readonly string[] = ['2.17.2', '3.11.1'] satisfies MlflowVersion[];
const ADMIN: [string, string] = ['admin', 'admin-password'];
const T0 = 1_700_000_000_000;

/**
 * What is deliberately not compared, in one place: `step` is a step name (or * for every step),
 * `path` a dotted path into the answer (* for the whole answer, status included). Both sides get
 * "<not compared>" there, or, with `keep`, only the part of the value that `keep` matches.
 */
const NOT_COMPARED: readonly { step: string; path: string; keep?: RegExp; reason: string }[] = [
  {
    step: 'experiments/create a duplicate name', path: 'message', keep: /^[^\n]*/,
    reason: 'after its first line, MLflow quotes sqlalchemy: the SQL statement, its parameters (the insert\'s timestamps) and a help link',
  },
  {
    step: 'registered-models/create a duplicate name', path: 'message', keep: /^[^\n]*/,
    reason: 'the same sqlalchemy quotation (2.17.2)',
  },
  {
    step: 'an unknown API route', path: '*',
    reason: 'the fake answers 200 {} on an API path it does not model (MLflow answers Flask\'s HTML 404 for a path it lacks), so gateway tests can go through any route of the table without the fake modelling each',
  },
  {
    step: 'artifact download of a missing file', path: 'message', keep: /^The following failures occurred while downloading one or more artifacts from /,
    reason: 'names the server\'s artifact directory on its disk',
  },
];

/**
 * Tag lists are compared as sets (sorted by key): MLflow's order depends on the endpoint and the
 * version (3.11.1 sorts a registered model's tags in search and update answers, not in get), and
 * neither the gateway nor the client reads meaning into it.
 */
const UNORDERED_LISTS = new Set(['tags']);

/** One answer as compared: ids, times and page tokens normalised. */
interface Observed {
  step: string;
  status: number;
  /** The media type without parameters. */
  type: string;
  body: unknown;
}

type Vars = Map<string, string | number>;

function fill(value: unknown, vars: Vars): unknown {
  if (typeof value === 'string') {
    const whole = /^\{\{(\w+)\}\}$/.exec(value);
    if (whole && typeof vars.get(whole[1]!) === 'number') return vars.get(whole[1]!);
    return value.replace(/\{\{(\w+)\}\}/g, (_, name: string) => String(vars.get(name) ?? `<no ${name}>`));
  }
  if (Array.isArray(value)) return value.map((item) => fill(item, vars));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, vars)]));
  return value;
}

function at(value: unknown, path: string): unknown {
  let here = value;
  for (const key of path.split('.')) here = here && typeof here === 'object' ? (here as Record<string, unknown>)[key] : undefined;
  return here;
}

const ID_FIELDS = new Set(['experiment_id', 'experiment_ids', 'run_id', 'run_uuid', 'source_run_id', 'model_id']);
const TIME_FIELD = /(^|_)(time|timestamp|timestamp_ms)$/;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Ids as `<var>` (the names the scenario saved them under), times as `<time>`, page tokens as
 * `<page token>`. An experiment id is a short number, so inside a string it is replaced only where
 * an id stands (after "/", "=", a quote or "experiment "), never in "version=2".
 */
function normalise(value: unknown, vars: Vars, key = ''): unknown {
  if (Array.isArray(value)) {
    const items = value.map((item) => normalise(item, vars, key));
    return UNORDERED_LISTS.has(key) ? items.sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)) : items;
  }
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v, vars, k)]));
  if (typeof value === 'number' && TIME_FIELD.test(key)) return '<time>';
  if (typeof value !== 'string') return value;
  if (key === 'next_page_token') return '<page token>';
  let text = value;
  for (const [name, id] of vars) {
    if (typeof id !== 'string' || id === '' || name === 'prefix') continue;
    if (text === id && (ID_FIELDS.has(key) || id.length > 8)) return `<${name}>`;
    const pattern = id.length > 8 ? escape(id) : `(?<=[/='"]|experiment |id )(?<!version=)${escape(id)}(?![0-9A-Za-z]|\\.[0-9])`;
    text = text.replace(new RegExp(pattern, 'g'), `<${name}>`);
  }
  return text;
}

function notCompared(observed: Observed): Observed {
  const rules = NOT_COMPARED.filter((rule) => rule.step === '*' || rule.step === observed.step);
  if (rules.length === 0) return observed;
  if (rules.some((rule) => rule.path === '*')) return { step: observed.step, status: 0, type: '<not compared>', body: '<not compared>' };
  const body = structuredClone(observed.body);
  for (const rule of rules) {
    const keys = rule.path.split('.');
    let here = body as Record<string, unknown> | undefined;
    for (const key of keys.slice(0, -1)) here = here && typeof here === 'object' ? (here[key] as Record<string, unknown>) : undefined;
    const last = keys.at(-1)!;
    if (!here || typeof here !== 'object' || !(last in here)) continue;
    const kept = rule.keep ? rule.keep.exec(String(here[last]))?.[0] : undefined;
    here[last] = kept !== undefined ? `${kept}<not compared>` : '<not compared>';
  }
  return { ...observed, body };
}

/** Runs the scenario through a gateway as the admin; each answer normalised. */
async function runScenario(gw: TestGateway, major: number, prefix: string): Promise<Observed[]> {
  const vars: Vars = new Map<string, string | number>([['prefix', prefix], ['t0', T0], ['t1', T0 + 1000]]);
  const observed: Observed[] = [];
  for (const step of CONFORMANCE_SCENARIO as ScenarioStep[]) {
    if (step.major !== undefined && step.major !== major) continue;
    const query = step.query ? new URLSearchParams(fill(step.query, vars) as Record<string, string>).toString() : '';
    const path = (fill(step.path, vars) as string) + (query ? `?${query}` : '');
    const body = step.raw !== undefined ? (fill(step.raw, vars) as string) : step.body !== undefined ? JSON.stringify(fill(step.body, vars)) : undefined;
    const contentType = step.contentType === undefined ? (step.body !== undefined ? 'application/json' : undefined) : step.contentType;
    // Content-Length always: Node's client sends a DELETE body unframed otherwise (the gateway would read it as the next request).
    const headers = { ...(contentType ? { 'content-type': contentType } : {}), ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}) };
    const res = await gw.request(path, { method: step.method, auth: ADMIN, headers, body });
    const type = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
    let answer: unknown = res.text;
    if (type === 'application/json') {
      try { answer = res.json(); } catch { /* compared as text */ }
    }
    for (const [name, where] of Object.entries(step.save ?? {})) {
      const value = at(answer, where);
      if (typeof value === 'string' && value !== '') vars.set(name, value);
    }
    observed.push(notCompared({ step: step.name, status: res.status, type, body: normalise(answer, vars) }));
  }
  return observed;
}


for (const server of servers) {
  const known = FAKE_VERSIONS.includes(server.version);
  describe.skipIf(!known)(`the fake answers the conformance scenario as MLflow ${server.version} does${known ? '' : ' (the fake knows only 2.17.2 and 3.11.1)'}`, () => {
    let upstream: MlflowUpstream;
    let realGw: TestGateway;
    let fakeGw: TestGateway;

    beforeAll(async () => {
      // The fake without its two leniencies for older tests: both real versions refuse a POST
      // without a JSON Content-Type and start with the Default experiment.
      upstream = await startMlflowUpstream({ version: server.version as MlflowVersion, requireJsonContentType: true, defaultExperiment: true });
      const start = (url: string) => startTestGateway({ upstream: url, users: { admin: ADMIN[1] } });
      [realGw, fakeGw] = await Promise.all([start(server.url), start(upstream.url)]);
    });
    afterAll(async () => {
      await Promise.all([realGw?.close(), fakeGw?.close(), upstream?.close()]);
    });

    it('gives the same answers, step by step', async () => {
      const major = Number(server.version.split('.')[0]);
      const prefix = `fake-${server.version}-${Date.now().toString(36)}`;
      const real = await runScenario(realGw, major, prefix);
      const fake = await runScenario(fakeGw, major, prefix);
      expect(fake.map((o) => o.step)).toEqual(real.map((o) => o.step));
      for (const [i, answer] of real.entries()) expect.soft(fake[i], answer.step).toEqual(answer);
    });
  });
}
