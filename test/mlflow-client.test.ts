// The one client mlgate calls MLflow's REST API with (src/authz/mlflow-client.ts), against a real
// HTTP server standing in for MLflow: what it sends, how it reads tags, and that every failure is
// one MlflowError naming the upstream, for the authorization look-ups and grant management alike.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowGrantsClient } from '../src/authz/grants-client.ts';
import { MlflowClient, MlflowError, tagsFrom } from '../src/authz/mlflow-client.ts';
import { Resolver } from '../src/authz/resolver.ts';
import { freePort } from './helpers/tls.ts';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Answers by path; `/silent` never answers. Records every request and how many connections came. */
let server: http.Server;
let url: string;
const seen: Seen[] = [];
let connections = 0;

const ANSWERS: Record<string, (req: Seen) => { status: number; body: string }> = {
  '/echo': (req) => ({ status: 200, body: JSON.stringify({ method: req.method, url: req.url, body: req.body }) }),
  '/api/2.0/mlflow/experiments/get': () => ({ status: 500, body: JSON.stringify({ error_code: 'INTERNAL_ERROR', message: 'database is locked' }) }),
  '/missing': () => ({ status: 404, body: JSON.stringify({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'No Experiment with id=7 exists' }) }),
  '/invalid': () => ({ status: 400, body: JSON.stringify({ error_code: 'INVALID_PARAMETER_VALUE', message: 'Invalid tag name' }) }),
  '/html-error': () => ({ status: 502, body: '<html>Bad Gateway</html>' }),
  '/not-json': () => ({ status: 200, body: 'OK' }),
  '/empty': () => ({ status: 200, body: '' }),
};

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(request);
      const path = new URL(req.url!, 'http://x').pathname;
      if (path === '/silent') return;
      const answer = (ANSWERS[path] ?? (() => ({ status: 404, body: 'not found' })))(request);
      res.writeHead(answer.status, { 'content-type': answer.body.startsWith('{') ? 'application/json' : 'text/html' }).end(answer.body);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});


async function failure(promise: Promise<unknown>): Promise<MlflowError> {
  const err = await promise.then(() => undefined, (error: unknown) => error);
  expect(err).toBeInstanceOf(MlflowError);
  return err as MlflowError;
}

describe('tags', () => {
  it('reads MLflow\'s [{key, value}] list, a value of "" included', () => {
    expect(tagsFrom([{ key: 'mlgate.owner', value: 'alice' }, { key: 'mlgate.grant.user.carol', value: '' }])).toEqual([
      { key: 'mlgate.owner', value: 'alice' },
      { key: 'mlgate.grant.user.carol', value: '' },
    ]);
  });

  it('skips what MLflow never sends: a missing, null or non-string value or key, entries that are not objects', () => {
    const tags = tagsFrom([
      { key: 'no-value' },
      { key: 'null-value', value: null },
      { key: 'number', value: 3 },
      { key: 7, value: 'x' },
      { value: 'no key' },
      ['array', 'x'],
      'text',
      null,
      { key: 'kept', value: 'yes', extra: 1 },
    ]);
    expect(tags).toEqual([{ key: 'kept', value: 'yes' }]);
    for (const notAList of [undefined, null, {}, 'tags', { key: 'k', value: 'v' }]) expect(tagsFrom(notAList)).toEqual([]);
  });
});

describe('calls', () => {
  it('sends GETs with their query and POSTs with a JSON body, naming mlgate in the user header', async () => {
    const client = new MlflowClient({ upstream: url, timeoutMs: 5000, userHeader: 'X-Forwarded-User' });
    try {
      const got = await client.request('GET', '/echo?experiment_id=1&view_type=ALL');
      expect(got.status).toBe(200);
      expect(got.json).toEqual({ method: 'GET', url: '/echo?experiment_id=1&view_type=ALL', body: '' });
      const posted = client.objectOf(await client.request('POST', '/echo', { trace_ids: ['tr-1', 'tr-2'], note: 'Zoë' }), 'a test');
      expect(JSON.parse(posted.body as string)).toEqual({ trace_ids: ['tr-1', 'tr-2'], note: 'Zoë' });
      const [get, post] = seen.slice(-2);
      expect(get!.headers).toMatchObject({ accept: 'application/json', 'x-forwarded-user': 'mlgate' });
      expect(get!.headers['content-type']).toBeUndefined();
      expect(post!.headers).toMatchObject({ 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(post!.body)), 'x-forwarded-user': 'mlgate' });
    } finally {
      client.close();
    }
  });

  it('keeps its connection alive between calls', async () => {
    const client = new MlflowClient({ upstream: url, timeoutMs: 5000 });
    try {
      const before = connections;
      for (let i = 0; i < 5; i++) await client.request('GET', '/echo');
      expect(connections - before).toBe(1);
      expect(seen.at(-1)!.headers['x-forwarded-user']).toBeUndefined();
    } finally {
      client.close();
    }
  });
});

describe('failures: one MlflowError with a code, naming the upstream', () => {
  let client: MlflowClient;
  beforeAll(() => { client = new MlflowClient({ upstream: url, timeoutMs: 5000 }); });
  afterAll(() => client.close());
  const asked = async (path: string) => client.objectOf(await client.request('GET', path), `GET ${path}`);

  it('MLflow\'s own refusals keep their error code and message', async () => {
    expect(await failure(asked('/missing'))).toMatchObject({
      code: 'RESOURCE_DOES_NOT_EXIST',
      upstreamStatus: 404,
      message: `the MLflow tracking server at ${url} answered GET /missing with 404 RESOURCE_DOES_NOT_EXIST: No Experiment with id=7 exists`,
    });
    expect(await failure(asked('/invalid'))).toMatchObject({ code: 'INVALID_PARAMETER_VALUE', upstreamStatus: 400, message: expect.stringContaining(': Invalid tag name') });
  });

  it('any other answer but a JSON object of a success is an upstream error', async () => {
    expect(await failure(asked('/html-error'))).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamStatus: 502, message: `the MLflow tracking server at ${url} answered GET /html-error with 502: <html>Bad Gateway</html>` });
    for (const path of ['/not-json', '/empty']) {
      expect(await failure(asked(path))).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamStatus: 200, message: `the MLflow tracking server at ${url} answered GET ${path} with something that is not a JSON object` });
    }
  });

  it('nothing listening: UNREACHABLE, saying how to start MLflow', async () => {
    const port = await freePort();
    const dead = new MlflowClient({ upstream: `http://127.0.0.1:${port}/some/path`, timeoutMs: 5000 });
    try {
      expect(await failure(dead.request('GET', '/echo'))).toMatchObject({
        code: 'UNREACHABLE',
        message: `cannot reach the MLflow tracking server at http://127.0.0.1:${port} (ECONNREFUSED); is it running? Start it with: mlflow server --host 127.0.0.1 --port ${port}, or point --upstream at it`,
      });
    } finally {
      dead.close();
    }
  });

  it('no answer in time: TIMED_OUT', async () => {
    const slow = new MlflowClient({ upstream: url, timeoutMs: 200 });
    try {
      const started = performance.now();
      expect(await failure(slow.request('GET', '/silent'))).toMatchObject({ code: 'TIMED_OUT', message: `the MLflow tracking server at ${url} did not answer within 0.2 s` });
      expect(performance.now() - started).toBeLessThan(3000);
    } finally {
      slow.close();
    }
  });
});

describe('the resolver and the grants client fail alike', () => {
  it('an upstream that is down: the same message from both, an MlflowError for the request path', async () => {
    const port = await freePort();
    const upstream = `http://127.0.0.1:${port}`;
    const resolver = new Resolver({ upstream: new URL(upstream), cacheTtlMs: 1000, timeoutMs: 5000 });
    try {
      const fromResolver = await failure(resolver.experiment('1'));
      expect(fromResolver).toBeInstanceOf(MlflowError);
      const fromGrants = await failure(new MlflowGrantsClient(upstream).find('experiment', '1'));
      expect(fromResolver.message).toBe(fromGrants.message);
      expect(fromResolver.message).toContain(`cannot reach the MLflow tracking server at ${upstream} (ECONNREFUSED)`);
    } finally {
      resolver.close();
    }
  });

  it('a failed look-up names what was looked up and what MLflow said', async () => {
    const resolver = new Resolver({ upstream: new URL(url), cacheTtlMs: 1000, timeoutMs: 5000, userHeader: 'X-Forwarded-User' });
    try {
      expect(await failure(resolver.experiment('5'))).toMatchObject({
        code: 'UPSTREAM_ERROR',
        upstreamStatus: 500,
        message: `the MLflow tracking server at ${url} answered mlgate's look-up of experiment 5 with 500 INTERNAL_ERROR: database is locked`,
      });
      expect(seen.at(-1)!.headers['x-forwarded-user']).toBe('mlgate');
    } finally {
      resolver.close();
    }
  });
});
