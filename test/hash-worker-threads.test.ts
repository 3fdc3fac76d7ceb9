// Hash checks run in worker threads that exist only while there is work, keeping idle memory low.
import { describe, expect, it } from 'vitest';
import { HashWorkerPool } from '../src/auth/hash-worker-pool.ts';
import { hashPassword, unmatchableBcryptHash } from '../src/auth/htpasswd-formats.ts';

describe('the hash worker threads', () => {
  it('start on the first check, share the work, and stop when idle', async () => {
    // Idle after 1 s: long enough that neither thread is stopped while the other still works on a
    // loaded machine, short enough to watch them stop.
    const pool = new HashWorkerPool(2, 1000);
    try {
      expect(pool.threadCount).toBe(0);
      const hash = await hashPassword('right', 4);
      const results = await Promise.all([pool.verify(hash, 'right'), pool.verify(hash, 'wrong'), pool.verify(hash, 'right')]);
      expect(results).toEqual([true, false, true]);
      expect(pool.threadCount).toBe(2);
      const deadline = Date.now() + 10_000;
      while (pool.threadCount > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(pool.threadCount).toBe(0);
      expect(await pool.verify(hash, 'right')).toBe(true); // starts again when needed
      expect(pool.threadCount).toBe(1);
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
  it('answers them one after another, in order, not all at the end', async () => {
    const pool = new HashWorkerPool(1);
    try {
      const hash = await hashPassword('right', 10);
      await pool.verify(hash, 'warm-up'); // the thread's start-up is not part of the queue
      const started = performance.now();
      const finishedAt: number[] = [];
      await Promise.all(Array.from({ length: 4 }, (_, i) => pool.verify(hash, `guess-${i}`).then(() => (finishedAt[i] = performance.now() - started))));
      // One after another: the first is done after about a quarter of the time all four take.
      // Interleaved, every check would finish at the very end.
      expect(finishedAt).toEqual([...finishedAt].sort((a, b) => a - b));
      expect(finishedAt[0]!).toBeLessThan(finishedAt[3]! * 0.6);
    } finally {
      await pool.close();
    }
  });
});
