// Issue 12, class 1: no unauthenticated client can hold the gateway. Slow clients (headers that
// trickle, bodies that stop after a refusal or on the sign-in form), too many connections from one
// address, refused uploads that must still get their JSON error, and the memory of bodies read to
// check them. Timeouts are shortened through the limits.* keys so the file runs in seconds.
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const AUTH = basic('alice', 'alice-password');
const LOG_BATCH = '/api/2.0/mlflow/runs/log-batch';
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts/';
const pythonRequests = spawnSync('python3', ['-c', 'import requests'], { encoding: 'utf8' }).status === 0;

interface RawConnection {
  socket: net.Socket;
  /** Everything the gateway sent so far. */
  received(): string;
  /** Resolves with the milliseconds from connecting until the gateway closed it (or `capMs`: -1). */
  closedWithin(capMs: number): Promise<number>;
  /** Whether the connection was accepted and is still open. */
  open(): boolean;
}

/** A raw client on `localAddress` (127.0.0.x: another client as the gateway sees it). */
function connect(port: number, localAddress = '127.0.0.1'): Promise<RawConnection> {
  return new Promise((resolve) => {
    const started = performance.now();
    let data = '';
    let closedAt: number | undefined;
    const waiters: (() => void)[] = [];
    const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(connection));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => { data += chunk; });
    // A connection the gateway resets at once may report the reset before it reports the connect.
    socket.on('error', () => {});
    socket.on('close', () => {
      closedAt = performance.now();
      waiters.splice(0).forEach((wake) => wake());
      resolve(connection);
    });
    const connection: RawConnection = {
      socket,
      received: () => data,
      open: () => closedAt === undefined,
      closedWithin: (capMs) => new Promise((done) => {
        if (closedAt !== undefined) return done(closedAt - started);
        const timer = setTimeout(() => done(-1), capMs);
        waiters.push(() => {
          clearTimeout(timer);
          done(closedAt! - started);
        });
      }),
    };
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A whole request on its own connection; status, headers and body. */
function httpRequest(port: number, path: string, options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; localAddress?: string; agent?: http.Agent } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, localAddress: options.localAddress, agent: options.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

let upstream: MlflowUpstream;
beforeAll(async () => {
  upstream = await startMlflowUpstream();
});
afterAll(async () => {
  await upstream?.close();
});

describe('slow clients', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      upstream: upstream.url,
      tls: false,
      // alice may write (artifacts, log-batch): a refusal would end her uploads for other reasons.
      policy: { admins: ['alice'] },
      config: {
        limits: {
          headerTimeout: '1s', bodyIdleTimeout: '2s', unauthenticatedBodyIdleTimeout: '1s',
          refusalDrainTime: '1s', refusalDrainSize: '1MiB', checkedBodyBudget: '64KiB', keepAliveTimeout: '5s',
        },
        authz: { maxCheckedBody: '48KiB' },
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('drops a connection whose headers never finish, or that sends nothing at all', async () => {
    const silent = await connect(gw.port);
    const trickle = await connect(gw.port);
    trickle.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    // Moving, a byte every 200 ms, but the headers as a whole take longer than headerTimeout (1s).
    const dribble = setInterval(() => { if (trickle.open()) trickle.socket.write('X'); }, 200);
    try {
      const [a, b] = await Promise.all([silent.closedWithin(4000), trickle.closedWithin(4000)]);
      expect(a).toBeGreaterThan(0);
      expect(b).toBeGreaterThan(0);
      expect(a).toBeLessThan(3000);
      expect(b).toBeLessThan(3000);
    } finally {
      clearInterval(dribble);
    }
  });

  it('closes an API request refused with 401 whose body stops arriving, within the unauthenticated timeout', async () => {
    const conn = await connect(gw.port, '127.0.0.2');
    conn.socket.write(`POST ${LOG_BATCH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"run_id": "`);
    const closed = await conn.closedWithin(5000);
    expect(conn.received()).toMatch(/^HTTP\/1\.1 401 /);
    expect(closed).toBeGreaterThan(0);
    expect(closed).toBeLessThan(3500);
  });

  it('closes a sign-in form whose body stops arriving, within the unauthenticated timeout', async () => {
    const conn = await connect(gw.port, '127.0.0.3');
    const origin = `http://127.0.0.1:${gw.port}`;
    conn.socket.write(`POST /-/login HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nOrigin: ${origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nuser=alice&pass`);
    await sleep(500);
    expect(conn.open()).toBe(true); // the form is waiting for its body, not refused
    const closed = await conn.closedWithin(5000);
    expect(closed).toBeGreaterThan(0);
    expect(closed).toBeLessThan(3500);
    // Nor can a sign-in form be kept open by sending a byte now and then.
    const trickle = await connect(gw.port, '127.0.0.3');
    trickle.socket.write(`POST /-/login HTTP/1.1\r\nHost: 127.0.0.1:${gw.port}\r\nOrigin: ${origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nuser=alice&pass`);
    const dribble = setInterval(() => { if (trickle.open()) trickle.socket.write('x'); }, 200);
    try {
      const cut = await trickle.closedWithin(5000);
      expect(cut).toBeGreaterThan(0);
      expect(cut).toBeLessThan(3500);
    } finally {
      clearInterval(dribble);
    }
  });

  it('drops a signed-in upload that stalls after bodyIdleTimeout, but never one that keeps moving', async () => {
    const stalled = await connect(gw.port);
    stalled.socket.write(`PUT ${ARTIFACTS}1/0123456789abcdef0123456789abcdef/artifacts/stalled.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Length: 100000\r\n\r\n0123456789`);
    const moving = await connect(gw.port);
    const total = 24;
    moving.socket.write(`PUT ${ARTIFACTS}1/0123456789abcdef0123456789abcdef/artifacts/moving.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Length: ${total * 1000}\r\n\r\n`);
    // 24 chunks 250 ms apart: 6 s in all, three times bodyIdleTimeout (2 s), never idle that long.
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        moving.socket.write(Buffer.alloc(1000, 97));
        await sleep(250);
      }
    })();
    const stalledClosed = await stalled.closedWithin(6000);
    expect(stalledClosed).toBeGreaterThan(1500); // signed in: the longer bodyIdleTimeout (2 s)
    expect(stalledClosed).toBeLessThan(4500);
    expect(stalled.received(), stalled.received()).toBe('');
    await sending;
    for (let i = 0; i < 40 && !/\r\n\r\n/.test(moving.received()); i++) await sleep(50);
    expect(moving.received()).toMatch(/^HTTP\/1\.1 20\d /);
    expect(upstream.artifacts.get('1/0123456789abcdef0123456789abcdef/artifacts/moving.bin')?.bytes).toBe(total * 1000);
    moving.socket.destroy();
  }, 20_000);

  it('a refused request with a body gets its answer, then the connection closes after a bounded drain', async () => {
    // Declared larger than authz.maxCheckedBody: 413 at once, the body keeps coming and is drained.
    const conn = await connect(gw.port);
    conn.socket.write(`POST ${LOG_BATCH} HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n`);
    conn.socket.write(Buffer.alloc(100_000, 32));
    await sleep(200);
    expect(conn.open()).toBe(true);
    conn.socket.write(Buffer.alloc(100_000, 32));
    const closed = await conn.closedWithin(3000);
    expect(conn.received()).toMatch(/^HTTP\/1\.1 413 /);
    expect(conn.received()).toContain('"error_code":"RESOURCE_EXHAUSTED"');
    expect(closed).toBeGreaterThan(0);
    // A body that would go on for ever is cut at refusalDrainTime (1 s) or refusalDrainSize (1 MiB).
    const endless = await connect(gw.port, '127.0.0.2');
    endless.socket.write(`POST ${LOG_BATCH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n`);
    const pump = setInterval(() => { if (endless.open()) endless.socket.write(Buffer.alloc(16_384, 32)); }, 20);
    try {
      const cut = await endless.closedWithin(5000);
      expect(endless.received()).toMatch(/^HTTP\/1\.1 401 /);
      expect(cut).toBeGreaterThan(0);
      expect(cut).toBeLessThan(3000);
    } finally {
      clearInterval(pump);
    }
  });

  it('a 401 sent before a late body keeps the connection: the next request on it gets its answer', async () => {
    // The MLflow client sends the headers, then the body; a refusal before the body must not close
    // the connection once the body is in, or the client's next call on it fails (RemoteDisconnected).
    const body = JSON.stringify({ run_id: 'r', key: 'k', value: 1, timestamp: 1, step: 0 });
    const conn = await connect(gw.port, '127.0.0.3');
    conn.socket.write(`POST /api/2.0/mlflow/runs/log-metric HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    for (let waited = 0; !conn.received().includes('\r\n\r\n') && waited < 3000; waited += 20) await sleep(20);
    expect(conn.received()).toMatch(/^HTTP\/1\.1 401 /);
    expect(conn.received()).toMatch(/connection: keep-alive/i);
    conn.socket.write(body);
    await sleep(300);
    expect(conn.open()).toBe(true);
    conn.socket.write('GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    for (let waited = 0; !/HTTP\/1\.1 200 /.test(conn.received()) && waited < 3000; waited += 20) await sleep(20);
    expect(conn.received()).toMatch(/HTTP\/1\.1 200 [\s\S]*"status":"ok"/);
    conn.socket.destroy();
  });

  it('bounds the memory of bodies read to check them: 503 with Retry-After past the budget, released when a body stalls', async () => {
    // Two bodies of 40,000 bytes do not fit checkedBodyBudget (64 KiB) at once.
    const holder = await connect(gw.port);
    holder.socket.write(`POST ${LOG_BATCH} HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Type: application/json\r\nContent-Length: 40000\r\n\r\n{"run_id": "`);
    await sleep(300); // authenticated and reading
    const body = JSON.stringify({ run_id: 'r'.repeat(32), metrics: [], pad: ' '.repeat(39_900) }).slice(0, 40_000).padEnd(40_000, ' ');
    const refused = await httpRequest(gw.port, LOG_BATCH, { method: 'POST', headers: { authorization: AUTH, 'content-type': 'application/json', 'content-length': 40_000 }, body });
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    expect(JSON.parse(refused.body).error_code).toBe('TEMPORARILY_UNAVAILABLE');
    // The stalled body is dropped after bodyIdleTimeout (2 s), and its share of the budget with it.
    expect(await holder.closedWithin(5000)).toBeGreaterThan(0);
    const after = await httpRequest(gw.port, LOG_BATCH, { method: 'POST', headers: { authorization: AUTH, 'content-type': 'application/json', 'content-length': 40_000 }, body });
    expect(after.status).not.toBe(503);
  }, 15_000);
});

// Over TLS a reset is fatal to the answer: Python gets SSLEOFError instead of the 413 or 401.
describe('refused uploads', () => {
  let tlsGw: TestGateway;
  beforeAll(async () => {
    // Default drain limits (8 MiB, 5 s); 3 MB bodies, larger than the socket buffers take.
    tlsGw = await startTestGateway({ upstream: upstream.url, config: { authz: { maxCheckedBody: '48KiB' } } });
  });
  afterAll(async () => {
    await tlsGw?.close();
  });

  it.runIf(pythonRequests)('Python requests sees the JSON error of a refused upload, not a broken pipe', async () => {
    const script = `
import json, os, requests
url = os.environ["URL"]
out = []
for auth in (("alice", "alice-password"), ("alice", "wrong"), None):
    try:
        r = requests.post(url + "/api/2.0/mlflow/runs/log-batch", data=b" " * 3_000_000, auth=auth, headers={"Content-Type": "application/json"}, timeout=20, verify=os.environ["CERT"])
        out.append({"status": r.status_code, "error_code": r.json().get("error_code")})
    except Exception as e:
        out.append({"exception": type(e).__name__ + ": " + str(e)[:200]})
print(json.dumps(out))
`;
    const child = spawn('python3', ['-c', script], { env: { PATH: process.env.PATH, HOME: process.env.HOME, URL: tlsGw.url, CERT: join(tlsGw.dir, 'certs', 'mlgate.crt') } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; });
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(status, stderr).toBe(0);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual([
      { status: 413, error_code: 'RESOURCE_EXHAUSTED' },
      { status: 401, error_code: 'UNAUTHENTICATED' },
      { status: 401, error_code: 'UNAUTHENTICATED' },
    ]);
  }, 30_000);

});

describe('TLS', () => {
  it('drops a connection that never finishes its handshake, and takes a burst of handshakes in turns without losing any', async () => {
    const tlsGw = await startTestGateway({ upstream: upstream.url, config: { limits: { headerTimeout: '1s' } } });
    try {
      const silent = await connect(tlsGw.port, '127.0.0.2');
      const closed = await silent.closedWithin(4000);
      expect(closed).toBeGreaterThan(0);
      expect(closed).toBeLessThan(3000);
      // 60 new connections at once, more than are handed to TLS per turn of the event loop.
      const answers = await Promise.all(Array.from({ length: 60 }, () => new Promise<number>((resolve, reject) => {
        const req = https.request(`${tlsGw.url}/-/healthz`, { ca: tlsGw.ca, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        req.on('error', reject);
        req.end();
      })));
      expect(answers.every((status) => status === 200)).toBe(true);
    } finally {
      await tlsGw.close();
    }
  });
});

describe('connection limits', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ upstream: upstream.url, tls: false, config: { limits: { maxConnections: 10, maxConnectionsPerIp: 4 } } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('refuses connections past the per-IP and total limits at once, while established users keep working', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const held: RawConnection[] = [];
    try {
      // A signed-in user with an established keep-alive connection (1 of 10).
      expect((await httpRequest(gw.port, '/health', { headers: { authorization: AUTH }, agent })).status).toBe(200);
      for (let i = 0; i < 4; i++) held.push(await connect(gw.port, '127.0.0.2'));
      await sleep(100);
      const fifth = await connect(gw.port, '127.0.0.2');
      fifth.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await fifth.closedWithin(1000)).toBeGreaterThan(0);
      expect(fifth.received()).toBe('');
      // Another address is not affected.
      expect((await httpRequest(gw.port, '/-/healthz', { localAddress: '127.0.0.3' })).status).toBe(200);
      for (let i = 0; i < 4; i++) held.push(await connect(gw.port, '127.0.0.3'));
      held.push(await connect(gw.port, '127.0.0.4'));
      await sleep(100);
      expect(held.every((conn) => conn.open())).toBe(true);
      // 10 open: the total is reached; a new address is refused too.
      const over = await connect(gw.port, '127.0.0.5');
      expect(await over.closedWithin(1000)).toBeGreaterThan(0);
      // The established user is not.
      expect((await httpRequest(gw.port, '/health', { headers: { authorization: AUTH }, agent })).status).toBe(200);
      // Connections that close make room again.
      held.splice(0, 2).forEach((conn) => conn.socket.destroy());
      await sleep(100);
      expect((await httpRequest(gw.port, '/-/healthz', { localAddress: '127.0.0.2' })).status).toBe(200);
    } finally {
      agent.destroy();
      held.forEach((conn) => conn.socket.destroy());
    }
  });

  it('counts clients behind a trusted proxy by the address it forwards', async () => {
    const proxied = await startTestGateway({ upstream: upstream.url, tls: false, config: { proxy: { trustedProxies: ['127.0.0.9'] }, limits: { maxConnections: 50, maxConnectionsPerIp: 2 } } });
    const agents = [0, 1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    try {
      const from = (client: string, agent: http.Agent) => httpRequest(proxied.port, '/health', { localAddress: '127.0.0.9', agent, headers: { authorization: AUTH, 'x-forwarded-for': client } });
      // Three connections from the proxy: not refused at the door (the proxy carries many clients).
      expect((await from('10.1.1.1', agents[0]!)).status).toBe(200);
      expect((await from('10.1.1.1', agents[1]!)).status).toBe(200);
      const third = await from('10.1.1.1', agents[2]!);
      expect(third.status).toBe(503);
      expect(third.headers['retry-after']).toMatch(/^\d+$/);
      // Another client through the same proxy is served.
      const other = new http.Agent({ keepAlive: true, maxSockets: 1 });
      expect((await from('10.2.2.2', other)).status).toBe(200);
      other.destroy();
    } finally {
      agents.forEach((agent) => agent.destroy());
      await proxied.close();
    }
  });
});
