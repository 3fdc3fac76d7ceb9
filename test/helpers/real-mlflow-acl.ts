// Helpers for the access-control conformance tests (test/mlflow/access-control.test.ts): raw HTTP
// calls through the gateway as one user, the 403 every refusal must be, and read-backs of what the
// real MLflow server holds, straight from it (around the gateway).
import { expect } from 'vitest';
import type { TestResponse } from './http-client.ts';
import type { TestGateway } from './gateway.ts';
import type { MlflowDirect } from './real-mlflow.ts';

type Tags = Record<string, string>;

function tagMap(tags: unknown): Tags {
  return Object.fromEntries(((tags as { key: string; value: string }[] | undefined) ?? []).map((t) => [t.key, t.value]));
}

/** One API call through the gateway as `user`: a GET's parameters in the query string, any other method's as a JSON body. */
export function gatewayCaller(gw: TestGateway, passwords: Record<string, string>) {
  return (user: string, method: string, path: string, params?: unknown, headers: Record<string, string> = {}): Promise<TestResponse> => {
    const auth: [string, string] = [user, passwords[user]!];
    // Paths outside /api/ and /ajax-api/ answer errors in JSON to clients that ask for it, as the UI's scripts do.
    const accept = { accept: 'application/json' };
    if (method === 'GET') {
      const query = params ? `?${new URLSearchParams(params as Record<string, string>)}` : '';
      return gw.request(`${path}${query}`, { method, auth, headers: { ...accept, ...headers } });
    }
    const body = params === undefined ? '' : typeof params === 'string' || Buffer.isBuffer(params) ? params : JSON.stringify(params);
    return gw.request(path, {
      method, auth, body,
      // Node sends a DELETE's body without a length unless told: give it, as every HTTP client does.
      headers: { ...accept, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
    });
  };
}

/** A refusal as the MLflow client understands it: 403, MLflow's JSON, PERMISSION_DENIED; returns the message. */
export function expectDenied(res: TestResponse, message?: string | RegExp): string {
  expect(res.status, res.text).toBe(403);
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  const body = res.json<{ error_code: string; message: string }>();
  expect(body.error_code).toBe('PERMISSION_DENIED');
  if (typeof message === 'string') expect(body.message).toBe(message);
  else if (message) expect(body.message).toMatch(message);
  return body.message;
}

export function expectOk(res: TestResponse): TestResponse {
  expect(res.status, res.text).toBe(200);
  return res;
}

interface HeldRun {
  userId: string;
  status: string;
  lifecycle: string;
  runName: string;
  tags: Tags;
  params: Tags;
  metrics: Record<string, number>;
  inputs: unknown[];
}

/** What MLflow itself holds: read around the gateway. */
export class Held {
  constructor(private readonly direct: MlflowDirect) {}

  async experiment(id: string): Promise<{ name: string; lifecycle: string; tags: Tags }> {
    const { experiment } = await this.direct.api<{ experiment: { name: string; lifecycle_stage: string; tags?: unknown } }>('GET', 'experiments/get', { experiment_id: id });
    return { name: experiment.name, lifecycle: experiment.lifecycle_stage, tags: tagMap(experiment.tags) };
  }

  async run(id: string): Promise<HeldRun> {
    const { run } = await this.direct.api<{ run: { info: { user_id: string; status: string; lifecycle_stage: string; run_name: string }; data: { tags?: unknown; params?: { key: string; value: string }[]; metrics?: { key: string; value: number }[] }; inputs?: { dataset_inputs?: unknown[] } } }>(
      'GET', 'runs/get', { run_id: id });
    return {
      userId: run.info.user_id,
      status: run.info.status,
      lifecycle: run.info.lifecycle_stage,
      runName: run.info.run_name,
      tags: tagMap(run.data.tags),
      params: Object.fromEntries((run.data.params ?? []).map((p) => [p.key, p.value])),
      metrics: Object.fromEntries((run.data.metrics ?? []).map((m) => [m.key, m.value])),
      inputs: run.inputs?.dataset_inputs ?? [],
    };
  }

  /** Run ids of an experiment (active and deleted). */
  async runIds(experimentId: string): Promise<string[]> {
    const found = await this.direct.api<{ runs?: { info: { run_id: string } }[] }>('POST', 'runs/search', { experiment_ids: [experimentId], run_view_type: 'ALL', max_results: 1000 });
    return (found.runs ?? []).map((r) => r.info.run_id).sort();
  }

  async model(name: string): Promise<{ name: string; tags: Tags; aliases: Record<string, string>; description: string } | undefined> {
    const res = await this.direct.call('GET', '/api/2.0/mlflow/registered-models/get', { name });
    if (res.status === 404) return undefined;
    expect(res.status, res.text).toBe(200);
    const { registered_model: m } = res.json<{ registered_model: { name: string; tags?: unknown; aliases?: { alias: string; version: string }[]; description?: string } }>();
    return { name: m.name, tags: tagMap(m.tags), aliases: Object.fromEntries((m.aliases ?? []).map((a) => [a.alias, a.version])), description: m.description ?? '' };
  }

  async versions(model: string): Promise<{ version: string; tags: Tags; stage: string; description: string }[]> {
    const found = await this.direct.api<{ model_versions?: { version: string; tags?: unknown; current_stage?: string; description?: string }[] }>(
      'GET', 'model-versions/search', { filter: `name='${model}'`, max_results: '1000' });
    return (found.model_versions ?? []).map((v) => ({ version: v.version, tags: tagMap(v.tags), stage: v.current_stage ?? '', description: v.description ?? '' }))
      .sort((a, b) => Number(a.version) - Number(b.version));
  }

  /** Files under a proxied artifact directory (`<experiment>/<run>/artifacts/...`), as MLflow's artifact server lists them. */
  async artifacts(path: string): Promise<string[]> {
    const res = await this.direct.call('GET', '/api/2.0/mlflow-artifacts/artifacts', { path });
    expect(res.status, res.text).toBe(200);
    return (res.json<{ files?: { path: string }[] }>().files ?? []).map((f) => f.path).sort();
  }

  async artifactText(path: string): Promise<{ status: number; text: string }> {
    const res = await this.direct.call('GET', `/api/2.0/mlflow-artifacts/artifacts/${path}`);
    return { status: res.status, text: res.text };
  }
}

/**
 * Every entry of a search, page by page (small pages, so the filter's kept page tokens are followed),
 * through the gateway as a user or straight from MLflow.
 */
export async function allPages<T>(
  call: (params: Record<string, unknown>) => Promise<TestResponse>, params: Record<string, unknown>, field: string, pageSize = 2,
): Promise<T[]> {
  const entries: T[] = [];
  let token: string | undefined;
  for (let page = 0; page < 100; page++) {
    const res = await call({ ...params, max_results: pageSize, ...(token ? { page_token: token } : {}) });
    expect(res.status, res.text).toBe(200);
    const body = res.json<Record<string, unknown>>();
    entries.push(...((body[field] as T[] | undefined) ?? []));
    token = body.next_page_token as string | undefined;
    if (!token) return entries;
  }
  throw new Error('more than 100 pages');
}
