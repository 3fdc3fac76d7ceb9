// Runs one of the Node load generators beside this file in its own process (so it never shares an
// event loop with the runner or a gateway) and returns the JSON line it prints last.
import { lastLines } from '../lib/net.ts';
import { startProcess, stopProcess } from '../lib/processes.ts';
import { REPO_ROOT, TSX } from '../lib/workspace.ts';

export async function runNodeClient<T>(script: 'tls-handshakes' | 'paced-client', args: string[], limitS: number): Promise<T> {
  const client = startProcess(script, process.execPath, ['--import', TSX, `bench/load/${script}.ts`, ...args], { cwd: REPO_ROOT });
  let stdout = '';
  client.child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  const guard = setTimeout(() => void stopProcess(client, 1000), limitS * 1000);
  const code = await client.exited;
  clearTimeout(guard);
  const last = stdout.trim().split('\n').pop() ?? '';
  if (code !== 0 || !last.startsWith('{')) throw new Error(`${script} exited with ${code}: ${lastLines(client.output(), 3)}`);
  return JSON.parse(last) as T;
}
