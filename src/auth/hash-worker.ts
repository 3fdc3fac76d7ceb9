// Runs in a worker thread: bcrypt and SHA-crypt cost tens to hundreds of ms of CPU each.
import { parentPort } from 'node:worker_threads';
import { hashPassword, verifyHash } from './htpasswd-formats.ts';

export type HashTask =
  | { id: number; kind: 'verify'; hash: string; password: string }
  | { id: number; kind: 'hash'; password: string; cost: number };
export type HashResult = { id: number; ok: boolean; hash?: string; error?: string };

parentPort?.on('message', async (task: HashTask) => {
  try {
    const result: HashResult = task.kind === 'verify'
      ? { id: task.id, ok: await verifyHash(task.hash, task.password) }
      : { id: task.id, ok: true, hash: await hashPassword(task.password, task.cost) };
    parentPort!.postMessage(result);
  } catch (err) {
    parentPort!.postMessage({ id: task.id, ok: false, error: String(err) } satisfies HashResult);
  }
});
