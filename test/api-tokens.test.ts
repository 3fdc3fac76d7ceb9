// API tokens for CI jobs: issued, listed and revoked with the real `mlgate token` command, then
// used as MLFLOW_TRACKING_TOKEN (Authorization: Bearer mlg_...) against a running gateway.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../src/auth/api-tokens.ts';
import { runCli, type CliResult } from './helpers/cli.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;
let tokensFile: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-password', bob: 'bob-password' } });
  tokensFile = join(gw.dir, 'tokens.json'); // tokens.file, as the test gateway configures it
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

/** The CLI as a user runs it, on the running gateway's configuration file. */
function token(...args: string[]): CliResult {
  return runCli(['token', ...args, '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir });
}

function issue(user: string, ...options: string[]): { secret: string; id: string } {
  const result = token('issue', user, ...options);
  expect(result.status, result.stderr).toBe(0);
  expect(result.stdout).toMatch(/^mlg_[0-9A-Za-z]{49}\n$/);
  const id = /issued token ([0-9a-f]{12}) for/.exec(result.stderr)?.[1];
  expect(id, result.stderr).toBeDefined();
  return { secret: result.stdout.trim(), id: id! };
}

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

async function createExperiment(secret: string, name: string) {
  return gw.request('/api/2.0/mlflow/experiments/create', {
    method: 'POST', headers: { ...bearer(secret), 'content-type': 'application/json' }, body: JSON.stringify({ name }),
  });
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function challengeOf(headers: Record<string, unknown>): string {
  return String(headers['www-authenticate']);
}

describe('mlgate token issue, list, revoke', () => {
  it('issues a token the running gateway accepts as the user, and lists it without the secret', async () => {
    const { secret, id } = issue('alice', '--name', 'ci-nightly', '--ttl', '30d');

    // The gateway was running before the token existed: it picks up the file change.
    await eventually(async () => (await createExperiment(secret, 'probe')).status === 200);
    const res = await createExperiment(secret, 'nightly-exp');
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe('/api/2.0/mlflow/experiments/create');
    expect(JSON.parse(seen.body)).toEqual({ name: 'nightly-exp', tags: [{ key: 'mlgate.owner', value: 'alice' }] });
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers.authorization).toBeUndefined();
    const whoami = await gw.request('/-/whoami', { headers: bearer(secret) });
    expect(whoami.json()).toEqual({ user: 'alice', groups: [], method: 'bearer' });

    const list = token('list');
    expect(list.status, list.stderr).toBe(0);
    const [header, row] = list.stdout.trim().split('\n');
    expect(header).toMatch(/^ID\s+USER\s+NAME\s+CREATED\s+EXPIRES\s+LAST USED$/);
    expect(row).toMatch(new RegExp(`^${id}\\s+alice\\s+ci-nightly\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\dZ\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\dZ \\(in 30d\\)\\s+never$`));
    expect(list.stdout + list.stderr).not.toContain(secret);
    expect(list.stdout + list.stderr).not.toContain(secret.slice(4, 20));
  });

  it('keeps only a hash, in a file of mode 0600', () => {
    issue('alice', '--name', 'hash-check');
    expect(statSync(tokensFile).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(readFileSync(tokensFile, 'utf8')) as { version: number; tokens: { hash: string; user: string }[] };
    expect(stored.version).toBe(1);
    for (const entry of stored.tokens) expect(entry.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(readFileSync(tokensFile, 'utf8')).not.toMatch(/mlg_/);
  });

  it('refuses a revoked token once the gateway sees the file change, with the reason in the challenge', async () => {
    const { secret, id } = issue('bob', '--name', 'to-revoke');
    await eventually(async () => (await createExperiment(secret, 'before-revoke')).status === 200);

    const revoke = token('revoke', id);
    expect(revoke.status, revoke.stderr).toBe(0);
    expect(revoke.stdout).toBe(`revoked token ${id} of "bob" (to-revoke)\n`);
    await eventually(async () => (await createExperiment(secret, 'after-revoke')).status === 401);
    const before = upstream.requests.length;
    const res = await createExperiment(secret, 'after-revoke');
    expect(res.status).toBe(401);
    expect(challengeOf(res.headers)).toBe('Bearer realm="MLflow", error="invalid_token", error_description="unknown or revoked token"');
    expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'invalid bearer token: unknown or revoked token' });
    expect(upstream.requests.length).toBe(before);
    expect(token('list').stdout).not.toContain(id);

    const again = token('revoke', id);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`no token with id "${id}"`);
  });

  it('refuses a token after its time to live', async () => {
    const { secret } = issue('alice', '--ttl', '3s', '--name', 'short-lived');
    await eventually(async () => (await createExperiment(secret, 'while-valid')).status === 200);
    await eventually(async () => (await createExperiment(secret, 'expired')).status === 401, 6000);
    const res = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', headers: bearer(secret), body: '{}' });
    expect(challengeOf(res.headers)).toMatch(/^Bearer realm="MLflow", error="invalid_token", error_description="the token expired at \d{4}-\d\d-\d\dT[\d:.]+Z"$/);
    expect(token('list').stdout).toMatch(/short-lived .*\(expired\)/);
  });

  it("refuses the token of a user removed from the htpasswd file", async () => {
    const add = runCli(['user', 'add', 'carol', '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir, input: 'carol-password\n' });
    expect(add.status, add.stderr).toBe(0);
    const { secret } = issue('carol');
    await eventually(async () => (await createExperiment(secret, 'carol-exp')).status === 200);

    const remove = runCli(['user', 'remove', 'carol', '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir });
    expect(remove.status, remove.stderr).toBe(0);
    await eventually(async () => (await createExperiment(secret, 'carol-gone')).status === 401);
    const res = await gw.request('/echo', { headers: bearer(secret) });
    expect(challengeOf(res.headers)).toContain(`error_description="the token's user no longer exists"`);
  });

  it('issues nothing for a user who is not in the htpasswd file, or for a bad --ttl', () => {
    const before = readFileSync(tokensFile, 'utf8');
    const unknown = token('issue', 'mallory');
    expect(unknown.status).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toContain('user "mallory" does not exist in');
    const badTtl = token('issue', 'alice', '--ttl', 'soon');
    expect(badTtl.status).toBe(1);
    expect(badTtl.stdout).toBe('');
    expect(badTtl.stderr).toContain('--ttl must be a duration such as 12h, 30d or 1s, or "never"');
    expect(readFileSync(tokensFile, 'utf8')).toBe(before);
  });
});

describe('a malformed or unknown mlg_ token', () => {
  it.each([
    ['cut short', 'mlg_abc', 'malformed mlgate token: expected mlg_ and 49 letters and digits (was it cut short?)'],
    ['with a character that is not base62', `mlg_${'a'.repeat(48)}-`, 'malformed mlgate token: expected mlg_ and 49 letters and digits (was it cut short?)'],
  ])('%s is refused with the reason', async (_name, secret, reason) => {
    const res = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', headers: bearer(secret), body: '{}' });
    expect(res.status).toBe(401);
    expect(challengeOf(res.headers)).toBe(`Bearer realm="MLflow", error="invalid_token", error_description="${reason}"`);
    expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: `invalid bearer token: ${reason}` });
  });

  it('a mistyped character fails the checksum; a well-formed token nobody issued is unknown', async () => {
    const { secret } = issue('alice', '--name', 'typo-source');
    const flip = (c: string) => (c === 'a' ? 'b' : 'a');
    const typo = secret.slice(0, 10) + flip(secret[10]!) + secret.slice(11);
    const mistyped = await gw.request('/echo', { headers: bearer(typo) });
    expect(mistyped.status).toBe(401);
    expect(challengeOf(mistyped.headers)).toContain('error_description="malformed mlgate token: its checksum does not match (was it mistyped?)"');

    const never = await gw.request('/echo', { headers: bearer(generateToken()) });
    expect(challengeOf(never.headers)).toContain('error_description="unknown or revoked token"');
  });

  it('a request with no credentials is offered both Basic and Bearer', async () => {
    const res = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', body: '{}' });
    expect(res.status).toBe(401);
    expect(challengeOf(res.headers)).toBe('Basic realm="MLflow", charset="UTF-8", Bearer realm="MLflow"');
    expect(res.json<{ message: string }>().message).toContain('or a bearer token (MLFLOW_TRACKING_TOKEN)');
  });
});

describe('last used', () => {
  it('is kept in memory and saved when the gateway stops, then shown by token list', async () => {
    const own = await startTestGateway({ upstream: upstream.url, users: { dora: 'dora-password' } });
    try {
      const config = join(own.dir, 'mlgate.yaml');
      const issued = runCli(['token', 'issue', 'dora', '--name', 'used', '--config', config], { cwd: own.dir });
      runCli(['token', 'issue', 'dora', '--name', 'unused', '--config', config], { cwd: own.dir });
      const secret = issued.stdout.trim();
      await eventually(async () => (await own.request('/echo', { headers: bearer(secret) })).status === 200);
      // No write per request: nothing is saved while the gateway runs (at most once a minute).
      expect(() => statSync(join(own.dir, 'tokens.last-used.json'))).toThrow();
      await own.gateway.close();
      const list = runCli(['token', 'list', '--config', config], { cwd: own.dir });
      const rows = list.stdout.trim().split('\n');
      expect(rows.find((row) => row.includes(' used '))).toMatch(/\d\d:\d\dZ$/);
      expect(rows.find((row) => row.includes(' unused '))).toMatch(/never$/);
      expect(statSync(join(own.dir, 'tokens.last-used.json')).mode & 0o777).toBe(0o600);
    } finally {
      await own.close();
    }
  });
});

describe('a token issued while the gateway runs', () => {
  it('works on the very next request, however long watchInterval is; made-up tokens do not re-read the file', async () => {
    // An hour: the file watch cannot be what makes the token work.
    const own = await startTestGateway({ upstream: upstream.url, users: { erin: 'erin-password' }, config: { watchInterval: '1h' } });
    try {
      const mlgateToken = (...args: string[]) => runCli(['token', ...args, '--config', join(own.dir, 'mlgate.yaml')], { cwd: own.dir });
      const reloads = () => own.logs.filter((line) => line.msg === 'tokens file reloaded').length;
      expect((await own.request('/echo', { headers: bearer(generateToken()) })).status).toBe(401);

      const first = mlgateToken('issue', 'erin', '--name', 'first');
      expect(first.status, first.stderr).toBe(0);
      expect((await own.request('/echo', { headers: bearer(first.stdout.trim()) })).status).toBe(200);
      const second = mlgateToken('issue', 'erin', '--name', 'second');
      expect((await own.request('/echo', { headers: bearer(second.stdout.trim()) })).status).toBe(200);
      expect(reloads()).toBe(2);

      // A flood of well-formed tokens nobody issued: each asks stat(), none re-reads an unchanged file.
      for (let i = 0; i < 50; i++) {
        const res = await own.request('/echo', { headers: bearer(generateToken()) });
        expect(challengeOf(res.headers)).toContain('error_description="unknown or revoked token"');
      }
      expect(reloads()).toBe(2);
      expect((await own.request('/echo', { headers: bearer(first.stdout.trim()) })).status).toBe(200);
    } finally {
      await own.close();
    }
  });

  it('a tokens file with problems is read once per change, not once per unknown token', async () => {
    const own = await startTestGateway({ upstream: upstream.url, users: { erin: 'erin-password' }, config: { watchInterval: '1h' } });
    try {
      writeFileSync(join(own.dir, 'tokens.json'), '{"version": 1, "tokens": [');
      for (let i = 0; i < 5; i++) expect((await own.request('/echo', { headers: bearer(generateToken()) })).status).toBe(401);
      expect(own.logs.filter((line) => String(line.msg).startsWith('tokens file: not valid JSON'))).toHaveLength(1);
    } finally {
      await own.close();
    }
  });
});

describe('token list, asked about a user', () => {
  it('says when there is no tokens file yet, when a user has none, and when the user exists nowhere', async () => {
    const own = await startTestGateway({ upstream: upstream.url, users: { erin: 'erin-password', frank: 'frank-password' } });
    try {
      const mlgateToken = (...args: string[]) => runCli(['token', ...args, '--config', join(own.dir, 'mlgate.yaml')], { cwd: own.dir });
      const file = join(own.dir, 'tokens.json');
      expect(mlgateToken('list', '--user', 'erin')).toEqual({ status: 0, stdout: '', stderr: `no tokens: ${file} does not exist yet ("mlgate token issue USER" creates it)\n` });
      expect(mlgateToken('issue', 'erin').status).toBe(0);
      expect(mlgateToken('list', '--user', 'frank')).toEqual({ status: 0, stdout: '', stderr: `no tokens for "frank" in ${file}\n` });
      expect(mlgateToken('list', '--user', 'nobody')).toEqual({
        status: 1, stdout: '',
        stderr: `mlgate: no tokens for "nobody" in ${file}, and no user "nobody" in ${own.htpasswdPath}; "mlgate user list" shows the users\n`,
      });
      expect(mlgateToken('list', '--user', 'erinn').stderr).toBe(`mlgate: no tokens for "erinn" in ${file}, and no user "erinn" in ${own.htpasswdPath} (did you mean erin?); "mlgate user list" shows the users\n`);
      expect(mlgateToken('list', '--user', 'erin').stdout).toMatch(/^ID .*\n[0-9a-f]{12}\s+erin\s/);
    } finally {
      await own.close();
    }
  });
});
