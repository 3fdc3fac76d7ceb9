// Debian's redis-server for the shared-state case: on 127.0.0.1, a free port, a password (as a
// deployment would have), no persistence. Started through processes.ts, so it is stopped by pid.
import net from 'node:net';
import { HOST, freePort, lastLines } from '../lib/net.ts';
import { sleep, startProcess, type Started } from '../lib/processes.ts';

export interface BenchRedis {
  url: string;
  port: number;
  password: string;
  process: Started;
}

/** One command in RESP, its raw answer back (the bench only reads INFO's text). */
function redisCommand(port: number, password: string, ...args: string[]): Promise<string> {
  const encode = (parts: string[]) => `*${parts.length}\r\n${parts.map((part) => `$${Buffer.byteLength(part)}\r\n${part}\r\n`).join('')}`;
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST);
    let text = '';
    socket.setTimeout(2000, () => socket.destroy(new Error(`redis on port ${port} did not answer ${args[0]}`)));
    socket.on('connect', () => socket.write(encode(['AUTH', password]) + encode(args)));
    socket.on('data', (chunk) => {
      text += chunk.toString();
      // +OK for AUTH, then a bulk string ($<length>\r\n...) or a simple answer.
      const after = text.startsWith('+OK\r\n') ? text.slice(5) : undefined;
      if (after === undefined) {
        if (text.startsWith('-')) socket.destroy(new Error(`redis: ${text.trim()}`));
        return;
      }
      const bulk = /^\$(\d+)\r\n/.exec(after);
      if (bulk ? after.length >= bulk[0].length + Number(bulk[1]) : after.endsWith('\r\n')) {
        socket.end();
        resolve(bulk ? after.slice(bulk[0].length, bulk[0].length + Number(bulk[1])) : after.trim());
      }
    });
    socket.on('error', reject);
  });
}

/** Commands Redis has run since it started, by name (INFO commandstats). */
export async function commandsRun(redis: BenchRedis): Promise<Map<string, number>> {
  const info = await redisCommand(redis.port, redis.password, 'INFO', 'commandstats');
  const counts = new Map<string, number>();
  for (const [, name, calls] of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
    // The bench's own INFO and AUTH are not the gateways'.
    if (name !== 'info' && name !== 'auth') counts.set(name!, Number(calls));
  }
  return counts;
}

export async function startRedis(password: string): Promise<BenchRedis> {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', HOST, '--requirepass', password, '--save', '', '--appendonly', 'no'];
  const started = startProcess('redis-server', 'redis-server', args);
  const redis = { url: `redis://${HOST}:${port}/0`, port, password, process: started };
  for (let tries = 0; tries < 100; tries++) {
    if (!started.running()) throw new Error(`redis-server exited during start-up: ${lastLines(started.output())}`);
    if (await redisCommand(port, password, 'PING').then((answer) => answer === '+PONG' || answer === 'PONG', () => false)) return redis;
    await sleep(50);
  }
  throw new Error(`redis-server did not answer on port ${port}: ${lastLines(started.output())}`);
}
