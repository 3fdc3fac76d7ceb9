// `mlgate grant|revoke|permissions` against an MLflow-shaped server, as an operator runs them on the
// gateway host: grants are tags on the experiment or registered model in MLflow itself.
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { granteeNameProblem, MlflowGrantsClient, permissionsView } from '../src/authz/grants-client.ts';
import { spawnCli, type CliResult } from './helpers/cli.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let legacy: MlflowUpstream;
let dir: string;
let churn: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream({ version: '3.11.1', requireJsonContentType: true, defaultExperiment: true });
  legacy = await startMlflowUpstream({ version: '2.17.2', requireJsonContentType: true, defaultExperiment: true });
  dir = mkdtempSync(join(tmpdir(), 'mlgate-grants-'));
  churn = upstream.store.addExperiment('team-a/churn', [{ key: 'mlgate.owner', value: 'alice' }, { key: 'mlflow.note.content', value: 'hello' }]).experiment_id;
  upstream.store.addModel('churn-model', [{ key: 'mlgate.owner', value: 'alice' }]);
});
afterAll(async () => {
  await upstream.close();
  await legacy.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI in its own process without blocking this one (the fake MLflow answers from here). */
async function mlgate(args: string[], target: { url: string } = upstream): Promise<CliResult> {
  const cli = spawnCli([...args, '--upstream', target.url], { cwd: dir });
  cli.child.stdin.end();
  const status = await cli.exited;
  return { status, ...cli.output() };
}

function ok(result: CliResult): string {
  expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
  return result.stdout;
}

function failed(result: CliResult): string {
  expect(result.status, result.stdout).not.toBe(0);
  expect(result.stdout).toBe('');
  return result.stderr;
}

const tagsOf = (id: string, target = upstream) => Object.fromEntries(target.store.experiments.get(id)!.tags.map((tag) => [tag.key, tag.value]));
const modelTags = (name: string) => upstream.store.models.get(name)!.tags;

describe('grant, permissions, revoke', () => {
  it('round trip on an experiment named by its name: grant, see it, revoke', async () => {
    expect(ok(await mlgate(['grant', 'bob', 'experiment', 'team-a/churn', 'EDIT']))).toBe(`granted EDIT on experiment ${churn} (team-a/churn) to user bob\n`);
    expect(tagsOf(churn)['mlgate.grant.user.bob']).toBe('EDIT');

    expect(ok(await mlgate(['grant', '@team-a', 'experiment', churn, 'read']))).toBe(`granted READ on experiment ${churn} (team-a/churn) to group team-a\n`);
    expect(ok(await mlgate(['permissions', 'experiment', 'team-a/churn']))).toBe(
      `experiment ${churn} (team-a/churn)\nowner: alice\nGRANTEE  LEVEL\nbob      EDIT\n@team-a  READ\n`,
    );
    const json = JSON.parse(ok(await mlgate(['permissions', 'experiment', churn, '--json'])));
    expect(json).toEqual({ kind: 'experiment', workspace: 'default', id: churn, name: 'team-a/churn', owner: 'alice', users: [{ name: 'bob', level: 'EDIT' }], groups: [{ name: 'team-a', level: 'READ' }] });

    expect(ok(await mlgate(['grant', 'bob', 'experiment', churn, 'MANAGE']))).toContain('to user bob (was EDIT)');
    expect(ok(await mlgate(['revoke', 'bob', 'experiment', 'team-a/churn']))).toBe(`revoked user bob's MANAGE on experiment ${churn} (team-a/churn)\n`);
    expect(ok(await mlgate(['revoke', '@team-a', 'experiment', churn]))).toContain("revoked group team-a's READ");
    expect(tagsOf(churn)).toEqual({ 'mlgate.owner': 'alice', 'mlflow.note.content': 'hello' }); // other tags untouched
    expect(ok(await mlgate(['permissions', 'experiment', churn]))).toBe(`experiment ${churn} (team-a/churn)\nowner: alice\nno grants (levels come from the policy file and the default)\n`);
  });

  it('round trip on a registered model; NO_PERMISSIONS is a grant too', async () => {
    ok(await mlgate(['grant', 'carol', 'model', 'churn-model', 'NO_PERMISSIONS']));
    ok(await mlgate(['grant', '@viewers', 'registered-model', 'churn-model', 'READ']));
    expect(ok(await mlgate(['permissions', 'model', 'churn-model']))).toBe('registered model churn-model\nowner: alice\nGRANTEE   LEVEL\ncarol     NO_PERMISSIONS\n@viewers  READ\n');
    expect(modelTags('churn-model')).toContainEqual({ key: 'mlgate.grant.user.carol', value: 'NO_PERMISSIONS' });
    ok(await mlgate(['revoke', 'carol', 'model', 'churn-model']));
    ok(await mlgate(['revoke', '@viewers', 'model', 'churn-model']));
    expect(modelTags('churn-model')).toEqual([{ key: 'mlgate.owner', value: 'alice' }]);
  });

  it('an all-digit argument is an id when that experiment exists, a name otherwise', async () => {
    const named2024 = upstream.store.addExperiment('2024').experiment_id;
    const byName = ok(await mlgate(['grant', 'dave', 'experiment', '2024', 'READ']));
    expect(byName).toContain(`experiment ${named2024} (2024)`);
    const byId = ok(await mlgate(['grant', 'dave', 'experiment', named2024, 'EDIT']));
    expect(byId).toContain(`experiment ${named2024} (2024)`);
    expect(tagsOf(named2024)['mlgate.grant.user.dave']).toBe('EDIT');
    // "0" is the Default experiment's id, even if someone names an experiment "0" later.
    expect(ok(await mlgate(['permissions', 'experiment', '0']))).toContain('experiment 0 (Default)');
  });

  it('on MLflow 2.17 (no delete-experiment-tag) a revoked grant is blanked, and reads as no grant', async () => {
    const id = legacy.store.addExperiment('legacy').experiment_id;
    ok(await mlgate(['grant', 'bob', 'experiment', 'legacy', 'EDIT'], legacy));
    ok(await mlgate(['revoke', 'bob', 'experiment', 'legacy'], legacy));
    expect(tagsOf(id, legacy)).toEqual({ 'mlgate.grant.user.bob': '' });
    expect(ok(await mlgate(['permissions', 'experiment', 'legacy'], legacy))).toContain('no grants');
    expect(failed(await mlgate(['revoke', 'bob', 'experiment', 'legacy'], legacy))).toContain('user bob has no grant on experiment');
  });
});

describe('user and group names outside MLflow\'s tag-key characters (e-mail addresses)', () => {
  it('grant, permissions and revoke work for alice@example.com; the key is escaped, the name shown as it is', async () => {
    const id = upstream.store.addExperiment('team-mail/churn', [{ key: 'mlgate.owner', value: 'owner@example.com' }]).experiment_id;
    expect(ok(await mlgate(['grant', 'alice@example.com', 'experiment', 'team-mail/churn', 'EDIT']))).toBe(`granted EDIT on experiment ${id} (team-mail/churn) to user alice@example.com\n`);
    expect(ok(await mlgate(['grant', '@ops@example.com', 'experiment', id, 'READ']))).toBe(`granted READ on experiment ${id} (team-mail/churn) to group ops@example.com\n`);
    ok(await mlgate(['grant', 'bob', 'experiment', id, 'READ']));
    // The fake MLflow checks keys as MLflow does, so these are keys MLflow accepts.
    expect(tagsOf(id)).toEqual({
      'mlgate.owner': 'owner@example.com',
      'mlgate.grant.user-enc.alice_40example.com': 'EDIT',
      'mlgate.grant.group-enc.ops_40example.com': 'READ',
      'mlgate.grant.user.bob': 'READ', // a plain name keeps its key
    });
    expect(ok(await mlgate(['permissions', 'experiment', 'team-mail/churn']))).toBe(
      `experiment ${id} (team-mail/churn)\nowner: owner@example.com\nGRANTEE            LEVEL\nalice@example.com  EDIT\nbob                READ\n@ops@example.com   READ\n`,
    );
    expect(JSON.parse(ok(await mlgate(['permissions', 'experiment', id, '--json'])))).toMatchObject({
      owner: 'owner@example.com',
      users: [{ name: 'alice@example.com', level: 'EDIT' }, { name: 'bob', level: 'READ' }],
      groups: [{ name: 'ops@example.com', level: 'READ' }],
    });
    expect(ok(await mlgate(['grant', 'alice@example.com', 'experiment', id, 'MANAGE']))).toContain('to user alice@example.com (was EDIT)');
    expect(ok(await mlgate(['revoke', 'alice@example.com', 'experiment', id]))).toBe(`revoked user alice@example.com's MANAGE on experiment ${id} (team-mail/churn)\n`);
    expect(ok(await mlgate(['revoke', '@ops@example.com', 'experiment', id]))).toContain("revoked group ops@example.com's READ");
    expect(tagsOf(id)).toEqual({ 'mlgate.owner': 'owner@example.com', 'mlgate.grant.user.bob': 'READ' });
  });

  it('on registered models, and on MLflow 2.17 (revoke blanks the escaped key)', async () => {
    upstream.store.addModel('mail-model');
    ok(await mlgate(['grant', 'first_last@example.com', 'model', 'mail-model', 'NO_PERMISSIONS']));
    expect(modelTags('mail-model')).toEqual([{ key: 'mlgate.grant.user-enc.first_5Flast_40example.com', value: 'NO_PERMISSIONS' }]);
    expect(ok(await mlgate(['permissions', 'model', 'mail-model']))).toContain('first_last@example.com  NO_PERMISSIONS');

    const id = legacy.store.addExperiment('legacy-mail').experiment_id;
    ok(await mlgate(['grant', 'alice@example.com', 'experiment', 'legacy-mail', 'READ'], legacy));
    expect(tagsOf(id, legacy)).toEqual({ 'mlgate.grant.user-enc.alice_40example.com': 'READ' });
    ok(await mlgate(['revoke', 'alice@example.com', 'experiment', 'legacy-mail'], legacy));
    expect(tagsOf(id, legacy)).toEqual({ 'mlgate.grant.user-enc.alice_40example.com': '' });
    expect(ok(await mlgate(['permissions', 'experiment', 'legacy-mail'], legacy))).toContain('no grants');
  });

  it('a grant written by hand under the old prefix (MLflow allows a space there) is shown, replaced and revoked', async () => {
    const id = upstream.store.addExperiment('hand-written', [{ key: 'mlgate.grant.user.bob smith', value: 'READ' }]).experiment_id;
    expect(ok(await mlgate(['permissions', 'experiment', id]))).toContain('bob smith  READ');
    expect(ok(await mlgate(['grant', 'bob smith', 'experiment', id, 'EDIT']))).toContain('to user bob smith (was READ)');
    expect(tagsOf(id)).toEqual({ 'mlgate.grant.user-enc.bob_20smith': 'EDIT' }); // one key per grantee

    const other = upstream.store.addExperiment('hand-written-2', [{ key: 'mlgate.grant.user.carol jones', value: 'NO_PERMISSIONS' }]).experiment_id;
    expect(ok(await mlgate(['revoke', 'carol jones', 'experiment', other]))).toContain("revoked user carol jones's NO_PERMISSIONS");
    expect(tagsOf(other)).toEqual({});
  });
});

describe('refusals', () => {
  it('an unknown experiment or model, naming the server; nothing is written', async () => {
    const before = upstream.requests.filter((r) => r.method !== 'GET').length;
    expect(failed(await mlgate(['grant', 'bob', 'experiment', 'no-such', 'READ']))).toBe(`mlgate: no experiment with id or name "no-such" on the MLflow tracking server at ${upstream.url}; nothing was changed\n`);
    expect(failed(await mlgate(['permissions', 'model', 'no-such-model']))).toBe(`mlgate: no registered model named "no-such-model" on the MLflow tracking server at ${upstream.url}; nothing was changed\n`);
    expect(upstream.requests.filter((r) => r.method !== 'GET').length).toBe(before);
  });

  it('MLflow unreachable: the message names the URL', async () => {
    const stderr = failed(await mlgate(['permissions', 'experiment', '1'], { url: 'http://127.0.0.1:1' }));
    expect(stderr).toContain('cannot reach the MLflow tracking server at http://127.0.0.1:1 (ECONNREFUSED)');
  });

  it('bad names, kinds and levels are refused before MLflow is asked', async () => {
    const before = upstream.requests.length;
    expect(failed(await mlgate(['grant', 'bob ', 'experiment', churn, 'READ']))).toContain('"bob " starts or ends with whitespace');
    expect(failed(await mlgate(['grant', 'bob\u0007', 'experiment', churn, 'READ']))).toContain('control character');
    expect(failed(await mlgate(['grant', `${'x'.repeat(220)}@example.com`, 'experiment', churn, 'READ']))).toContain('too long to hold a grant');
    expect(failed(await mlgate(['grant', '@', 'experiment', churn, 'READ']))).toContain('the user or group name is empty');
    expect(failed(await mlgate(['grant', 'bob', 'run', churn, 'READ']))).toContain('the kind must be "experiment" or "model", got "run"');
    expect(failed(await mlgate(['grant', 'bob', 'experiment', churn, 'ADMIN']))).toContain('the level must be one of NO_PERMISSIONS, READ, EDIT, MANAGE, got "ADMIN"');
    expect(upstream.requests.length).toBe(before);
  });

  it('revoking a grant that does not exist says so and changes nothing', async () => {
    expect(failed(await mlgate(['revoke', 'nobody', 'experiment', churn]))).toContain(`user nobody has no grant on experiment ${churn} (team-a/churn)`);
  });
});

describe('--workspace (the fake MLflow models no workspaces: test/mlflow/workspace-grants.test.ts has the real ones)', () => {
  let spaces: MlflowUpstream;
  beforeAll(async () => {
    // Says it has workspaces on (server-info), acts in the default one whatever the header says.
    spaces = await startMlflowUpstream({ version: '3.11.1', requireJsonContentType: true, defaultExperiment: true, workspacesEnabled: true });
    spaces.store.addModel('ws-model');
  });
  afterAll(async () => {
    await spaces?.close();
  });
  const apiCalls = (target: MlflowUpstream) => target.requests.filter((r) => r.url.startsWith('/api/2.0/'));

  it('every look-up and write names the workspace to MLflow; messages and --json name it too', async () => {
    const before = apiCalls(spaces).length;
    expect(ok(await mlgate(['grant', 'bob', 'model', 'ws-model', 'EDIT', '--workspace', 'team-a'], spaces))).toBe('granted EDIT on registered model ws-model in workspace team-a to user bob\n');
    expect(ok(await mlgate(['permissions', 'model', 'ws-model', '--workspace', 'team-a'], spaces))).toBe('registered model ws-model in workspace team-a\nowner: (none recorded)\nGRANTEE  LEVEL\nbob      EDIT\n');
    expect(JSON.parse(ok(await mlgate(['permissions', 'model', 'ws-model', '--workspace', 'team-a', '--json'], spaces)))).toEqual({ kind: 'registered-model', workspace: 'team-a', name: 'ws-model', owner: null, users: [{ name: 'bob', level: 'EDIT' }], groups: [] });
    expect(ok(await mlgate(['revoke', 'bob', 'model', 'ws-model', '--workspace', 'team-a'], spaces))).toBe("revoked user bob's EDIT on registered model ws-model in workspace team-a\n");
    expect(failed(await mlgate(['revoke', 'bob', 'model', 'ws-model', '--workspace', 'team-a'], spaces))).toContain('("mlgate permissions model ws-model --workspace team-a" lists them)');
    const calls = apiCalls(spaces).slice(before);
    expect(calls.length).toBeGreaterThan(5);
    for (const call of calls) expect(call.headers['x-mlflow-workspace'], `${call.method} ${call.url}`).toBe('team-a');
  });

  it('without it, or naming the default workspace, MLflow gets no header (as before workspaces)', async () => {
    const before = apiCalls(spaces).length;
    ok(await mlgate(['permissions', 'model', 'ws-model'], spaces));
    ok(await mlgate(['permissions', 'model', 'ws-model', '--workspace', 'default'], spaces));
    expect(apiCalls(spaces).slice(before).every((call) => call.headers['x-mlflow-workspace'] === undefined)).toBe(true);
  });

  it('a name MLflow would refuse is a mistake at the command line; MLflow is not asked', async () => {
    const before = spaces.requests.length;
    expect(failed(await mlgate(['grant', 'bob', 'model', 'ws-model', 'READ', '--workspace', 'Team_A'], spaces))).toBe('mlgate: --workspace "Team_A" is not a workspace name: 2-63 lowercase letters, digits and inner hyphens; nothing was changed\n');
    expect(failed(await mlgate(['permissions', 'model', 'ws-model', '--workspace', 'a'], spaces))).toContain('--workspace "a" is not a workspace name');
    expect(spaces.requests.length).toBe(before);
  });

  it('on a server without workspaces (which would act in the default one) it is refused, and nothing is written', async () => {
    const writes = () => upstream.requests.filter((r) => r.method !== 'GET').length;
    const before = writes();
    expect(failed(await mlgate(['grant', 'bob', 'model', 'churn-model', 'READ', '--workspace', 'team-a']))).toBe(
      `mlgate: the MLflow tracking server at ${upstream.url} has no workspaces (that takes MLflow 3.10 or later, started with mlflow server --enable-workspaces), so workspace team-a cannot be used\n`,
    );
    expect(failed(await mlgate(['permissions', 'experiment', churn, '--workspace', 'team-a'], legacy))).toContain('has no workspaces');
    expect(writes()).toBe(before);
    expect(modelTags('churn-model')).toEqual([{ key: 'mlgate.owner', value: 'alice' }]);
  });
});

describe('the grants client', () => {
  it('accepts any user or group name whose tag key fits (escaped where MLflow needs it), and no others', async () => {
    for (const name of ['alice', 'team-a', 'svc.ci_bot', 'Zoë', '田中', 'a b', 'a/b', 'a@b', 'a:b', 'x'.repeat(231)]) expect(granteeNameProblem(name), name).toBeUndefined();
    for (const name of ['', ' a', 'a\tb', 'x'.repeat(232)]) expect(granteeNameProblem(name), name).toBeDefined();
  });

  it('MLflow refusing a tag becomes a clear error, not a crash', async () => {
    const client = new MlflowGrantsClient(upstream.url);
    const experiment = (await client.findExperiment(churn))!;
    await expect(client.setTag(experiment, 'mlgate.grant.user.a@b', 'READ')).rejects.toMatchObject({ code: 'INVALID_PARAMETER_VALUE', message: expect.stringContaining("Names may only contain") });
    expect(permissionsView(experiment).owner).toBe('alice');
  });

  it('pages through every experiment and model', async () => {
    const client = new MlflowGrantsClient(upstream.url);
    for (let i = 0; i < 5; i++) upstream.store.addModel(`paged-${i}`);
    const names: string[] = [];
    for await (const model of client.registeredModels()) names.push(model.name);
    expect(names).toEqual(expect.arrayContaining(['churn-model', 'paged-0', 'paged-4']));
    const experiments: string[] = [];
    for await (const experiment of client.experiments()) experiments.push(experiment.name);
    expect(experiments).toEqual(expect.arrayContaining(['Default', 'team-a/churn']));
  });
});

describe('a grant to a name that no file of the gateway knows', () => {
  let home: string;
  let id: string;
  beforeAll(() => {
    // The gateway's own files, where the operator runs the command: who could sign in, and how.
    home = mkdtempSync(join(tmpdir(), 'mlgate-grants-names-'));
    mkdirSync(join(home, 'config'));
    writeFileSync(join(home, 'config', 'htpasswd'), 'bob:$2y$04$abcdefghijklmnopqrstuu5qGZzTVIr2SJqQHVfPF3RPqmWZ9HaW\n');
    writeFileSync(join(home, 'config', 'tokens.json'), JSON.stringify({ version: 1, tokens: [{ id: '0123456789ab', user: 'ci-bot', name: '', hash: `sha256:${'0'.repeat(64)}`, created: '2026-01-01T00:00:00Z', expires: null }] }));
    writeFileSync(join(home, 'config', 'policy.yaml'), [
      'groups:',
      '  team-a: [carol]',
      'admins: [root, "@platform"]',
      'rules:',
      '  - { experiment: "x/*", users: [dora], groups: [viewers], level: READ }',
      '',
    ].join('\n'));
    id = upstream.store.addExperiment('names/checked').experiment_id;
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  async function fromHome(args: string[]): Promise<CliResult> {
    const cli = spawnCli([...args, '--upstream', upstream.url], { cwd: home });
    cli.child.stdin.end();
    const status = await cli.exited;
    return { status, ...cli.output() };
  }

  it('is refused with a warning, the name probably meant and the command with --force; nothing is written', async () => {
    const writes = () => upstream.requests.filter((r) => r.method !== 'GET').length;
    const before = writes();
    expect(failed(await fromHome(['grant', 'bobb', 'experiment', id, 'EDIT']))).toBe(
      'mlgate: warning: no user "bobb" in config/htpasswd, config/tokens.json or config/policy.yaml (did you mean bob?); '
      + `a user who signs in with a JWT may be in none of them. Nothing was changed; to grant anyway: mlgate grant bobb experiment ${id} EDIT --upstream ${upstream.url} --force\n`,
    );
    expect(failed(await fromHome(['grant', '@team-b', 'experiment', id, 'READ']))).toBe(
      `mlgate: warning: no group "team-b" in config/policy.yaml (did you mean @team-a?); a JWT's groups claim may still name it. Nothing was changed; to grant anyway: mlgate grant @team-b experiment ${id} READ --upstream ${upstream.url} --force\n`,
    );
    expect(writes()).toBe(before);
    expect(tagsOf(id)).toEqual({});
  });

  it('needs no --force for users of the htpasswd file, the tokens file or the policy, nor for the policy\'s groups', async () => {
    for (const grantee of ['bob', 'ci-bot', 'carol', 'root', 'dora', '@team-a', '@platform', '@viewers']) ok(await fromHome(['grant', grantee, 'experiment', id, 'READ']));
    expect(Object.keys(tagsOf(id)).sort()).toEqual([
      'mlgate.grant.group.platform', 'mlgate.grant.group.team-a', 'mlgate.grant.group.viewers',
      'mlgate.grant.user.bob', 'mlgate.grant.user.carol', 'mlgate.grant.user.ci-bot', 'mlgate.grant.user.dora', 'mlgate.grant.user.root',
    ]);
  });

  it('--force grants to a name no file knows (a JWT user, say)', async () => {
    expect(ok(await fromHome(['grant', 'sso-user@example.com', 'experiment', id, 'EDIT', '--force']))).toBe(`granted EDIT on experiment ${id} (names/checked) to user sso-user@example.com\n`);
    expect(tagsOf(id)['mlgate.grant.user-enc.sso-user_40example.com']).toBe('EDIT');
  });
});
