// Searches reveal nothing about what a user may not read: an answer with hidden entries removed reads
// exactly like MLflow's answer on a server where those entries do not exist, page by page, token
// presence included. Shown as an oracle on the real MLflow: the same user's searches through a
// gateway in front of a server holding hidden entries, and through one in front of a second server
// seeded without them, for random filters (fast-check) and page sizes.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('search results against the real MLflow');


type Kind = 'experiments' | 'registered-models' | 'model-versions';

interface Page {
  entries: string[];
  /** Only whether there is one: its value is MLflow's offset, which differs between the two servers. */
  more: boolean;
  /** The answer's keys, to compare shapes ({} when nothing matches). */
  keys: string[];
}

const SUFFIXES = ['aa', 'ab', 'ba', 'bb', 'ca', 'ac', 'cb', 'bc'];

for (const server of servers) {
  describe(`searches as a user who may not read everything, against MLflow ${server.version}`, () => {
    const prefix = `srch${server.version.replace(/\./g, '')}-`;
    // Interleaved: hidden (s-...) and readable (p-...) entries, created in this order on the first
    // server; the second gets only the readable ones, in the same order.
    const seeds = SUFFIXES.flatMap((suffix, i) => (i % 3 === 1 ? [`${prefix}s-${suffix}`, `${prefix}p-${suffix}`] : [`${prefix}p-${suffix}`, `${prefix}s-${suffix}`]));
    let clean: RunningMlflow;
    let withHidden: TestGateway;
    let withoutHidden: TestGateway;

    async function seed(direct: MlflowDirect, names: string[]) {
      for (const name of names) {
        await direct.api('POST', 'experiments/create', { name });
        await direct.api('POST', 'registered-models/create', { name });
        await direct.api('POST', 'model-versions/create', { name, source: 'mlflow-artifacts:/0/seed/artifacts/model' });
      }
    }

    beforeAll(async () => {
      clean = await startMlflowServer(server);
      await Promise.all([seed(new MlflowDirect(server.url), seeds), seed(new MlflowDirect(clean.url), seeds.filter((name) => name.includes('-p-')))]);
      const policy = {
        rules: [
          { experiment: `${prefix}s-*`, users: ['*'], level: 'NO_PERMISSIONS' },
          { model: `${prefix}s-*`, users: ['*'], level: 'NO_PERMISSIONS' },
        ],
        default: 'READ',
      };
      const users = { victor: 'victor-password' };
      [withHidden, withoutHidden] = await Promise.all([
        startTestGateway({ upstream: server.url, users, policy }),
        startTestGateway({ upstream: clean.url, users, policy }),
      ]);
    });
    afterAll(async () => {
      await withHidden?.close();
      await withoutHidden?.close();
      await clean?.close();
    });

    async function searchPage(gw: TestGateway, kind: Kind, filter: string, maxResults: number, token: string | undefined, viaGet: boolean): Promise<{ page: Page; token?: string; text: string }> {
      const params: Record<string, string | number> = { filter, max_results: maxResults, ...(token ? { page_token: token } : {}) };
      const path = `/api/2.0/mlflow/${kind}/search`;
      const res = kind === 'experiments' && !viaGet
        ? await gw.request(path, { method: 'POST', auth: ['victor', 'victor-password'], headers: { 'content-type': 'application/json' }, body: JSON.stringify(params) })
        : await gw.request(`${path}?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]))}`, { auth: ['victor', 'victor-password'] });
      expect(res.status, res.text).toBe(200);
      const body = res.json<Record<string, unknown>>();
      const list = (body[kind === 'experiments' ? 'experiments' : kind === 'registered-models' ? 'registered_models' : 'model_versions'] ?? []) as { name: string; version?: string }[];
      const next = typeof body.next_page_token === 'string' ? body.next_page_token : undefined;
      return { page: { entries: list.map((e) => (e.version ? `${e.name}/${e.version}` : e.name)), more: next !== undefined, keys: Object.keys(body).sort() }, token: next, text: res.text };
    }

    async function allPages(gw: TestGateway, kind: Kind, filter: string, maxResults: number, viaGet: boolean): Promise<Page[]> {
      const pages: Page[] = [];
      let token: string | undefined;
      do {
        const answer = await searchPage(gw, kind, filter, maxResults, token, viaGet);
        pages.push(answer.page);
        token = answer.token;
      } while (token && pages.length < 40);
      return pages;
    }

    it('answers a search that matches only hidden entries exactly as MLflow answers one that matches nothing', async () => {
      for (const kind of ['experiments', 'registered-models', 'model-versions'] as const) {
        const hiddenOnly = await searchPage(withHidden, kind, `name LIKE '${prefix}s-a%'`, 3, undefined, false);
        const nothing = await searchPage(withoutHidden, kind, `name LIKE '${prefix}s-a%'`, 3, undefined, false);
        expect(hiddenOnly.text, kind).toBe(nothing.text);
        expect(JSON.parse(hiddenOnly.text), kind).toEqual({});
      }
    });

    it('gives the same pages, token presence included, with and without hidden entries, for random filters and page sizes', async () => {
      const fragments = ['', 's', 'p', 's-', 'p-', 's-a', 's-b', 'p-a', 'p-c', 's-ab', 'p-bb', 's-c', '%a', '%b_'];
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom<Kind>('experiments', 'registered-models', 'model-versions'),
          fc.constantFrom(...fragments),
          fc.constantFrom('LIKE', '='),
          fc.integer({ min: 1, max: 4 }),
          fc.boolean(),
          async (kind, fragment, op, maxResults, viaGet) => {
            const filter = op === 'LIKE' ? `name LIKE '${prefix}${fragment}%'` : `name = '${prefix}${fragment}'`;
            const seen = await allPages(withHidden, kind, filter, maxResults, viaGet);
            const truth = await allPages(withoutHidden, kind, filter, maxResults, viaGet);
            expect(seen, `${kind} ${filter} max_results=${maxResults}`).toEqual(truth);
          },
        ),
        { numRuns: 30, seed: 1203 },
      );
    });
  });
}
