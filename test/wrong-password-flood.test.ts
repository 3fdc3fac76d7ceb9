// Password hashes are checked off the event loop: a flood of wrong passwords must not stall anyone.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashPassword } from '../src/auth/htpasswd-formats.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  // Cost 14 takes ~1.3 s per check in bcryptjs, against a few ms for a request: were a check run
  // on the event loop, nothing else would be answered until it was done.
  const slow = await hashPassword('alice-password', 14);
  const fast = await hashPassword('bob-password', 4);
  gw = await startTestGateway({ upstream: upstream.url, htpasswd: `alice:${slow}\nbob:${fast}\n`, config: { auth: { bcryptCost: 4 } } });
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

/** Counts the password checks of one user as they start and as they finish, wherever they run. */
function watchChecks(user: string): { started: number; finished: number } {
  const checker = gw.gateway.passwordChecker;
  const check = checker.check.bind(checker);
  const counts = { started: 0, finished: 0 };
  vi.spyOn(checker, 'check').mockImplementation((name, password, hash) => {
    const result = check(name, password, hash);
    if (name === user && typeof result !== 'boolean') {
      counts.started++;
      void result.finally(() => counts.finished++);
    }
    return result;
  });
  return counts;
}

describe('a flood of wrong passwords', () => {
  it('leaves health checks and cached users answering while every one of the hashes is still being checked', async () => {
    expect((await gw.request('/echo', { auth: ['bob', 'bob-password'] })).status).toBe(200); // now cached
    const alice = watchChecks('alice');
    try {
      const flood = Promise.all(Array.from({ length: 3 }, (_, i) => gw.request('/echo', { auth: ['alice', `guess-${i}`] })));
      while (alice.started < 3) await new Promise((resolve) => setImmediate(resolve));

      // Each round trip is sent and answered with all three checks begun and none finished. Had a
      // check run on the event loop (this test's loop too), it would have finished before anything
      // else could be read, so not one round trip would count.
      let answeredWhileAllPending = 0;
      while (alice.finished === 0) {
        const [health, cached] = await Promise.all([gw.request('/-/healthz'), gw.request('/echo', { auth: ['bob', 'bob-password'] })]);
        expect(health.status).toBe(200);
        expect(cached.status).toBe(200);
        if (alice.finished === 0) answeredWhileAllPending++;
      }
      expect((await flood).map((r) => r.status)).toEqual([401, 401, 401]);
      expect(alice).toEqual({ started: 3, finished: 3 });
      expect(answeredWhileAllPending).toBeGreaterThanOrEqual(3);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('checks concurrent identical credentials once', async () => {
    const before = gw.gateway.passwordChecker.verifications;
    const results = await Promise.all(Array.from({ length: 5 }, () => gw.request('/echo', { auth: ['alice', 'same-wrong-guess'] })));
    expect(results.every((r) => r.status === 401)).toBe(true);
    expect(gw.gateway.passwordChecker.verifications - before).toBe(1);
  });
});
