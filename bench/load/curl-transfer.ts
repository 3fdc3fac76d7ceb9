// One 1 GiB artifact upload (PUT) or download (GET) with curl: a native client that costs little
// CPU, so on a 2-core machine the proxy, not the client, sets the pace.
import { lastLines } from '../lib/net.ts';
import { startProcess, stopProcess } from '../lib/processes.ts';
import { ARTIFACT_BYTES } from '../lib/workspace.ts';

interface Transfer {
  direction: 'up' | 'down';
  url: string;
  authorization?: string;
  /** The file to upload. */
  file: string;
}

interface TransferResult {
  bytes: number;
  seconds: number;
  /** Megabytes (10^6 bytes) per second. */
  mbPerS: number;
}

export async function curlTransfer(transfer: Transfer): Promise<TransferResult> {
  const args = ['-sS', '-o', '/dev/null', '--max-time', '180', '-w', '%{http_code} %{size_upload} %{size_download} %{time_total}'];
  if (transfer.authorization) args.push('-H', `Authorization: ${transfer.authorization}`);
  // No "Expect: 100-continue": the MLflow client (Python requests) does not send it.
  if (transfer.direction === 'up') args.push('-H', 'Expect:', '-H', 'Content-Type: application/octet-stream', '-T', transfer.file);
  args.push(transfer.url);
  const curl = startProcess(`curl ${transfer.direction}`, 'curl', args);
  let stdout = '';
  curl.child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  const guard = setTimeout(() => void stopProcess(curl, 1000), 200_000);
  const code = await curl.exited;
  clearTimeout(guard);
  const [status, up, down, total] = stdout.trim().split(' ');
  const bytes = Number(transfer.direction === 'up' ? up : down);
  if (code !== 0 || status !== '200' || bytes !== ARTIFACT_BYTES) {
    throw new Error(`curl ${transfer.direction === 'up' ? 'PUT' : 'GET'} got HTTP ${status ?? '?'} after ${bytes} bytes (exit ${code}): ${lastLines(curl.output(), 2)}`);
  }
  const seconds = Number(total);
  return { bytes, seconds, mbPerS: bytes / seconds / 1e6 };
}
