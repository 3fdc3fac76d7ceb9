// Ports, readiness and one-off requests, all on 127.0.0.1.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { sleep, type Started } from './processes.ts';

export const HOST = '127.0.0.1';

/** A port free right now (the kernel picks it; a tiny race with other programs is accepted). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection; certificates are not checked (they are the bench's own). */
export function request(url: string, options: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<Reply> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(target, { method: options.method ?? 'GET', headers: options.headers, agent: false, rejectUnauthorized: false, timeout: options.timeoutMs ?? 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in time`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Waits until the URL answers anything over HTTP; fails early, with its output, if the process died. */
export async function waitForHttp(url: string, started: Started | undefined, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (started && !started.running()) throw new Error(`${started.name} exited during start-up: ${lastLines(started.output())}`);
    try {
      await request(url, { timeoutMs: 1000 });
      return;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${timeoutMs / 1000}s (${last})${started ? `; output: ${lastLines(started.output())}` : ''}`);
}

export function lastLines(text: string, count = 6): string {
  return text.trim().split('\n').slice(-count).join(' | ') || '(no output)';
}

export function basicAuthorization(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}
