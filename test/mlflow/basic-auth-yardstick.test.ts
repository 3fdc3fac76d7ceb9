// MLflow's own auth app as the yardstick (issue 10, item 3): one fixed matrix of levels x resource
// kinds x operations, run against `mlflow server --app-name basic-auth` (grants through its
// permissions API) and against mlgate in front of the plain server (the same grants through mlgate's
// permissions API), for each real MLflow version. Both matrices and the list of their differences are
// pinned; each difference is a deliberate one named in docs/access-control.md "How this differs from MLflow's
// basic-auth app". Every cell is also read back from MLflow itself: an allowed call did what it said,
// a refused one did nothing.
//
// Grants in mlgate go through `PUT /-/api/permissions/...` as the admin: the mirror of the auth app's
// permissions API (an HTTP call by its admin), writing the same tags with the same code as
// `mlgate grant` (MlflowGrantsClient.setGrant), attached to the resource as the auth app's rows are,
// and one request each instead of a Node process per grant (12 per world and version, about 1.5 s
// each on the 2 shared cores). The policy file would give the same levels, but by name, not per
// resource. Calls are raw HTTP, as the MLflow client sends them, so each refused one can be quoted.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { request, type TestResponse } from '../helpers/http-client.ts';
import { basicAuthAdmin, MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor("MLflow's auth app as the yardstick");

const LEVELS = ['READ', 'EDIT', 'MANAGE', 'NO_PERMISSIONS'] as const;
type Level = (typeof LEVELS)[number];
const KINDS = ['experiment', 'model'] as const;
type Kind = (typeof KINDS)[number];
const OPS = ['get', 'update', 'rename', 'delete', 'search'] as const;
type Op = (typeof OPS)[number];
const WORLDS = ['auth app', 'mlgate'] as const;
type WorldName = (typeof WORLDS)[number];

/** allow / deny for a call; listed / hidden for whether a search shows the resource; else what came back. */
type Cell = 'allow' | 'deny' | 'listed' | 'hidden' | `status ${number}`;
type Matrix = Record<Level, Record<Kind, Record<Op, Cell>>>;

const USERS: Record<Level, string> = { READ: 'yard-read', EDIT: 'yard-edit', MANAGE: 'yard-manage', NO_PERMISSIONS: 'yard-none' };
const passwordOf = (user: string) => `${user}-password-1234`;

// ---- The pinned matrices ---------------------------------------------------------------------

function row(get: Cell, update: Cell, rename: Cell, del: Cell, search: Cell): Record<Op, Cell> {
  return { get, update, rename, delete: del, search };
}
function both(cells: Record<Op, Cell>): Record<Kind, Record<Op, Cell>> {
  return { experiment: cells, model: { ...cells } };
}

/** What MLflow's auth app does, 2.17.2 and 3.11.1 alike. */
const AUTH_APP: Matrix = {
  READ: both(row('allow', 'deny', 'deny', 'deny', 'listed')),
  EDIT: both(row('allow', 'allow', 'allow', 'deny', 'listed')),
  MANAGE: both(row('allow', 'allow', 'allow', 'allow', 'listed')),
  NO_PERMISSIONS: both(row('deny', 'deny', 'deny', 'deny', 'hidden')),
};

/** What mlgate does with the same grants. */
const MLGATE: Matrix = {
  READ: both(row('allow', 'deny', 'deny', 'deny', 'listed')),
  EDIT: both(row('allow', 'allow', 'deny', 'deny', 'listed')),
  MANAGE: both(row('allow', 'allow', 'allow', 'allow', 'listed')),
  NO_PERMISSIONS: both(row('deny', 'deny', 'deny', 'deny', 'hidden')),
};

type AfterRename = { recreate: Cell; recreated: boolean; follows: Cell; inherited: Cell };

/**
 * After the MANAGE user renamed its model b and the admin created a new model under the old name:
 * the admin's create, whether MLflow holds that model, and the MANAGE user's set-tag on the renamed
 * model (did the grant follow it?) and on the new one (did the grant stay with the name?). 2.17.2's
 * auth app keys model permissions by name and has no handler for a rename, so they stay with the old
 * name; 3.11.1's moves them (rename_registered_model_permission). Other 2.x versions are taken to
 * behave as 2.17.2.
 */
const AFTER_RENAME_MOVED: AfterRename = { recreate: 'allow', recreated: true, follows: 'allow', inherited: 'deny' };
const AFTER_RENAME: { authApp(version: string): AfterRename; mlgate: AfterRename } = {
  authApp: (version) => version.startsWith('2.')
    // The admin's own creator row for the old name is still there, so recording the new model's
    // creator fails (400 RESOURCE_ALREADY_EXISTS) after the model was created.
    ? { recreate: 'status 400', recreated: true, follows: 'deny', inherited: 'allow' }
    : AFTER_RENAME_MOVED,
  mlgate: AFTER_RENAME_MOVED,
};

/**
 * Every difference between the two worlds, and where docs/access-control.md "How this differs from MLflow's
 * basic-auth app" says it is deliberate (the first cell of that table's row).
 */
function deliberate(version: string): { difference: string; readmeRow: string }[] {
  return [
    { difference: 'experiment rename at EDIT: auth app allow, mlgate deny', readmeRow: 'Renames' },
    { difference: 'model rename at EDIT: auth app allow, mlgate deny', readmeRow: 'Renames' },
    ...(version.startsWith('2.') ? [
      { difference: 'after a model rename, the admin creates a model under the old name: auth app status 400, mlgate allow', readmeRow: 'Grants when a model is renamed' },
      { difference: 'after a model rename, MANAGE updates the renamed model: auth app deny, mlgate allow', readmeRow: 'Grants when a model is renamed' },
      { difference: 'after a model rename, MANAGE updates the new model under the old name: auth app allow, mlgate deny', readmeRow: 'Grants when a model is renamed' },
    ] : []),
  ];
}

// ---- The two worlds ---------------------------------------------------------------------------

type Send = (method: string, path: string, body?: unknown) => Promise<TestResponse>;

interface Ref { id?: string; name: string }

interface World {
  name: WorldName;
  /** A call through the world's front door as this user (the auth app itself, or the gateway). */
  as(user: string, password: string): Send;
  admin: Send;
  /** Gives a user a level on one resource, the world's own way. */
  grant(kind: Kind, ref: Ref, user: string, level: Level): Promise<void>;
  /** Every grant the world holds for these users on resources whose name starts with prefix: "USER: experiment NAME=LEVEL". */
  grantsOf(users: string[], prefix: string): Promise<string[]>;
  /** Reads MLflow itself, all of it (the auth app's admin is not filtered; mlgate's upstream directly). */
  read: Send;
}

const API = '/api/2.0/mlflow';

/** Requests to one base URL as one user, JSON bodies as the MLflow client sends them (3.11.1 needs the content type). */
function sender(base: string, auth?: [string, string], ca?: string): Send {
  return (method, path, body) => {
    const isGet = method === 'GET';
    const query = isGet && body ? `?${new URLSearchParams(body as Record<string, string>)}` : '';
    const text = isGet ? undefined : JSON.stringify(body ?? {});
    return request(`${base}${path}${query}`, {
      method,
      auth,
      ca,
      // Node frames no body of a DELETE unless told its length.
      headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) },
      body: text,
    });
  };
}

async function ok(res: TestResponse, what: string): Promise<TestResponse> {
  if (res.status !== 200) throw new Error(`${what} answered ${res.status}: ${res.text.slice(0, 500)}`);
  return res;
}

function authAppWorld(server: RunningMlflow): World {
  const admin = sender(server.url, basicAuthAdmin(server.version));
  return {
    name: 'auth app',
    as: (user, password) => sender(server.url, [user, password]),
    admin,
    read: admin,
    async grant(kind, ref, user, level) {
      if (kind === 'experiment') {
        await ok(await admin('POST', `${API}/experiments/permissions/create`, { experiment_id: ref.id, username: user, permission: level }), `permission on experiment ${ref.id}`);
      } else {
        await ok(await admin('POST', `${API}/registered-models/permissions/create`, { name: ref.name, username: user, permission: level }), `permission on model ${ref.name}`);
      }
    },
    async grantsOf(users, prefix) {
      const { experiments } = await experimentsNamed(admin, prefix);
      const names = new Map(experiments.map((e) => [e.experiment_id, e.name]));
      const grants: string[] = [];
      for (const user of users) {
        const { user: found } = (await ok(await admin('GET', `${API}/users/get`, { username: user }), `users/get ${user}`)).json<{
          user: { experiment_permissions: { experiment_id: string; permission: string }[]; registered_model_permissions: { name: string; permission: string }[] };
        }>();
        grants.push(
          ...found.experiment_permissions.filter((p) => names.has(p.experiment_id)).map((p) => `${user}: experiment ${names.get(p.experiment_id)}=${p.permission}`),
          ...found.registered_model_permissions.filter((p) => p.name.startsWith(prefix)).map((p) => `${user}: model ${p.name}=${p.permission}`),
        );
      }
      return grants;
    },
  };
}

function mlgateWorld(gw: TestGateway, upstream: string): World {
  const admin = sender(gw.url, ['admin', 'admin-password'], gw.ca);
  const direct = new MlflowDirect(upstream);
  const read: Send = (method, path, body) => direct.call(method, path, body);
  const permissionsPath = (kind: Kind, ref: Ref) =>
    kind === 'experiment' ? `/-/api/permissions/experiments/${ref.id}` : `/-/api/permissions/models/${encodeURIComponent(ref.name)}`;
  return {
    name: 'mlgate',
    as: (user, password) => sender(gw.url, [user, password], gw.ca),
    admin,
    read,
    async grant(kind, ref, user, level) {
      await ok(await admin('PUT', `${permissionsPath(kind, ref)}/grants/users/${user}`, { level }), `grant on ${kind} ${ref.name}`);
    },
    async grantsOf(users, prefix) {
      const { experiments } = await experimentsNamed(read, prefix);
      const { models } = await modelsNamed(read, prefix);
      return users.flatMap((user) => {
        const key = `mlgate.grant.user.${user}`;
        return [
          ...experiments.filter((e) => e.tags[key]).map((e) => `${user}: experiment ${e.name}=${e.tags[key]}`),
          ...models.filter((m) => m.tags[key]).map((m) => `${user}: model ${m.name}=${m.tags[key]}`),
        ];
      });
    },
  };
}

type Tags = Record<string, string>;
const tagsOf = (tags?: { key: string; value: string }[]): Tags => Object.fromEntries((tags ?? []).map((t) => [t.key, t.value]));

/** Every experiment (deleted ones too) whose name starts with prefix, with its tags. */
async function experimentsNamed(send: Send, prefix: string): Promise<{ experiments: { experiment_id: string; name: string; lifecycle_stage: string; tags: Tags }[] }> {
  const res = await ok(await send('POST', `${API}/experiments/search`, { filter: `name LIKE '${prefix}%'`, view_type: 'ALL', max_results: 1000 }), 'experiments/search');
  const found = res.json<{ experiments?: { experiment_id: string; name: string; lifecycle_stage: string; tags?: { key: string; value: string }[] }[] }>().experiments ?? [];
  return { experiments: found.map((e) => ({ ...e, tags: tagsOf(e.tags) })) };
}

/** Every registered model whose name starts with prefix, with its tags. */
async function modelsNamed(send: Send, prefix: string): Promise<{ models: { name: string; tags: Tags }[] }> {
  const res = await ok(await send('GET', `${API}/registered-models/search`, { filter: `name LIKE '${prefix}%'`, max_results: '1000' }), 'registered-models/search');
  const found = res.json<{ registered_models?: { name: string; tags?: { key: string; value: string }[] }[] }>().registered_models ?? [];
  return { models: found.map((m) => ({ name: m.name, tags: tagsOf(m.tags) })) };
}

// ---- One run of the matrix in one world ------------------------------------------------------

/**
 * Per level: one experiment (read, tagged, searched for, renamed, deleted: by id, which a rename does
 * not change in either world); model a (read, searched for, deleted) and model b (tagged, renamed),
 * since 2.17.2's auth app keeps a model's grants under its old name after a rename.
 */
interface Resources { experiment: Ref; modelA: Ref; modelB: Ref }

interface WorldRun {
  timing: string;
  /**
   * After MANAGE's model b was renamed: MANAGE's set-tag on it under its new name (does the grant
   * follow the model?), and on a new model the admin then created under the old name (does the new
   * model get the grant?).
   */
  afterRename: AfterRename;
  /** Every resource's name starts with it. */
  prefix: string;
  matrix: Matrix;
  /** Cells whose answer and MLflow's state disagree (an allowed call that changed nothing, a refused one that did). */
  mismatches: string[];
  /** Each grant as the world holds it before the calls: "yard-read: experiment NAME=READ". */
  grants: string[];
  /** One refusal's status, content type and body (the READ user's experiment update). */
  refusal: { status: number; contentType: string; body: string };
  /** Every request a user sent, with its answer's status: "yard-edit POST /api/2.0/mlflow/experiments/update {...} -> 200". */
  requests: string[];
}

const MARK_KEY = 'yard.by';
const AFTER_RENAME_KEY = 'yard.after-rename';

function cellOf(res: TestResponse): Cell {
  if (res.status === 200) return 'allow';
  if (res.status === 403) return 'deny';
  return `status ${res.status}`;
}

async function runWorld(world: World, prefix: string): Promise<WorldRun> {
  const started = Date.now();
  // The admin creates the resources and makes the grants, level by level.
  const resources = {} as Record<Level, Resources>;
  for (const level of LEVELS) {
    const base = `${prefix}${level.toLowerCase()}`;
    const experiment = async () => {
      const name = `${base}-exp`;
      return { id: (await ok(await world.admin('POST', `${API}/experiments/create`, { name }), `create experiment ${name}`)).json<{ experiment_id: string }>().experiment_id, name };
    };
    const model = async (which: string) => {
      const name = `${base}-model-${which}`;
      await ok(await world.admin('POST', `${API}/registered-models/create`, { name }), `create model ${name}`);
      return { name };
    };
    const made: Resources = resources[level] = { experiment: await experiment(), modelA: await model('a'), modelB: await model('b') };
    await world.grant('experiment', made.experiment, USERS[level], level);
    await world.grant('model', made.modelA, USERS[level], level);
    await world.grant('model', made.modelB, USERS[level], level);
  }
  const grants = (await world.grantsOf(Object.values(USERS), prefix)).sort();

  const setUp = Date.now();
  // Each user, at once, on their own resources: get, update, search, rename, delete.
  const requests: string[] = [];
  let refusal: WorldRun['refusal'] | undefined;
  const matrix = {} as Matrix;
  await Promise.all(LEVELS.map(async (level) => {
    const user = USERS[level];
    const raw = world.as(user, passwordOf(user));
    const send: Send = async (method, path, body) => {
      const res = await raw(method, path, body);
      requests.push(`${user} ${method} ${path} ${JSON.stringify(body ?? {})} -> ${res.status}`);
      return res;
    };
    const { experiment: exp, modelA, modelB } = resources[level];
    const e = {} as Record<Op, Cell>;
    const m = {} as Record<Op, Cell>;
    matrix[level] = { experiment: e, model: m };

    e.get = cellOf(await send('GET', `${API}/experiments/get`, { experiment_id: exp.id! }));
    const tagged = await send('POST', `${API}/experiments/set-experiment-tag`, { experiment_id: exp.id, key: MARK_KEY, value: user });
    e.update = cellOf(tagged);
    if (level === 'READ') refusal = { status: tagged.status, contentType: String(tagged.headers['content-type'] ?? ''), body: tagged.text.trim() };
    const foundExperiments = await send('POST', `${API}/experiments/search`, { filter: `name = '${exp.name}'`, max_results: 10 });
    e.search = foundExperiments.status === 200
      ? ((foundExperiments.json<{ experiments?: { experiment_id: string }[] }>().experiments ?? []).some((x) => x.experiment_id === exp.id) ? 'listed' : 'hidden')
      : cellOf(foundExperiments);
    e.rename = cellOf(await send('POST', `${API}/experiments/update`, { experiment_id: exp.id, new_name: `${exp.name}-renamed` }));
    e.delete = cellOf(await send('POST', `${API}/experiments/delete`, { experiment_id: exp.id }));

    m.get = cellOf(await send('GET', `${API}/registered-models/get`, { name: modelA.name }));
    m.update = cellOf(await send('POST', `${API}/registered-models/set-tag`, { name: modelB.name, key: MARK_KEY, value: user }));
    const foundModels = await send('GET', `${API}/registered-models/search`, { filter: `name = '${modelA.name}'`, max_results: '10' });
    m.search = foundModels.status === 200
      ? ((foundModels.json<{ registered_models?: { name: string }[] }>().registered_models ?? []).some((x) => x.name === modelA.name) ? 'listed' : 'hidden')
      : cellOf(foundModels);
    m.rename = cellOf(await send('POST', `${API}/registered-models/rename`, { name: modelB.name, new_name: `${modelB.name}-renamed` }));
    m.delete = cellOf(await send('DELETE', `${API}/registered-models/delete`, { name: modelA.name }));
  }));

  // What MLflow holds afterwards: each allowed change made, each refused one not.
  const { experiments } = await experimentsNamed(world.read, prefix);
  const { models } = await modelsNamed(world.read, prefix);
  const mismatches: string[] = [];
  for (const level of LEVELS) {
    const user = USERS[level];
    const made = resources[level];
    const exp = experiments.find((x) => x.experiment_id === made.experiment.id);
    const modelA = models.find((x) => x.name === made.modelA.name);
    const modelB = models.find((x) => x.name === made.modelB.name) ?? models.find((x) => x.name === `${made.modelB.name}-renamed`);
    const done: Record<Kind, Partial<Record<Op, boolean>>> = {
      experiment: { update: exp?.tags[MARK_KEY] === user, rename: exp?.name === `${made.experiment.name}-renamed`, delete: exp?.lifecycle_stage === 'deleted' },
      model: { update: modelB?.tags[MARK_KEY] === user, rename: modelB?.name === `${made.modelB.name}-renamed`, delete: modelA === undefined },
    };
    for (const kind of KINDS) {
      for (const [op, happened] of Object.entries(done[kind]) as [Op, boolean][]) {
        const cell = matrix[level][kind][op];
        if ((cell === 'allow') !== happened) mismatches.push(`${world.name}: ${kind} ${op} at ${level} answered ${cell}, and MLflow shows it ${happened ? 'done' : 'not done'}`);
      }
    }
  }
  // After a rename: does the renaming user's grant follow the model, and does a new model created
  // under the old name get it? (MANAGE renamed its model b in every world.)
  const manage = USERS.MANAGE;
  const asManage = world.as(manage, passwordOf(manage));
  const oldName = resources.MANAGE.modelB.name;
  const recreate = cellOf(await world.admin('POST', `${API}/registered-models/create`, { name: oldName }));
  const follows = cellOf(await asManage('POST', `${API}/registered-models/set-tag`, { name: `${oldName}-renamed`, key: AFTER_RENAME_KEY, value: manage }));
  const inherited = cellOf(await asManage('POST', `${API}/registered-models/set-tag`, { name: oldName, key: AFTER_RENAME_KEY, value: manage }));
  const { models: after } = await modelsNamed(world.read, oldName);
  const afterRename: AfterRename = { recreate, recreated: after.some((x) => x.name === oldName), follows, inherited };
  const tagged = (name: string) => after.find((x) => x.name === name)?.tags[AFTER_RENAME_KEY] === manage;
  if ((afterRename.follows === 'allow') !== tagged(`${oldName}-renamed`)) mismatches.push(`${world.name}: set-tag on the renamed model answered ${afterRename.follows}`);
  if ((afterRename.inherited === 'allow') !== tagged(oldName)) mismatches.push(`${world.name}: set-tag on the new model under the old name answered ${afterRename.inherited}`);

  const timing = `${world.name}: set-up ${setUp - started} ms, calls and read-back ${Date.now() - setUp} ms`;
  return { afterRename, timing, prefix, matrix, mismatches, grants, refusal: refusal!, requests: requests.sort() };
}

// ---- Comparing and printing ------------------------------------------------------------------

const AFTER_RENAME_STEPS: Record<keyof AfterRename, string> = {
  recreate: 'the admin creates a model under the old name',
  recreated: 'MLflow holds the new model',
  follows: 'MANAGE updates the renamed model',
  inherited: 'MANAGE updates the new model under the old name',
};

function differences(app: { matrix: Matrix; afterRename: AfterRename }, gate: { matrix: Matrix; afterRename: AfterRename }): string[] {
  const found: string[] = [];
  for (const kind of KINDS) for (const op of OPS) for (const level of LEVELS) {
    const a = app.matrix[level][kind][op];
    const g = gate.matrix[level][kind][op];
    if (a !== g) found.push(`${kind} ${op} at ${level}: auth app ${a}, mlgate ${g}`);
  }
  for (const step of Object.keys(AFTER_RENAME_STEPS) as (keyof AfterRename)[]) {
    if (app.afterRename[step] !== gate.afterRename[step]) found.push(`after a model rename, ${AFTER_RENAME_STEPS[step]}: auth app ${app.afterRename[step]}, mlgate ${gate.afterRename[step]}`);
  }
  return found;
}

const SHORT: Record<string, string> = { allow: 'ok', deny: '--', listed: 'ok', hidden: '--', true: 'yes', false: 'no' };

/** A compact side-by-side table: each cell "auth app|mlgate", a '*' where they differ. */
function formatMatrix(version: string, app: WorldRun, gate: WorldRun): string {
  const short = (value: Cell | boolean) => SHORT[String(value)] ?? String(value).replace('status ', '');
  const cell = (a: Cell | boolean, g: Cell | boolean) => `${short(a)}|${short(g)}${a === g ? '' : '*'}`;
  const width = 8;
  const lines = [
    `MLflow ${version}: each cell "auth app|mlgate"; ok = allowed (search: listed), -- = refused (search: hidden), * = differs`,
    `${''.padEnd(15)} ${'experiment'.padEnd(width * OPS.length)}registered model`,
    ['level'.padEnd(15), ...KINDS.flatMap(() => OPS.map((op) => op.padEnd(width)))].join(' '),
    ...LEVELS.map((level) => [level.padEnd(15), ...KINDS.flatMap((kind) => OPS.map((op) => cell(app.matrix[level][kind][op], gate.matrix[level][kind][op]).padEnd(width)))].join(' ')),
    `after MANAGE renamed its model: ${(Object.keys(AFTER_RENAME_STEPS) as (keyof AfterRename)[])
      .map((step) => `${AFTER_RENAME_STEPS[step]} ${cell(app.afterRename[step], gate.afterRename[step])}`).join(', ')}`,
  ];
  return lines.map((line) => line.trimEnd()).join('\n');
}

const ACCESS_CONTROL_DOC = readFileSync(fileURLToPath(new URL('../../docs/access-control.md', import.meta.url)), 'utf8');
const HOW_THIS_DIFFERS = ACCESS_CONTROL_DOC.slice(ACCESS_CONTROL_DOC.indexOf("### How this differs from MLflow's basic-auth app"), ACCESS_CONTROL_DOC.indexOf('## Managing grants'));

// ---- The tests --------------------------------------------------------------------------------


interface VersionRun { app: WorldRun; gate: WorldRun }

// Every version at once: its own auth-app server (MLflow checks each password with a slow hash, one
// request at a time, so that world sets the pace) and a gateway in front of the shared plain server.
const runs = new Map<string, Promise<VersionRun>>();
const closers: (() => Promise<void>)[] = [];

async function runVersion(server: (typeof servers)[number]): Promise<VersionRun> {
  const started = Date.now();
  const users = Object.fromEntries(Object.values(USERS).map((user) => [user, passwordOf(user)]));
  const [authStart, gwStart] = await Promise.allSettled([
    startMlflowServer(server, { appName: 'basic-auth' }),
    // No policy file: everyone READ (the auth app's default_permission), the htpasswd admin is admin.
    startTestGateway({ upstream: server.url, users: { admin: 'admin-password', ...users } }),
  ]);
  for (const start of [authStart, gwStart]) if (start.status === 'fulfilled') closers.push(() => start.value.close());
  if (authStart.status === 'rejected') throw authStart.reason;
  if (gwStart.status === 'rejected') throw gwStart.reason;
  const [authServer, gw] = [authStart.value, gwStart.value];
  const authApp = authAppWorld(authServer);
  for (const [user, password] of Object.entries(users)) await ok(await authApp.admin('POST', `${API}/users/create`, { username: user, password }), `users/create ${user}`);
  const prefix = `yard-${server.version}-${Date.now().toString(36)}-`;
  const [app, gate] = await Promise.all([runWorld(authApp, prefix), runWorld(mlgateWorld(gw, server.url), prefix)]);
  console.log(`\n${formatMatrix(server.version, app, gate)}\ndifferences: ${differences(app, gate).join('; ') || 'none'}\n(${app.timing}; ${gate.timing}; ${Date.now() - started} ms with both servers' start)\n`);
  return { app, gate };
}

if (servers.length) {
  beforeAll(() => {
    for (const server of servers) {
      const run = runVersion(server);
      run.catch(() => {}); // reported by the describe that awaits it
      runs.set(server.version, run);
    }
  });
  afterAll(async () => {
    await Promise.allSettled([...runs.values()]);
    await Promise.all(closers.map((close) => close()));
  });
}

for (const server of servers) {
  describe(`MLflow ${server.version}: the auth app and mlgate, same grants, same calls`, () => {
    let app: WorldRun;
    let gate: WorldRun;
    beforeAll(async () => {
      ({ app, gate } = await runs.get(server.version)!);
    }, 240_000); // both versions run at once; on a loaded machine the auth app's pace can pass the 120 s default

    it('gives each user the same level on the same resources in both worlds', () => {
      const expected = LEVELS.flatMap((level) => ['exp', 'model-a', 'model-b'].map((what) =>
        `${USERS[level]}: ${what === 'exp' ? 'experiment' : 'model'} ${app.prefix}${level.toLowerCase()}-${what}=${level}`)).sort();
      expect(app.grants).toEqual(expected);
      expect(gate.grants).toEqual(expected);
    });

    it('the auth app answers the pinned matrix', () => {
      expect(app.matrix).toEqual(AUTH_APP);
      expect(app.afterRename).toEqual(AFTER_RENAME.authApp(server.version));
    });

    it('mlgate answers the pinned matrix', () => {
      expect(gate.matrix).toEqual(MLGATE);
      expect(gate.afterRename).toEqual(AFTER_RENAME.mlgate);
    });

    it('every difference is a deliberate one, listed in docs/access-control.md "How this differs from MLflow\'s basic-auth app"', () => {
      const expected = deliberate(server.version);
      expect(differences(app, gate)).toEqual(expected.map((d) => d.difference));
      for (const { readmeRow } of expected) expect(HOW_THIS_DIFFERS).toMatch(new RegExp(`^\\| ${readmeRow} \\|`, 'm'));
      // The pins above differ exactly there, so the pins and the list cannot drift apart.
      expect(differences({ matrix: AUTH_APP, afterRename: AFTER_RENAME.authApp(server.version) }, { matrix: MLGATE, afterRename: AFTER_RENAME.mlgate }))
        .toEqual(expected.map((d) => d.difference));
    });

    it('an allowed call did what it said and a refused one did nothing, read back from MLflow itself', () => {
      expect(app.mismatches).toEqual([]);
      expect(gate.mismatches).toEqual([]);
      // Every refusal was a 403, one per refused cell.
      const refused = (run: WorldRun) => run.requests.filter((line) => line.endsWith('-> 403')).length;
      const denyCells = (matrix: Matrix) => LEVELS.flatMap((level) => KINDS.flatMap((kind) => OPS.map((op) => matrix[level][kind][op]))).filter((cell) => cell === 'deny').length;
      expect(refused(app)).toBe(denyCells(AUTH_APP));
      expect(refused(gate)).toBe(denyCells(MLGATE));
    });

    it('refuses in its own words: the auth app in plain text, mlgate in MLflow\'s JSON naming the levels (docs/access-control.md row "Errors")', () => {
      expect(app.refusal).toEqual({ status: 403, contentType: expect.stringMatching(/^text\/html/), body: 'Permission denied' });
      expect(gate.refusal.status).toBe(403);
      expect(gate.refusal.contentType).toMatch(/^application\/json/);
      expect(JSON.parse(gate.refusal.body)).toEqual({
        error_code: 'PERMISSION_DENIED',
        message: expect.stringMatching(/user yard-read has READ on experiment \d+.*set-experiment-tag needs EDIT/),
      });
      expect(HOW_THIS_DIFFERS).toMatch(/^\| Errors \| plain-text `Permission denied` \| MLflow's JSON, naming the level held and needed \|/m);
    });
  });
}
