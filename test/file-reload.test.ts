// A watched file is compared with the version that was read, not with whatever it is by the time
// the watch starts: an edit landing right after the read (an admin saving the file as mlgate
// starts, `mlgate user add` while the gateway boots) must be picked up, every time.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HtpasswdStore } from '../src/auth/htpasswd-store.ts';
import { SessionRevocations } from '../src/auth/session-revocations.ts';
import { PolicyStore } from '../src/authz/policy.ts';
import { readFileText, ReloadingFile } from '../src/config/reloading-file.ts';
import { htpasswdLines } from './helpers/gateway.ts';

// The window between a read and the watch's first stat is microseconds wide; a write placed inside
// it by the read itself hits it every time instead of once in a blue moon.
const afterRead = vi.hoisted(() => new Map<string, () => void>());
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const readFileSync = ((...args: Parameters<typeof fs.readFileSync>) => {
    const text = fs.readFileSync(...args);
    const hook = afterRead.get(String(args[0]));
    afterRead.delete(String(args[0]));
    hook?.();
    return text;
  }) as typeof fs.readFileSync;
  return { ...fs, readFileSync, default: { ...fs, readFileSync } };
});

const ROUNDS = 200;
const INTERVAL_MS = 5;
const logger = pino({ level: 'silent' });
let dir: string;
let users: { alice: string; aliceAndBob: string };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mlgate-file-reload-'));
  users = { alice: await htpasswdLines({ alice: 'a' }), aliceAndBob: await htpasswdLines({ alice: 'a', bob: 'b' }) };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Fails naming the round when the change is not applied within many intervals, i.e. was missed. */
async function applied(round: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 400 * INTERVAL_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`round ${round}: the change was never applied`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe(`a write right after the read is applied (${ROUNDS} rounds each)`, () => {
  it('policy: edited between the read at start-up and the watch, after other start-up work', async () => {
    const file = join(dir, 'policy.yaml');
    for (let round = 0; round < ROUNDS; round++) {
      writeFileSync(file, 'default: READ\n');
      const store = new PolicyStore({ path: file, watchIntervalMs: INTERVAL_MS }, logger);
      writeFileSync(file, 'default: NO_PERMISSIONS\n');
      store.start();
      try {
        await applied(round, () => store.current().defaultLevel === 'NO_PERMISSIONS');
      } finally {
        store.stop();
      }
    }
  });

  it('htpasswd: a user added just after start() read the file', async () => {
    const file = join(dir, 'htpasswd');
    for (let round = 0; round < ROUNDS; round++) {
      writeFileSync(file, users.alice);
      afterRead.set(file, () => writeFileSync(file, users.aliceAndBob));
      const store = new HtpasswdStore({ path: file, allowInsecureHashes: false, watchIntervalMs: INTERVAL_MS }, logger);
      store.start();
      try {
        expect(afterRead.has(file), 'the read happened in start()').toBe(false);
        await applied(round, () => store.hashOf('bob') !== undefined);
      } finally {
        store.stop();
      }
    }
  });

  it('htpasswd: a user added at once after start() returned', async () => {
    const file = join(dir, 'htpasswd-after');
    for (let round = 0; round < ROUNDS; round++) {
      writeFileSync(file, users.alice);
      const store = new HtpasswdStore({ path: file, allowInsecureHashes: false, watchIntervalMs: INTERVAL_MS }, logger);
      store.start();
      writeFileSync(file, users.aliceAndBob);
      try {
        await applied(round, () => store.hashOf('bob') !== undefined);
      } finally {
        store.stop();
      }
    }
  });

  it('session revocations: a sign-out another gateway writes just after start() read the file', async () => {
    const file = join(dir, 'session-revocations.json');
    const expiresAt = Math.floor(Date.now() / 1000) + 3600;
    for (let round = 0; round < ROUNDS; round++) {
      const signedOut = `session-${round}`;
      writeFileSync(file, JSON.stringify({ revoked: { earlier: expiresAt } }));
      afterRead.set(file, () => writeFileSync(file, JSON.stringify({ revoked: { earlier: expiresAt, [signedOut]: expiresAt } })));
      const revocations = new SessionRevocations({ path: file, watchIntervalMs: INTERVAL_MS }, logger);
      revocations.start();
      try {
        expect(afterRead.has(file), 'the read happened in start()').toBe(false);
        expect(revocations.has('earlier')).toBe(true);
        await applied(round, () => revocations.has(signedOut));
      } finally {
        revocations.stop();
      }
    }
  });

  it('any reloading file (tokens, session key): written right after the read, watched only later', async () => {
    const file = join(dir, 'values');
    for (let round = 0; round < ROUNDS; round++) {
      writeFileSync(file, 'one');
      afterRead.set(file, () => writeFileSync(file, 'two!'));
      let value = '';
      const reloading = new ReloadingFile({ path: file, watchIntervalMs: INTERVAL_MS }, {
        read: () => ({ value: readFileText(file).text ?? '' }),
        apply: (next) => (value = next),
      });
      reloading.reload(true);
      expect(value).toBe('one');
      await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS)); // other start-up work
      reloading.watch();
      try {
        await applied(round, () => value === 'two!');
      } finally {
        reloading.stop();
      }
    }
  });
});
