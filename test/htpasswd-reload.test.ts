// Editing the htpasswd file takes effect without a restart, as with nginx.
import { renameSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-1' } });
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

/** Replaces the file the way editors and `mlgate user` do: write aside, rename over. */
function replaceFile(text: string): void {
  writeFileSync(`${gw.htpasswdPath}.new`, text);
  renameSync(`${gw.htpasswdPath}.new`, gw.htpasswdPath);
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const status = async (user: string, password: string) => (await gw.request('/echo', { auth: [user, password] })).status;

describe('htpasswd reload', () => {
  it('picks up a new user, a changed password and a removed user, dropping cached successes', async () => {
    expect(await status('alice', 'alice-1')).toBe(200); // cached from now on
    replaceFile(await htpasswdLines({ alice: 'alice-2', bob: 'bob-1' }));
    await eventually(async () => (await status('bob', 'bob-1')) === 200);
    expect(await status('alice', 'alice-1')).toBe(401);
    expect(await status('alice', 'alice-2')).toBe(200);

    replaceFile(await htpasswdLines({ alice: 'alice-2' }));
    await eventually(async () => (await status('bob', 'bob-1')) === 401);
    expect(await status('alice', 'alice-2')).toBe(200);
  });

  it('keeps the previous users when the new file has a bad line, and logs the line', async () => {
    const good = await htpasswdLines({ alice: 'alice-3' });
    replaceFile(good);
    await eventually(async () => (await status('alice', 'alice-3')) === 200);

    replaceFile(`${good}# a comment\nthis line has no colon\n`);
    const line = await waitForLog(gw.logs, (l) => l.line === 3 && String(l.msg).startsWith('htpasswd:'));
    expect(line.file).toBe(gw.htpasswdPath);
    await waitForLog(gw.logs, (l) => String(l.msg).includes('keeping the previous users'));
    expect(await status('alice', 'alice-3')).toBe(200);
  });
});
