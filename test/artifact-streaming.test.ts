import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines } from './helpers/gateway.ts';
import { basic, request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

// Multi-GB artifact uploads and downloads are normal for MLflow. The gateway runs as its own
// process here, as `mlgate serve` would, so its memory can be read from /proc while 400 MB pass
// through it each way: buffering either body would show up as hundreds of MB of growth.

const SIZE = 400 * 1024 * 1024;
const CHUNK = 256 * 1024;
/** Generous for TLS and socket buffers and a lazy GC; far below the 400 MB a buffered body needs. */
const MAX_RSS_GROWTH = 120 * 1024 * 1024;
const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts/';
const AUTH = basic('alice', 'alice-password');

let upstream: MlflowUpstream;
let cli: RunningCli;
let dir: string;
let url: string;
let ca: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  dir = mkdtempSync(join(tmpdir(), 'mlgate-streaming-'));
  writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
  // A transport test: alice is an admin, so per-user authorization (test/access-control.test.ts) stays out of the way.
  writeFileSync(join(dir, 'policy.yaml'), stringify({ admins: ['alice'] }));
  writeFileSync(join(dir, 'mlgate.yaml'), stringify({
    host: '127.0.0.1',
    port: 0,
    // One process: its memory is read from /proc (the child's pid), and one upstream connection is kept alive.
    workers: 1,
    upstream: upstream.url,
    tls: { selfSignedDir: join(dir, 'certs') },
    auth: { htpasswd: join(dir, 'htpasswd'), bcryptCost: 4, hashWorkers: 1 },
    authz: { policyFile: join(dir, 'policy.yaml') },
    log: { level: 'info', format: 'json' },
  }));
  cli = spawnCli(['serve', '--config', join(dir, 'mlgate.yaml')], { cwd: dir });
  url = await listeningUrl(cli);
  ca = readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8');
  // Warm up: code paths compiled, credentials cached, an upstream connection pooled.
  expect((await request(`${url}/echo`, { ca, headers: { authorization: AUTH } })).status).toBe(200);
});
afterAll(async () => {
  if (cli) await stopCli(cli);
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Resident memory of the gateway process, sampled until stopped; reports the baseline and peak. */
function watchMemory(pid: number) {
  const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const baseline = rss();
  let peak = baseline;
  const timer = setInterval(() => { peak = Math.max(peak, rss()); }, 25);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, rss());
      return { baseline, peak, growth: peak - baseline };
    },
  };
}

/** SIZE bytes of a repeating pattern, made as they are read; notes when the last chunk was made. */
function generatedBody() {
  const hash = createHash('sha256');
  const pattern = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i++) pattern[i] = (i * 31) & 0xff;
  let made = 0;
  const body = {
    lastChunkAt: 0,
    sha256: () => hash.digest('hex'),
    stream: new Readable({
      read() {
        if (made >= SIZE) return void this.push(null);
        const piece = pattern.subarray(0, Math.min(CHUNK, SIZE - made));
        made += piece.length;
        hash.update(piece);
        if (made >= SIZE) body.lastChunkAt = performance.now();
        this.push(piece);
      },
    }),
  };
  return body;
}

describe('artifact transfers through a running gateway', () => {
  it('streams a 400 MB upload to the upstream intact, without holding it in memory', async () => {
    const artifact = '1/0123456789abcdef0123456789abcdef/artifacts/model.bin';
    const firstByte = upstream.firstArtifactByte(artifact);
    const body = generatedBody();
    const memory = watchMemory(cli.child.pid!);
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request(`${url}${ARTIFACTS}${artifact}`, {
        method: 'PUT',
        ca,
        headers: { authorization: AUTH, 'content-type': 'application/octet-stream', 'content-length': SIZE },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      body.stream.pipe(req);
    });
    const { growth, baseline, peak } = memory.stop();

    expect(status).toBe(200);
    const received = upstream.artifacts.get(artifact)!;
    expect(received.bytes).toBe(SIZE);
    expect(received.sha256).toBe(body.sha256());
    // Streamed, not stored and forwarded: the upstream had the start long before the client made the end.
    expect(await firstByte).toBeLessThan(body.lastChunkAt);
    expect(growth, `gateway RSS went from ${baseline} to ${peak} bytes`).toBeLessThan(MAX_RSS_GROWTH);
  });

  it('streams a 400 MB download to the client intact, without holding it in memory', async () => {
    const artifact = `1/0123456789abcdef0123456789abcdef/artifacts/generated-${SIZE}.bin`;
    const upstreamDone = upstream.transferOutcome(artifact).then(() => performance.now());
    const memory = watchMemory(cli.child.pid!);
    const expected = Buffer.alloc(64 * 1024, 7);
    const { status, bytes, intact, firstByteAt } = await new Promise<{ status: number; bytes: number; intact: boolean; firstByteAt: number }>((resolve, reject) => {
      https.get(`${url}${ARTIFACTS}${artifact}`, { ca, headers: { authorization: AUTH } }, (res) => {
        let bytes = 0;
        let intact = true;
        let firstByteAt = 0;
        res.on('data', (chunk: Buffer) => {
          firstByteAt ||= performance.now();
          bytes += chunk.length;
          // The upstream sends only 7s; compare in pattern-sized slices (memcmp, not a JS loop).
          for (let at = 0; at < chunk.length && intact; at += expected.length) {
            const slice = chunk.subarray(at, at + expected.length);
            intact = slice.equals(expected.subarray(0, slice.length));
          }
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, intact, firstByteAt }));
        res.on('error', reject);
      }).on('error', reject);
    });
    const { growth, baseline, peak } = memory.stop();

    expect(status).toBe(200);
    expect(bytes).toBe(SIZE);
    expect(intact).toBe(true);
    expect(await upstreamDone).toBeGreaterThan(firstByteAt);
    expect(growth, `gateway RSS went from ${baseline} to ${peak} bytes`).toBeLessThan(MAX_RSS_GROWTH);
  });

  it('reuses one kept-alive upstream connection for consecutive requests', async () => {
    const before = upstream.requests.length;
    for (let i = 0; i < 3; i++) expect((await request(`${url}/echo`, { ca, headers: { authorization: AUTH } })).status).toBe(200);
    const ports = upstream.requests.slice(before).map((r) => r.remotePort);
    expect(ports).toHaveLength(3);
    expect(new Set(ports).size).toBe(1);
  });
});
