// Search answers without what the caller cannot READ: experiments, registered models, model versions
// (by their registered model) and logged models (by their experiment); next_page_token kept.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { grantsFromTags } from '../src/authz/grant-tags.ts';
import type { PermissionLevel } from '../src/authz/levels.ts';
import { filterSearchResponse, filterSearchResponseBytes, SearchFilterError, type LevelOf, type SearchAccess } from '../src/authz/search-filter.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

/** bob's level, as a decision engine would give it from the tags: owner MANAGE, a grant its level, else nothing. */
const bobLevel: LevelOf = (_kind, info) => {
  const grants = grantsFromTags(info.tags);
  if (grants.owner === 'bob') return 'MANAGE';
  return grants.users.get('bob') ?? 'NO_PERMISSIONS';
};

function access(overrides: Partial<SearchAccess> = {}): SearchAccess {
  return {
    levelOf: bobLevel,
    levelOfModel: async () => 'NO_PERMISSIONS',
    levelOfExperiment: async () => 'NO_PERMISSIONS',
    levelOfWorkspace: async () => 'NO_PERMISSIONS',
    ...overrides,
  };
}

const experiment = (id: string, name: string, tags: { key: string; value: string }[] = []) => ({
  experiment_id: id, name, artifact_location: `mlflow-artifacts:/${id}`, lifecycle_stage: 'active', creation_time: 1, last_update_time: 1, ...(tags.length ? { tags } : {}),
});

describe('filterSearchResponse', () => {
  it('removes experiments the caller cannot read and keeps next_page_token and every other field', async () => {
    const body = {
      experiments: [
        experiment('1', 'mine', [{ key: 'mlgate.owner', value: 'bob' }]),
        experiment('2', 'theirs', [{ key: 'mlgate.owner', value: 'alice' }]),
        experiment('3', 'shared', [{ key: 'mlgate.owner', value: 'alice' }, { key: 'mlgate.grant.user.bob', value: 'READ' }]),
        experiment('4', 'shut-out', [{ key: 'mlgate.grant.user.bob', value: 'NO_PERMISSIONS' }]),
      ],
      next_page_token: 'eyJvZmZzZXQiOiA0fQ==',
    };
    const filtered = await filterSearchResponse('experiments', body, access()) as typeof body;
    expect(filtered.experiments.map((e) => e.experiment_id)).toEqual(['1', '3']);
    expect(filtered.next_page_token).toBe('eyJvZmZzZXQiOiA0fQ==');
    expect(filtered.experiments[1]).toEqual(body.experiments[2]);
    expect(body.experiments).toHaveLength(4); // the input is not changed
  });

  it('hands levelOf the id, the name and the tags of each entry', async () => {
    const levelOf = vi.fn<LevelOf>(() => 'READ');
    await filterSearchResponse('experiments', { experiments: [experiment('7', 'team-a/x', [{ key: 'k', value: 'v' }])] }, access({ levelOf }));
    expect(levelOf).toHaveBeenCalledWith('experiment', { id: '7', name: 'team-a/x', tags: [{ key: 'k', value: 'v' }] });
    await filterSearchResponse('registered-models', { registered_models: [{ name: 'churn', creation_timestamp: 1 }] }, access({ levelOf }));
    expect(levelOf).toHaveBeenLastCalledWith('registered-model', { name: 'churn', tags: [] });
  });

  it('leaves an emptied list out, as MLflow does when nothing matches; without a pager the token stays', async () => {
    const filtered = await filterSearchResponse('experiments', { experiments: [experiment('2', 'theirs')], next_page_token: 'abc' }, access());
    expect(filtered).toEqual({ next_page_token: 'abc' });
  });

  it('tops a short page up from the next upstream pages, and keeps a token only when a readable entry follows', async () => {
    // Upstream: offsets into this list; 'theirs' entries are hidden.
    const all = ['mine-1', 'theirs', 'theirs', 'mine-2', 'mine-3', 'theirs', 'theirs'].map((name, i) => experiment(String(i + 10), name));
    const asked: [string, number][] = [];
    const pageFrom = (offset: number, count: number) => {
      const next = offset + count < all.length ? { next_page_token: String(offset + count) } : {};
      return { experiments: all.slice(offset, offset + count), ...next };
    };
    const nextPage = async (token: string, count: number) => {
      asked.push([token, count]);
      return pageFrom(Number(token), count);
    };
    const mine = access({ levelOf: (_kind, info) => (info.name?.startsWith('mine') ? 'READ' : 'NO_PERMISSIONS') });
    const first = await filterSearchResponse('experiments', pageFrom(0, 2), mine, 2, nextPage) as { experiments: { name: string }[]; next_page_token?: string };
    expect(first.experiments.map((e) => e.name)).toEqual(['mine-1', 'mine-2']);
    // The token points at mine-3 (offset 4), found by looking one entry ahead.
    expect(first.next_page_token).toBe('4');
    expect(asked).toEqual([['2', 1], ['3', 1], ['4', 1]]);
    asked.length = 0;
    const last = await filterSearchResponse('experiments', pageFrom(4, 2), mine, 2, nextPage);
    // Only hidden entries follow mine-3: the answer ends, as it would if they did not exist.
    expect(last).toEqual({ experiments: [all[4]] });
    expect(asked).toEqual([['6', 1]]);
  });

  it('removes registered models the caller cannot read', async () => {
    const body = {
      registered_models: [
        { name: 'a', tags: [{ key: 'mlgate.grant.user.bob', value: 'EDIT' }] },
        { name: 'b', tags: [{ key: 'mlgate.grant.user.carol', value: 'MANAGE' }] },
        { name: 'c' },
      ],
      next_page_token: 't',
    };
    expect(await filterSearchResponse('registered-models', body, access())).toEqual({ registered_models: [body.registered_models[0]], next_page_token: 't' });
  });

  it('decides model versions by their registered model, looking each model up once', async () => {
    const levels: Record<string, PermissionLevel> = { readable: 'READ', editable: 'EDIT', hidden: 'NO_PERMISSIONS' };
    const levelOfModel = vi.fn(async (name: string) => levels[name] ?? 'NO_PERMISSIONS');
    const versions = ['readable', 'hidden', 'editable', 'readable', 'hidden', 'unknown'].map((name, i) => ({ name, version: String(i + 1), current_stage: 'None' }));
    const filtered = await filterSearchResponse('model-versions', { model_versions: versions, next_page_token: 'n' }, access({ levelOfModel })) as { model_versions: typeof versions; next_page_token: string };
    expect(filtered.model_versions.map((v) => `${v.name}/${v.version}`)).toEqual(['readable/1', 'editable/3', 'readable/4']);
    expect(filtered.next_page_token).toBe('n');
    expect(levelOfModel).toHaveBeenCalledTimes(4);
    expect(new Set(levelOfModel.mock.calls.map(([name]) => name))).toEqual(new Set(['readable', 'hidden', 'editable', 'unknown']));
  });

  it('decides logged models by their experiment', async () => {
    const levelOfExperiment = vi.fn(async (id: string) => (id === '1' ? 'READ' : 'NO_PERMISSIONS') as PermissionLevel);
    const models = [
      { info: { model_id: 'm-1', experiment_id: '1', name: 'a' } },
      { info: { model_id: 'm-2', experiment_id: '2', name: 'b' } },
      { info: { model_id: 'm-3', experiment_id: '1', name: 'c' } },
    ];
    const filtered = await filterSearchResponse('logged-models', { models, next_page_token: 'p' }, access({ levelOfExperiment })) as { models: typeof models };
    expect(filtered.models.map((m) => m.info.model_id)).toEqual(['m-1', 'm-3']);
    expect(levelOfExperiment).toHaveBeenCalledTimes(2);
  });

  it('fails closed on entries that do not name their resource', async () => {
    const filtered = await filterSearchResponse('experiments', { experiments: [null, 'x', { name: 'no id' }, { experiment_id: '1' }, experiment('5', 'ok')] }, access({ levelOf: () => 'MANAGE' })) as { experiments: unknown[] };
    expect(filtered.experiments).toEqual([experiment('5', 'ok')]);
    const versions = await filterSearchResponse('model-versions', { model_versions: [{ version: '1' }, { name: '', version: '2' }] }, access({ levelOfModel: async () => 'MANAGE' }));
    expect(versions).toEqual({});
  });

  it('passes an answer without the list through (MLflow leaves empty lists out), and refuses shapes that are not MLflow\'s', async () => {
    expect(await filterSearchResponse('registered-models', {}, access())).toEqual({});
    expect(await filterSearchResponse('model-versions', { next_page_token: 'x' }, access())).toEqual({ next_page_token: 'x' });
    await expect(filterSearchResponse('experiments', { experiments: {} }, access())).rejects.toThrow(SearchFilterError);
    await expect(filterSearchResponse('experiments', [], access())).rejects.toThrow(SearchFilterError);
    await expect(filterSearchResponseBytes('experiments', '<html>', access())).rejects.toThrow(/not valid JSON/);
  });

  it('propagates a failed lookup instead of guessing', async () => {
    const levelOfModel = async () => {
      throw new Error('MLflow unreachable');
    };
    await expect(filterSearchResponse('model-versions', { model_versions: [{ name: 'a', version: '1' }] }, access({ levelOfModel }))).rejects.toThrow('MLflow unreachable');
  });
});

describe('filtering the answers of an MLflow-shaped server, page by page', () => {
  let upstream: MlflowUpstream;

  beforeAll(async () => {
    upstream = await startMlflowUpstream({ requireJsonContentType: true, defaultExperiment: true });
    for (let i = 0; i < 12; i++) {
      upstream.store.addExperiment(`exp-${i}`, i % 3 === 0 ? [{ key: 'mlgate.grant.user.bob', value: 'READ' }] : [{ key: 'mlgate.owner', value: 'alice' }]);
      upstream.store.addModel(`model-${String(i).padStart(2, '0')}`, i % 4 === 0 ? [{ key: 'mlgate.owner', value: 'bob' }] : []);
    }
    upstream.store.addModelVersion('model-00');
    upstream.store.addModelVersion('model-01');
    upstream.store.addModelVersion('model-00');
    upstream.store.addModelVersion('model-04');
  });
  afterAll(() => upstream.close());

  async function post(path: string, body: unknown): Promise<Buffer> {
    const res = await fetch(upstream.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  }
  async function get(path: string): Promise<Buffer> {
    const res = await fetch(upstream.url + path);
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  }

  it('experiments/search: every readable experiment, across short pages that keep the token', async () => {
    const seen: string[] = [];
    const pageSizes: number[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const raw = await post('/api/2.0/mlflow/experiments/search', { max_results: 5, ...(token ? { page_token: token } : {}) });
      const unfiltered = JSON.parse(raw.toString()) as { next_page_token?: string };
      const filtered = JSON.parse((await filterSearchResponseBytes('experiments', raw, access())).toString()) as { experiments?: { name: string }[]; next_page_token?: string };
      expect(filtered.next_page_token).toBe(unfiltered.next_page_token);
      pageSizes.push(filtered.experiments?.length ?? 0);
      seen.push(...(filtered.experiments ?? []).map((e) => e.name));
      token = filtered.next_page_token;
      pages++;
    } while (token);
    expect(pages).toBe(3); // 13 experiments (Default included) in pages of 5
    expect(seen.sort()).toEqual(['exp-0', 'exp-3', 'exp-6', 'exp-9']);
    expect(pageSizes.every((size) => size < 5)).toBe(true);
  });

  it('registered-models/search: only the models bob owns', async () => {
    const filtered = JSON.parse((await filterSearchResponseBytes('registered-models', await get('/api/2.0/mlflow/registered-models/search?max_results=100'), access())).toString()) as { registered_models: { name: string }[] };
    expect(filtered.registered_models.map((m) => m.name)).toEqual(['model-00', 'model-04', 'model-08']);
  });

  it('model-versions/search: versions of readable models, the model looked up by name', async () => {
    const levelOfModel = vi.fn(async (name: string) => (name === 'model-01' ? 'NO_PERMISSIONS' : 'READ') as PermissionLevel);
    // MLflow's order: last updated first (then name ascending, version descending), as the real
    // servers answer (test/mlflow/fake-matches-real.test.ts). The first page of 3 is model-04/1,
    // model-00/2 and model-01/1; model-00/1 is on the next.
    const raw = await get('/api/2.0/mlflow/model-versions/search?max_results=3');
    const filtered = JSON.parse((await filterSearchResponseBytes('model-versions', raw, access({ levelOfModel }))).toString()) as { model_versions: { name: string; version: string }[]; next_page_token?: string };
    expect(filtered.model_versions.map((v) => `${v.name}/${v.version}`)).toEqual(['model-04/1', 'model-00/2']);
    expect(filtered.next_page_token).toBeTruthy();
    expect(levelOfModel.mock.calls.map(([name]) => name).sort()).toEqual(['model-00', 'model-01', 'model-04']);
  });
});
