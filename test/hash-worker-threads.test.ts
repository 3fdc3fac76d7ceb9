// Hash checks run in worker threads that exist only while there is work, keeping idle memory low.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HashWorkerPool } from '../src/auth/hash-worker-pool.ts';
import { hashPassword, unmatchableBcryptHash } from '../src/auth/htpasswd-formats.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('the hash worker threads', () => {
  it('start on the first check, share the work, and stop when idle', async () => {
    // The idle timers run on a fake clock: the threads' work is real, their idleness is counted
    // exactly, and nobody waits for real seconds to pass.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const IDLE_MS = 60_000;
    const pool = new HashWorkerPool(2, IDLE_MS);
    try {
      expect(pool.threadCount).toBe(0);
      const hash = await hashPassword('right', 4);
      const results = await Promise.all([pool.verify(hash, 'right'), pool.verify(hash, 'wrong'), pool.verify(hash, 'right')]);
      expect(results).toEqual([true, false, true]);
      expect(pool.threadCount).toBe(2);

      vi.advanceTimersByTime(IDLE_MS - 1);
      expect(pool.threadCount, 'no thread stops before it has been idle that long').toBe(2);
      vi.advanceTimersByTime(1);
      expect(pool.threadCount).toBe(0);

      expect(await pool.verify(hash, 'right')).toBe(true); // starts again when needed
      expect(pool.threadCount).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it('a thread that gets work again is not stopped by its earlier idle timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const IDLE_MS = 60_000;
    const pool = new HashWorkerPool(1, IDLE_MS);
    try {
      const hash = await hashPassword('right', 4);
      expect(await pool.verify(hash, 'right')).toBe(true);
      vi.advanceTimersByTime(IDLE_MS - 1);
      expect(await pool.verify(hash, 'right')).toBe(true); // idle again from here
      vi.advanceTimersByTime(IDLE_MS - 1);
      expect(pool.threadCount).toBe(1);
      vi.advanceTimersByTime(1);
      expect(pool.threadCount).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('check unknown users against a hash no password matches, at the configured cost', async () => {
    const pool = new HashWorkerPool(1);
    try {
      const dummy = unmatchableBcryptHash(5);
      expect(dummy).toMatch(/^\$2y\$05\$[./A-Za-z0-9]{53}$/);
      expect(unmatchableBcryptHash(5)).not.toBe(dummy);
      expect(await pool.verify(dummy, '')).toBe(false);
      expect(await pool.verify(dummy, 'anything')).toBe(false);
    } finally {
      await pool.close();
    }
  });
});

describe('a queue of checks on one thread', () => {
  it('answers them one after another, in arrival order: a cheap check never overtakes a costly one', async () => {
    const pool = new HashWorkerPool(1);
    try {
      // bcryptjs yields between rounds: checks run side by side would interleave, and the cheap
      // ones (16 rounds) would be done long before the costly ones (4096 rounds) they follow, with
      // the costly ones all finishing together at the end.
      const [costly, cheap] = await Promise.all([hashPassword('right', 12), hashPassword('right', 4)]);
      await pool.verify(cheap, 'warm-up'); // the thread's start-up is not part of the queue
      const queue = [costly, cheap, costly, cheap];
      const answered: number[] = [];
      const pendingWhenAnswered: number[] = [];
      await Promise.all(queue.map((hash, i) => pool.verify(hash, `guess-${i}`).then(() => {
        answered.push(i);
        pendingWhenAnswered.push(pool.pendingCount);
      })));
      expect(answered).toEqual([0, 1, 2, 3]);
      expect(pendingWhenAnswered).toEqual([3, 2, 1, 0]);
    } finally {
      await pool.close();
    }
  });
});
