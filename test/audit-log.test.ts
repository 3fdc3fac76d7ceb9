// The audit log (audit.*, docs/operations.md "Audit log"): one JSON line per security event in its
// own file, naming who, what, which resource, from where and when, never a secret; floods of failed
// sign-ins and denied requests summarised per client and reason; the file re-opened on SIGHUP
// (gateway.reload()) after logrotate renamed it, or rotated by size. Every test client is 127.0.0.1,
// trusted as a proxy here, so X-Forwarded-For plays the client address.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/log/audit-log.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { signIn, signOut } from './helpers/sign-in.ts';

type Line = Record<string, unknown>;

const USERS = { admin: 'admin-password-1', alice: 'alice-password-1', bob: 'bob-password-1', carol: 'carol-password-1' };
const V2 = '/api/2.0/mlflow';

let upstream: MlflowUpstream;
let experiment: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream({ defaultExperiment: true });
  experiment = upstream.store.addExperiment('alice-exp', [{ key: 'mlgate.owner', value: 'alice' }]).experiment_id;
});
afterAll(async () => {
  await upstream.close();
});

const auditFiles = new WeakMap<TestGateway, string>();
const auditDirs: string[] = [];
afterAll(() => {
  for (const dir of auditDirs) rmSync(dir, { recursive: true, force: true });
});

/** A gateway whose audit file is <a directory of its own>/audit/audit.log (the directory made by the gateway). */
async function start(audit: Record<string, unknown> = {}, config: Record<string, unknown> = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-audit-'));
  auditDirs.push(dir);
  const file = join(dir, 'audit', 'audit.log');
  const gw = await startTestGateway({
    upstream: upstream.url,
    users: USERS,
    config: { proxy: { trustedProxies: ['127.0.0.1'] }, ...config, audit: { enabled: true, file, summaryInterval: '1h', ...audit } },
  });
  auditFiles.set(gw, file);
  return gw;
}

const auditPath = (gw: TestGateway) => auditFiles.get(gw)!;
const readLines = (path: string): Line[] => existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((text) => JSON.parse(text) as Line) : [];

/** Waits until the audit file has a line matching the predicate (lines are written asynchronously). */
async function auditLine(path: string, predicate: (line: Line) => boolean, timeoutMs = 3000): Promise<Line> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readLines(path).find(predicate);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching audit line in ${timeoutMs} ms; saw:\n${readFileSync(path, 'utf8')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const from = (ip: string) => ({ 'x-forwarded-for': ip });
const json = { 'content-type': 'application/json' };

describe('one audit line for each kind of event', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await start({}, {
      lockout: { maxUserFailures: 2, maxIpFailures: 100, backoff: '30s', backoffMax: '1m' },
      // Admins only (no allow): its uses are admin actions.
      routes: [{ path: '/ops/', upstream: upstream.url, stripPrefix: true }, { path: '/', mlflow: true, allow: ['*'] }],
    });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('names who, what, which resource, from where and when, and never a password or token', async () => {
    const path = auditPath(gw);
    // Browser sign-in and sign-out, and a wrong password on the form.
    const cookie = await signIn(gw, 'alice', USERS.alice);
    const signedIn = await auditLine(path, (l) => l.event === 'sign-in');
    expect(signedIn).toMatchObject({ user: 'alice', ip: '127.0.0.1', method: 'form', reqId: expect.any(String) });
    expect(Date.parse(String(signedIn.time))).toBeGreaterThan(Date.now() - 60_000);
    const wrongForm = await gw.request('/-/login', {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: gw.url, accept: 'text/html' },
      body: new URLSearchParams({ username: 'carol', password: 'not-carols-password', next: '/' }).toString(),
    });
    expect(wrongForm.status).toBe(401);
    expect(await auditLine(path, (l) => l.event === 'sign-in-failed' && l.method === 'form')).toMatchObject({ user: null, attemptedUser: 'carol', reason: 'invalid' });

    // An API token made and revoked: its id, never the token.
    const made = await gw.request('/-/api/tokens', { method: 'POST', headers: { cookie, origin: gw.url, ...json }, body: JSON.stringify({ name: 'ci', expires: '30d' }) });
    expect(made.status, made.text).toBe(201);
    const token = made.json<{ token: string; id: string }>();
    expect(await auditLine(path, (l) => l.event === 'token-issued')).toMatchObject({ user: 'alice', token: token.id, owner: 'alice', expires: expect.any(String) });
    const revoked = await gw.request(`/-/api/tokens/${token.id}`, { method: 'DELETE', headers: { cookie, origin: gw.url } });
    expect(revoked.status, revoked.text).toBe(200);
    expect(await auditLine(path, (l) => l.event === 'token-revoked')).toMatchObject({ user: 'alice', token: token.id, owner: 'alice' });

    // A grant set and revoked by the experiment's owner.
    const grant = `/-/api/permissions/experiments/${experiment}/grants/users/bob`;
    const put = await gw.request(grant, { method: 'PUT', auth: ['alice', USERS.alice], headers: json, body: JSON.stringify({ level: 'READ' }) });
    expect(put.status, put.text).toBe(200);
    const set = await auditLine(path, (l) => l.event === 'grant-set');
    expect(set).toMatchObject({ user: 'alice', grantee: 'user bob', level: 'READ', resource: expect.stringContaining(experiment) });
    const del = await gw.request(grant, { method: 'DELETE', auth: ['alice', USERS.alice] });
    expect(del.status, del.text).toBe(200);
    expect(await auditLine(path, (l) => l.event === 'grant-revoked')).toMatchObject({ user: 'alice', grantee: 'user bob', resource: set.resource });

    // Grant management refused in the gateway's own answer: bob does not hold MANAGE.
    expect((await gw.request(grant, { method: 'PUT', auth: ['bob', USERS.bob], headers: { ...json, ...from('10.9.0.6') }, body: JSON.stringify({ level: 'MANAGE' }) })).status).toBe(403);
    expect(await auditLine(path, (l) => l.event === 'request-denied' && l.ip === '10.9.0.6')).toMatchObject({ user: 'bob', status: 403, method: 'PUT', path: grant, reason: 'refused-by-gateway-route' });

    // A request denied by the policy: bob may read alice's experiment, not rename it.
    const denied = await gw.request(`${V2}/experiments/update`, { method: 'POST', auth: ['bob', USERS.bob], headers: { ...json, ...from('10.9.0.1') }, body: JSON.stringify({ experiment_id: experiment, new_name: 'mine' }) });
    expect(denied.status).toBe(403);
    expect(await auditLine(path, (l) => l.event === 'request-denied' && l.ip === '10.9.0.1')).toMatchObject({
      user: 'bob', ip: '10.9.0.1', method: 'POST', path: `${V2}/experiments/update`, resource: `experiment:${experiment}`, reason: 'no-permission', reqId: denied.headers['x-request-id'],
    });
    // No credentials at all.
    expect((await gw.request(`${V2}/experiments/search`, { headers: from('10.9.0.2') })).status).toBe(401);
    expect(await auditLine(path, (l) => l.event === 'request-denied' && l.status === 401)).toMatchObject({ user: null, ip: '10.9.0.2', reason: 'no-credentials' });

    // Wrong Basic passwords for carol from one address, until carol is locked out.
    for (let i = 0; i < 3; i++) {
      const res = await gw.request(`${V2}/experiments/search`, { auth: ['carol', `guess-${i}`], headers: from('10.9.0.3') });
      expect(res.status).toBe(401);
    }
    expect(await auditLine(path, (l) => l.event === 'sign-in-failed' && l.method === 'basic' && l.reason === 'invalid')).toMatchObject({ ip: '10.9.0.3', user: null });
    expect(await auditLine(path, (l) => l.event === 'lockout')).toMatchObject({ scope: 'user', lockedUser: 'carol', ip: '10.9.0.3', lockedForMs: 30_000 });
    expect(await auditLine(path, (l) => l.event === 'sign-in-failed' && l.reason === 'locked')).toMatchObject({ ip: '10.9.0.3', method: 'basic' });

    // An admins-only route: used by an admin, refused to anyone else.
    expect((await gw.request('/ops/health', { auth: ['admin', USERS.admin], headers: from('10.9.0.4') })).status).toBe(200);
    expect(await auditLine(path, (l) => l.event === 'admin-action')).toMatchObject({ user: 'admin', ip: '10.9.0.4', method: 'GET', path: '/ops/health', status: 200 });
    expect((await gw.request('/ops/health', { auth: ['bob', USERS.bob], headers: from('10.9.0.5') })).status).toBe(403);
    expect(await auditLine(path, (l) => l.event === 'request-denied' && l.ip === '10.9.0.5')).toMatchObject({ user: 'bob', status: 403, path: '/ops/health', reason: 'route-not-allowed' });

    // SIGHUP's reload.
    gw.gateway.reload();
    expect(await auditLine(path, (l) => l.event === 'config-reloaded')).toMatchObject({ user: null, files: expect.arrayContaining([gw.htpasswdPath]) });

    await signOut(gw, cookie);
    expect(await auditLine(path, (l) => l.event === 'sign-out')).toMatchObject({ user: 'alice', session: signedIn.session });

    const text = readFileSync(path, 'utf8');
    for (const secret of [...Object.values(USERS), 'not-carols-password', 'guess-0', token.token, cookie.split('=')[1]!]) expect(text).not.toContain(secret);
  });

  it('writes a line when a new policy comes into force', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(gw.policyPath, 'admins: [admin, alice]\n');
    expect(await auditLine(auditPath(gw), (l) => l.event === 'policy-reloaded' && String(l.admins).includes('alice'))).toMatchObject({ file: gw.policyPath, admins: ['admin', 'alice'], user: null });
  });
});

describe('under a flood', () => {
  it('500 wrong passwords from one address: a few lines, then one summary with the rest', async () => {
    const gw = await start({}, { lockout: { enabled: false } });
    const path = auditPath(gw);
    try {
      for (let batch = 0; batch < 10; batch++) {
        const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => gw.request(`${V2}/experiments/search`, { auth: ['alice', `wrong-${batch}-${i}`], headers: from('10.8.0.1') })));
        expect(answers.every((res) => res.status === 401)).toBe(true);
      }
      // Denied requests from another address, without credentials.
      await Promise.all(Array.from({ length: 40 }, () => gw.request(`${V2}/experiments/search`, { headers: from('10.8.0.2') })));
    } finally {
      await gw.close(); // the end of the interval: its summaries are written
    }
    const lines = readLines(path);
    const failed = lines.filter((l) => l.event === 'sign-in-failed');
    expect(failed).toHaveLength(5);
    expect(lines.filter((l) => l.event === 'summary' && l.of === 'sign-in-failed')).toEqual([
      expect.objectContaining({ ip: '10.8.0.1', reason: 'invalid', count: 495, total: 500 }),
    ]);
    expect(lines.filter((l) => l.event === 'request-denied')).toHaveLength(5);
    expect(lines.filter((l) => l.event === 'summary' && l.of === 'request-denied')).toEqual([
      expect.objectContaining({ ip: '10.8.0.2', reason: 'no-credentials', count: 35, total: 40 }),
    ]);
    expect(lines.length).toBeLessThan(15);
  });

  it('summarises at the end of each interval and counts afresh', async () => {
    const gw = await start({ summaryInterval: '1s' }, { lockout: { enabled: false } });
    const path = auditPath(gw);
    try {
      await Promise.all(Array.from({ length: 8 }, () => gw.request(`${V2}/experiments/search`, { headers: from('10.7.0.1') })));
      expect(await auditLine(path, (l) => l.event === 'summary', 3000)).toMatchObject({ ip: '10.7.0.1', of: 'request-denied', reason: 'no-credentials', intervalMs: 1000 });
      // Every request is a line or counted in a summary (on a slow machine the 8 may span two intervals).
      const lines = readLines(path);
      const summarised = lines.filter((l) => l.event === 'summary').reduce((sum, l) => sum + Number(l.count), 0);
      expect(lines.filter((l) => l.event === 'request-denied').length + summarised).toBe(8);
      // The summary closed the interval: the next one is written as a line again.
      const next = await gw.request(`${V2}/experiments/search`, { headers: from('10.7.0.1') });
      await auditLine(path, (l) => l.event === 'request-denied' && l.reqId === next.headers['x-request-id']);
    } finally {
      await gw.close();
    }
  });
});

describe('rotation', () => {
  it('re-opens the file on reload (SIGHUP) after logrotate renamed it', async () => {
    const gw = await start();
    const path = auditPath(gw);
    try {
      await gw.request(`${V2}/experiments/search`, { headers: from('10.6.0.1') });
      await auditLine(path, (l) => l.ip === '10.6.0.1');
      renameSync(path, `${path}.1`);
      gw.gateway.reload();
      await gw.request(`${V2}/experiments/search`, { headers: from('10.6.0.2') });
      await auditLine(path, (l) => l.ip === '10.6.0.2');
      expect(readLines(path).map((l) => l.event)).toEqual(['config-reloaded', 'policy-reloaded', 'request-denied']);
      expect(readLines(`${path}.1`).map((l) => l.ip)).toEqual(['10.6.0.1']);
    } finally {
      await gw.close();
    }
  });

  it('rotates by size to <file>.1 (audit.maxSize)', async () => {
    const gw = await start({ maxSize: '64KiB' });
    const path = auditPath(gw);
    try {
      // Distinct addresses, so no line is summarised away: ~250 bytes each, 400 lines pass 64 KiB.
      for (let batch = 0; batch < 8; batch++) {
        await Promise.all(Array.from({ length: 50 }, (_, i) => gw.request(`${V2}/experiments/search`, { headers: from(`10.5.${batch}.${i}`) })));
      }
      await auditLine(path, (l) => l.ip === '10.5.7.49' || l.ip === '10.5.7.0');
    } finally {
      await gw.close();
    }
    const rotated = readLines(`${path}.1`);
    expect(rotated.length).toBeGreaterThan(100);
    expect(rotated.length + readLines(path).length).toBe(400);
    expect(readFileSync(`${path}.1`).length).toBeGreaterThanOrEqual(64 * 1024);
  });
});

describe('configuration', () => {
  it('is off by default, and refuses a summary interval under 1s', async () => {
    const gw = await startTestGateway({ upstream: upstream.url, users: USERS });
    try {
      expect(gw.config.audit).toEqual({ enabled: false, file: 'logs/audit.log', maxSize: 0, summaryInterval: 60_000 });
    } finally {
      await gw.close();
    }
    await expect(start({ summaryInterval: '10ms' })).rejects.toThrow(/audit\.summaryInterval.*at least 1s/s);
  });
});

describe('a slow disk', () => {
  it('drops lines past a bounded buffer, counts them, and says so once the stream drains', async () => {
    const written: string[] = [];
    let release: (() => void) | undefined;
    // A destination that takes the first write and then stalls until released.
    const destination = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, callback) {
        written.push(chunk.toString('utf8'));
        if (written.length === 1) release = callback;
        else callback();
      },
    });
    const audit = new AuditLog({ file: '-', maxSize: 0, summaryInterval: 60_000, maxBuffer: 2048, destination });
    for (let i = 0; i < 200; i++) audit.record({ event: 'token-issued', token: `id-${i}`, owner: 'alice' }, { user: 'alice', ip: '10.4.0.1' });
    release!();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const lines = written.join('').split('\n').filter(Boolean).map((text) => JSON.parse(text) as Line);
    const kept = lines.filter((l) => l.event === 'token-issued').length;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(200);
    expect(lines.filter((l) => l.event === 'dropped')).toEqual([expect.objectContaining({ count: 200 - kept })]);
    await audit.close();
  });
});

describe('the mlgate commands', () => {
  it('append their token and grant changes to the same file, naming who ran them', async () => {
    const gw = await start();
    const path = auditPath(gw);
    const config = join(gw.dir, 'mlgate.yaml');
    try {
      const issued = runCli(['token', 'issue', 'bob', '--name', 'ci', '--config', config], { cwd: gw.dir });
      expect(issued.status, issued.stderr).toBe(0);
      const secret = issued.stdout.trim();
      const id = /issued token (\w+)/.exec(issued.stderr)![1]!;
      expect(runCli(['token', 'revoke', id, '--config', config], { cwd: gw.dir }).status).toBe(0);
      // Not spawnSync: the MLflow stand-in these talk to runs in this process.
      for (const args of [['grant', 'bob', 'experiment', experiment, 'EDIT'], ['revoke', 'bob', 'experiment', experiment]]) {
        const cli = spawnCli([...args, '--config', config], { cwd: gw.dir });
        expect(await cli.exited, cli.output().stderr).toBe(0);
      }
      const lines = readLines(path).filter((l) => l.via === 'command');
      expect(lines.map((l) => l.event)).toEqual(['token-issued', 'token-revoked', 'grant-set', 'grant-revoked']);
      expect(lines[0]).toMatchObject({ user: null, ip: null, osUser: expect.any(String), token: id, owner: 'bob' });
      expect(lines[2]).toMatchObject({ grantee: 'user bob', level: 'EDIT', resource: expect.stringContaining(experiment) });
      expect(readFileSync(path, 'utf8')).not.toContain(secret);
    } finally {
      await gw.close();
    }
  });
});
