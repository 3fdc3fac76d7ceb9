// A load generator that opens a new TLS connection for every request (no session resumption),
// sends one HTTP request on it and waits for the answer. wrk reuses connections, so it cannot
// measure this. Run as its own process so it never shares an event loop with a gateway:
//   node --import tsx bench/load/tls-handshakes.ts <url> <concurrency> <seconds> [authorization]
// Prints one JSON line: {"completed","perS","p50Ms","p99Ms","failed","firstError"}.
import tls from 'node:tls';
import { percentile } from '../lib/stats.ts';

const [urlArg, concurrencyArg, secondsArg, authorization] = process.argv.slice(2);
if (!urlArg || !concurrencyArg || !secondsArg) throw new Error('usage: tls-handshakes.ts <url> <concurrency> <seconds> [authorization]');
const url = new URL(urlArg);
const port = Number(url.port);
const request = `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n${authorization ? `Authorization: ${authorization}\r\n` : ''}Connection: close\r\n\r\n`;

const latencies: number[] = [];
let failed = 0;
let firstError: string | undefined;
const deadline = performance.now() + Number(secondsArg) * 1000;

/** One connection: handshake, request, full answer, close. Resolves with whether it got a 200. */
function once(): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    let head = '';
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      if (error) {
        failed++;
        firstError ??= error;
      } else latencies.push(performance.now() - started);
      socket.destroy();
      resolve();
    };
    // The bench's own self-signed certificate: the handshake still verifies the server's signature.
    const socket = tls.connect({ host: url.hostname, port, servername: 'localhost', rejectUnauthorized: false }, () => socket.write(request));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => { if (head.length < 64) head += chunk; });
    // Connection: close, so the end of the stream is the end of the answer.
    socket.on('end', () => (head.startsWith('HTTP/1.1 200') ? finish() : finish(`answered ${JSON.stringify(head.slice(0, 40))}`)));
    socket.on('error', (err) => finish(err.message));
    socket.setTimeout(10_000, () => finish('timed out'));
  });
}

async function loop(): Promise<void> {
  while (performance.now() < deadline) await once();
}

const startedAt = performance.now();
await Promise.all(Array.from({ length: Number(concurrencyArg) }, loop));
const seconds = (performance.now() - startedAt) / 1000;
process.stdout.write(`${JSON.stringify({
  completed: latencies.length,
  perS: latencies.length / seconds,
  p50Ms: percentile(latencies, 50) ?? null,
  p99Ms: percentile(latencies, 99) ?? null,
  failed,
  firstError: firstError ?? null,
})}\n`);
