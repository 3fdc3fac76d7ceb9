import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { rawTlsExchange } from './helpers/tls-client.ts';

// A request hidden in another's body must never reach the upstream as a request of its own: it
// would run there without the gateway having authenticated it. The attempts go through the gateway
// over raw TLS; the upstream is deliberately lenient and takes every request line it can find.

interface LenientRequest {
  connection: number;
  method: string;
  target: string;
  headers: Record<string, string[]>;
  body: string;
}

interface LenientUpstream {
  url: string;
  requests: LenientRequest[];
  close(): Promise<void>;
}

/** Decodes one complete chunked body at the start of `data`; undefined until all of it arrived. */
function readChunked(data: Buffer): { body: Buffer; consumed: number } | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd === -1) return undefined;
    const size = parseInt(data.subarray(at, lineEnd).toString('latin1').split(';')[0]!, 16) || 0;
    at = lineEnd + 2;
    if (size === 0) {
      // Trailers, if any, end with an empty line.
      const end = data.subarray(at, at + 2).toString('latin1') === '\r\n' ? at + 2 : data.indexOf('\r\n\r\n', at) + 4;
      if (end < at) return undefined;
      return { body: Buffer.concat(parts), consumed: end };
    }
    if (data.length < at + size + 2) return undefined;
    parts.push(data.subarray(at, at + size));
    at += size + 2;
  }
}

/**
 * A raw HTTP/1.1 server that finds the end of each body the way the headers it received say
 * (chunked, else Content-Length, else no body) and reads whatever follows on the connection as
 * the next request: exactly how a request the gateway framed wrongly would be smuggled.
 */
async function startLenientUpstream(): Promise<LenientUpstream> {
  const requests: LenientRequest[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const connection = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let pending: LenientRequest | undefined;
    let framing: 'chunked' | number = 0;

    const respond = (request: LenientRequest) => {
      const text = `${request.method} ${request.target}`;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    };

    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (!pending) {
          const headEnd = buffered.indexOf('\r\n\r\n');
          if (headEnd === -1) return;
          const [requestLine = '', ...lines] = buffered.subarray(0, headEnd).toString('latin1').split('\r\n');
          buffered = buffered.subarray(headEnd + 4);
          const [method = '', target = ''] = requestLine.split(' ');
          const headers: Record<string, string[]> = {};
          for (const line of lines) {
            const colon = line.indexOf(':');
            const name = line.slice(0, colon).trim().toLowerCase();
            (headers[name] ??= []).push(line.slice(colon + 1).trim());
          }
          pending = { connection, method, target, headers, body: '' };
          requests.push(pending);
          const chunked = headers['transfer-encoding']?.join(',').toLowerCase().includes('chunked');
          framing = chunked ? 'chunked' : Number(headers['content-length']?.[0] ?? 0) || 0;
        }
        if (framing === 'chunked') {
          const decoded = readChunked(buffered);
          if (!decoded) return;
          pending.body = decoded.body.toString('latin1');
          buffered = buffered.subarray(decoded.consumed);
        } else {
          if (buffered.length < framing) return;
          pending.body = buffered.subarray(0, framing).toString('latin1');
          buffered = buffered.subarray(framing);
        }
        respond(pending);
        pending = undefined;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}

const AUTH = `Authorization: ${basic('alice', 'alice-password')}\r\n`;
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
const SMUGGLED_CHUNK = `${Buffer.byteLength(SMUGGLED).toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`;
const ARTIFACT = '/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.bin';

// Transport tests: alice is an admin, so per-user authorization (test/access-control.test.ts) stays out of the way.
const POLICY = { admins: ['alice'] };
let lenient: LenientUpstream;
let gw: TestGateway;
let upstream: MlflowUpstream;
let echoGw: TestGateway;

beforeAll(async () => {
  lenient = await startLenientUpstream();
  gw = await startTestGateway({ upstream: lenient.url, policy: POLICY });
  upstream = await startMlflowUpstream();
  echoGw = await startTestGateway({ upstream: upstream.url, policy: POLICY });
  // Check alice's password once now: the first check starts a hash thread, which would otherwise
  // eat into the raw exchanges' quiet window below.
  await gw.request('/warm-up', { auth: ['alice', 'alice-password'] });
  await echoGw.request('/echo', { auth: ['alice', 'alice-password'] });
});
afterAll(async () => {
  await gw?.close();
  await echoGw?.close();
  await lenient?.close();
  await upstream?.close();
});

/** Sends raw bytes through the gateway; returns the statuses and what reached the upstream. */
async function attempt(payload: string) {
  const before = lenient.requests.length;
  const exchange = await rawTlsExchange(gw.port, gw.ca!, payload);
  // The upstream answers (and records) before the gateway relays; nothing more can arrive late.
  return { ...exchange, reached: lenient.requests.slice(before) };
}

describe('request smuggling through the gateway', () => {
  // Node's HTTP parser refuses these itself; the gateway answers 400 and closes the connection.
  it.each([
    ['CL.TE: Content-Length and Transfer-Encoding together', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Content-Length: ${5 + SMUGGLED.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
    ['TE.CL: Transfer-Encoding and then Content-Length', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${SMUGGLED_CHUNK}`],
    ['two different Content-Lengths', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Content-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
    ['two equal Content-Lengths', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Content-Length: ${SMUGGLED.length}\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
    ['a Content-Length list', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Content-Length: 0, ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
    ['an obfuscated Transfer-Encoding', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding: xchunked\r\n\r\n${SMUGGLED_CHUNK}`],
    ['chunked followed by another coding', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n${SMUGGLED_CHUNK}`],
    ['a space before the colon', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding : chunked\r\n\r\n${SMUGGLED_CHUNK}`],
    ['a folded Transfer-Encoding line', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding: identity\r\n chunked\r\n\r\n${SMUGGLED_CHUNK}`],
    ['a chunk size line ending in a bare LF', `POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding: chunked\r\n\r\n${Buffer.byteLength(SMUGGLED).toString(16)}\n${SMUGGLED}\r\n0\r\n\r\n`],
  ])('refuses %s with 400 and forwards nothing', async (_label, payload) => {
    const { statuses, closedByGateway, reached } = await attempt(payload);
    expect(statuses).toEqual([400]);
    expect(closedByGateway).toBe(true);
    expect(reached).toEqual([]);
  });

  // These parse cleanly, so the gateway forwards them: the hidden request must stay body.
  it.each([
    ['a chunked DELETE', 'DELETE', 'keep-alive'],
    ['a chunked OPTIONS', 'OPTIONS', 'keep-alive'],
    ['a chunked DELETE naming Transfer-Encoding in Connection', 'DELETE', 'Transfer-Encoding'],
    ['a chunked OPTIONS naming "Transfer-Encoding, upgrade" in Connection', 'OPTIONS', 'Transfer-Encoding, upgrade'],
    ['a chunked GET', 'GET', 'keep-alive'],
  ])('keeps the request hidden in %s as its body', async (_label, method, connection) => {
    const payload = `${method} ${ARTIFACT} HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Transfer-Encoding: chunked\r\nConnection: ${connection}\r\n\r\n${SMUGGLED_CHUNK}`;
    const { statuses, reached } = await attempt(payload);
    expect(statuses).toEqual([200]);
    expect(reached.map((r) => `${r.method} ${r.target}`)).toEqual([`${method} ${ARTIFACT}`]);
    expect(reached[0]!.body).toBe(SMUGGLED);
    expect(reached[0]!.headers['x-forwarded-user']).toEqual(['alice']);
  });

  it('keeps Content-Length when the client names it in Connection', async () => {
    const payload = `DELETE ${ARTIFACT} HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}Content-Length: ${SMUGGLED.length}\r\nConnection: Content-Length\r\n\r\n${SMUGGLED}`;
    const { statuses, reached } = await attempt(payload);
    expect(statuses).toEqual([200]);
    expect(reached.map((r) => r.target)).toEqual([ARTIFACT]);
    expect(reached[0]!.body).toBe(SMUGGLED);
  });

  it('authenticates a request pipelined behind an authenticated one on its own', async () => {
    const payload = `GET /first HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}\r\n${SMUGGLED}`;
    const { statuses, reached } = await attempt(payload);
    expect(statuses).toEqual([200, 401]);
    expect(reached.map((r) => r.target)).toEqual(['/first']);
  });

  it('sends the upstream only the path of an absolute-form request target', async () => {
    const { statuses, reached } = await attempt(`GET http://evil.example/secret HTTP/1.1\r\nHost: 127.0.0.1\r\n${AUTH}\r\n`);
    expect(statuses).toEqual([200]);
    expect(reached.map((r) => r.target)).toEqual(['/secret']);
    expect(reached[0]!.headers.host).toEqual([new URL(lenient.url).host]);
  });
});

describe('bodies on DELETE and OPTIONS (http-proxy would drop their Transfer-Encoding)', () => {
  it.each(['DELETE', 'OPTIONS'])('delivers a chunked %s body with JSON intact', async (method) => {
    const parts = ['{"run_id":"', 'a'.repeat(32), '","keys":["loss","acc"]}'];
    const res = await echoGw.request('/echo/api/2.0/mlflow/logged-models/tags', {
      method,
      auth: ['alice', 'alice-password'],
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      body: Readable.from(parts.map((part) => Buffer.from(part))),
    });
    expect(res.status).toBe(200);
    const echo = res.json<{ method: string; body: string; headers: Record<string, string> }>();
    expect(echo.method).toBe(method);
    expect(JSON.parse(echo.body)).toEqual({ run_id: 'a'.repeat(32), keys: ['loss', 'acc'] });
    expect(echo.headers['transfer-encoding']).toBe('chunked');
    expect(echo.headers['content-length']).toBeUndefined();
    // The next request on the same kept-alive upstream connection is still read correctly.
    const next = await echoGw.request('/echo', { auth: ['alice', 'alice-password'] });
    expect(next.status).toBe(200);
    expect(next.json<{ method: string }>().method).toBe('GET');
  });
});
