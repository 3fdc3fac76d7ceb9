// Password-guessing protection: after too many failures for a user or from an IP, further attempts
// are refused with a 401 that says when to retry, without running bcrypt, until a back-off passes.
// Every test client is 127.0.0.1, so the gateway trusts it as a proxy and X-Forwarded-For plays the
// client address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;

const USERS = { alice: 'alice-password', bob: 'bob-password', grace: 'grace-password', heidi: 'heidi-password' };
const LOCKOUT = { window: '10s', maxUserFailures: 3, maxIpFailures: 5, backoff: '1s', backoffMax: '2s' };

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, users: USERS, config: { lockout: LOCKOUT, proxy: { trustedProxies: ['127.0.0.1'] } } });
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

function signIn(target: TestGateway, user: string, password: string, ip: string) {
  return target.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: [user, password], headers: { 'x-forwarded-for': ip }, body: '{"max_results":10}' });
}

const verifications = (target: TestGateway) => target.gateway.passwordChecker.verifications;
const lockoutLines = (target: TestGateway, scope: 'user' | 'ip', subject: string) =>
  target.logs.filter((line) => String(line.msg).startsWith('sign-in lockout started') && line.scope === scope && line[scope] === subject);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('too many wrong passwords for one user', () => {
  it('locks the user out, even with the right password from a new address, without running bcrypt', async () => {
    for (const ip of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) {
      const res = await signIn(gw, 'alice', 'guess', ip);
      expect(res.status).toBe(401);
      expect(res.json<{ message: string }>().message).toBe('invalid user name or password');
    }
    const before = verifications(gw);
    for (const [password, ip] of [['alice-password', '10.1.0.4'], ['guess-4', '10.1.0.5'], ['alice-password', '10.1.0.6']] as const) {
      const res = await signIn(gw, 'alice', password, ip);
      expect(res.status).toBe(401);
      expect(res.json()).toEqual({ error_code: 'UNAUTHENTICATED', message: 'too many failed sign-ins for user "alice"; try again in 1 second' });
      expect(res.headers['retry-after']).toBe('1');
      expect(res.headers['www-authenticate']).toBe('Basic realm="MLflow", charset="UTF-8"');
    }
    expect(verifications(gw)).toBe(before);

    // Other users, from other addresses, notice nothing.
    expect((await signIn(gw, 'bob', 'bob-password', '10.9.0.1')).status).toBe(200);

    // One log line, when the lockout started, naming the user and the address of the last failure.
    await sleep(50);
    const lines = lockoutLines(gw, 'user', 'alice');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, user: 'alice', ip: '10.1.0.3', failures: 3, lockedForMs: 1000 });
  });

  it('lets the user in once the back-off has passed', async () => {
    await sleep(1100);
    expect((await signIn(gw, 'alice', 'alice-password', '10.1.0.7')).status).toBe(200);
  });
});

describe('too many wrong passwords from one address', () => {
  it('locks the address out for every user not already signed in, and no other address', async () => {
    for (const user of ['u1', 'u2', 'u3', 'u4', 'u5']) expect((await signIn(gw, user, 'guess', '10.2.0.1')).status).toBe(401);
    const before = verifications(gw);
    const locked = await signIn(gw, 'grace', 'grace-password', '10.2.0.1');
    expect(locked.status).toBe(401);
    expect(locked.json<{ message: string }>().message).toBe('too many failed sign-ins from this address (10.2.0.1); try again in 1 second');
    expect(verifications(gw)).toBe(before);

    // A credential verified a moment ago (bob's, above) is no guess: it passes, costing no hash.
    expect((await signIn(gw, 'bob', 'bob-password', '10.2.0.1')).status).toBe(200);
    expect(verifications(gw)).toBe(before);

    expect((await signIn(gw, 'grace', 'grace-password', '10.2.0.2')).status).toBe(200);
    await sleep(50);
    expect(lockoutLines(gw, 'ip', '10.2.0.1')).toHaveLength(1);
    expect(lockoutLines(gw, 'ip', '10.2.0.1')[0]).toMatchObject({ user: 'u5', failures: 5 });
  });
});

describe('back-off', () => {
  it('doubles with each failure after a lockout, up to lockout.backoffMax, one log line per lockout', async () => {
    const ips = ['10.3.0.1', '10.3.0.2', '10.3.0.3', '10.3.0.4', '10.3.0.5', '10.3.0.6'];
    for (const ip of ips.slice(0, 3)) await signIn(gw, 'mallory', 'guess', ip);
    expect((await signIn(gw, 'mallory', 'guess', ips[3]!)).json<{ message: string }>().message).toMatch(/^too many failed sign-ins for user "mallory"/);

    await sleep(1100); // first lockout over: one more failure locks again, for twice as long
    expect((await signIn(gw, 'mallory', 'guess', ips[4]!)).json<{ message: string }>().message).toBe('invalid user name or password');
    const relocked = await signIn(gw, 'mallory', 'guess', ips[5]!);
    expect(relocked.headers['retry-after']).toBe('2');
    expect(relocked.json<{ message: string }>().message).toBe('too many failed sign-ins for user "mallory"; try again in 2 seconds');

    await sleep(2100);
    await signIn(gw, 'mallory', 'guess', '10.3.0.7'); // third lockout: capped at 2 s
    await sleep(50);
    expect(lockoutLines(gw, 'user', 'mallory').map((line) => line.lockedForMs)).toEqual([1000, 2000, 2000]);
  });
});

describe("a user's lockout and the addresses they signed in from", () => {
  let strict: TestGateway;
  beforeAll(async () => {
    // No credential cache, so only the known-address rule can let heidi's own machine through.
    strict = await startTestGateway({
      upstream: upstream.url, users: USERS,
      config: { auth: { cacheSize: 0 }, lockout: LOCKOUT, proxy: { trustedProxies: ['127.0.0.1'] } },
    });
  });
  afterAll(() => strict.close());

  it('does not apply from an address the user signed in from before, so a guesser cannot lock out their jobs', async () => {
    expect((await signIn(strict, 'heidi', 'heidi-password', '10.4.0.1')).status).toBe(200);
    for (const ip of ['10.5.0.1', '10.5.0.2', '10.5.0.3']) await signIn(strict, 'heidi', 'guess', ip);
    const elsewhere = await signIn(strict, 'heidi', 'heidi-password', '10.5.0.4');
    expect(elsewhere.json<{ message: string }>().message).toBe('too many failed sign-ins for user "heidi"; try again in 1 second');
    expect((await signIn(strict, 'heidi', 'heidi-password', '10.4.0.1')).status).toBe(200);
  });
});

describe('lockout.enabled: false', () => {
  it('checks every attempt', async () => {
    const open = await startTestGateway({ upstream: upstream.url, users: USERS, config: { lockout: { ...LOCKOUT, enabled: false } } });
    try {
      for (let i = 0; i < 5; i++) expect((await signIn(open, 'alice', `guess-${i}`, '10.6.0.1')).status).toBe(401);
      expect((await signIn(open, 'alice', 'alice-password', '10.6.0.1')).status).toBe(200);
    } finally {
      await open.close();
    }
  });
});
