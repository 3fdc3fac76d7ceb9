// Password hashes are checked off the event loop: a flood of wrong passwords must not stall anyone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../src/auth/htpasswd-formats.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  // Cost 14 takes ~1.3 s per check in bcryptjs: were one run on the event loop, every request
  // behind it would wait that long, which the bound below catches with room for a loaded machine.
  const slow = await hashPassword('alice-password', 14);
  const fast = await hashPassword('bob-password', 4);
  gw = await startTestGateway({ upstream: upstream.url, htpasswd: `alice:${slow}\nbob:${fast}\n`, config: { auth: { bcryptCost: 4 } } });
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

describe('a flood of wrong passwords', () => {
  it('leaves health checks and cached users answering promptly while the hashes are checked', async () => {
    expect((await gw.request('/echo', { auth: ['bob', 'bob-password'] })).status).toBe(200); // now cached
    let floodDone = false;
    const flood = Promise.all(Array.from({ length: 3 }, (_, i) => gw.request('/echo', { auth: ['alice', `guess-${i}`] })))
      .finally(() => (floodDone = true));

    const latencies: number[] = [];
    let answeredDuringFlood = 0;
    while (!floodDone) {
      const started = performance.now();
      const [health, cached] = await Promise.all([gw.request('/-/healthz'), gw.request('/echo', { auth: ['bob', 'bob-password'] })]);
      latencies.push(performance.now() - started);
      expect(health.status).toBe(200);
      expect(cached.status).toBe(200);
      if (!floodDone) answeredDuringFlood++;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const results = await flood;
    expect(results.map((r) => r.status)).toEqual([401, 401, 401]);
    expect(answeredDuringFlood).toBeGreaterThanOrEqual(5);
    expect(Math.max(...latencies)).toBeLessThan(800);
  });

  it('checks concurrent identical credentials once', async () => {
    const before = gw.gateway.passwordChecker.verifications;
    const results = await Promise.all(Array.from({ length: 5 }, () => gw.request('/echo', { auth: ['alice', 'same-wrong-guess'] })));
    expect(results.every((r) => r.status === 401)).toBe(true);
    expect(gw.gateway.passwordChecker.verifications - before).toBe(1);
  });
});
