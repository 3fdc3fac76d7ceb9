// An nginx user's existing htpasswd file works as it is: every format the real tools write.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const HAVE_TOOLS = spawnSync('htpasswd', ['-nbB', '-C', '4', 'u', 'p']).status === 0 && spawnSync('openssl', ['passwd', '-6', 'p']).status === 0;

function tool(cmd: string, args: string[]): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout.trim();
}
const htpasswdLine = (flags: string[], user: string, password: string) => tool('htpasswd', ['-nb', ...flags, user, password]).split('\n')[0]!;
const opensslLine = (flag: string, user: string, password: string) => `${user}:${tool('openssl', ['passwd', flag, password])}`;
const sshaLine = (user: string, password: string) => {
  const salt = randomBytes(8);
  return `${user}:{SSHA}${Buffer.concat([createHash('sha1').update(password).update(salt).digest(), salt]).toString('base64')}`;
};

describe.skipIf(!HAVE_TOOLS)('an existing htpasswd file (needs Debian packages apache2-utils and openssl)', () => {
  let upstream: MlflowUpstream;
  let gw: TestGateway;
  const users: Record<string, string> = {
    'bcrypt-user': 'pw-bcrypt', 'apr1-user': 'pw-apr1', 'sha1-user': 'pw-sha1', 'ssha-user': 'pw-ssha',
    'sha256-user': 'pw-sha256', 'sha512-user': 'pw-sha512', 'openssl5-user': 'pw-openssl5', 'openssl6-user': 'pw-openssl6',
    'plain-user': 'pw-plain',
  };

  beforeAll(async () => {
    upstream = await startMlflowUpstream();
    const file = [
      '# made by htpasswd and openssl, as nginx users do',
      htpasswdLine(['-B', '-C', '5'], 'bcrypt-user', users['bcrypt-user']!),
      htpasswdLine(['-m'], 'apr1-user', users['apr1-user']!),
      htpasswdLine(['-s'], 'sha1-user', users['sha1-user']!),
      sshaLine('ssha-user', users['ssha-user']!),
      htpasswdLine(['-2'], 'sha256-user', users['sha256-user']!),
      htpasswdLine(['-5'], 'sha512-user', users['sha512-user']!),
      opensslLine('-5', 'openssl5-user', users['openssl5-user']!),
      opensslLine('-6', 'openssl6-user', users['openssl6-user']!),
      `plain-user:${users['plain-user']}`,
      '',
    ].join('\n');
    gw = await startTestGateway({ upstream: upstream.url, htpasswd: file });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const secureAndWeak = ['bcrypt-user', 'apr1-user', 'sha1-user', 'ssha-user', 'sha256-user', 'sha512-user', 'openssl5-user', 'openssl6-user'];

  it.each(secureAndWeak)('accepts %s with the right password and refuses a wrong one', async (user) => {
    const ok = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: [user, users[user]!], body: '{"max_results":10}' });
    expect(ok.status).toBe(200);
    expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe(user);
    const wrong = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: [user, `${users[user]}x`], body: '{"max_results":10}' });
    expect(wrong.status).toBe(401);
  });

  it('refuses plaintext passwords unless auth.allowInsecureHashes is set, and says so in the log', async () => {
    const res = await gw.request('/echo', { auth: ['plain-user', users['plain-user']!] });
    expect(res.status).toBe(401);
    const line = await waitForLog(gw.logs, (l) => Array.isArray(l.users) && (l.users as string[]).includes('plain-user'));
    expect(line.level).toBe(50);
    expect(String(line.msg)).toMatch(/plaintext/);
  });

  it('warns at load about weak formats, naming the users', async () => {
    const line = await waitForLog(gw.logs, (l) => String(l.msg).includes('weak hash formats'));
    expect(line.users).toEqual(['apr1-user', 'sha1-user', 'ssha-user']);
    expect(JSON.stringify(gw.logs)).not.toContain('pw-');
  });
});

describe.skipIf(!HAVE_TOOLS)('plaintext passwords when explicitly allowed', () => {
  it('accepts them with auth.allowInsecureHashes: true', async () => {
    const upstream = await startMlflowUpstream();
    const gw = await startTestGateway({ upstream: upstream.url, htpasswd: 'carol:carol-plain\n', config: { auth: { allowInsecureHashes: true } } });
    try {
      expect((await gw.request('/echo', { auth: ['carol', 'carol-plain'] })).status).toBe(200);
      expect((await gw.request('/echo', { auth: ['carol', 'carol-plainx'] })).status).toBe(401);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
