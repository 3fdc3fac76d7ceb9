// Jupyter and MLflow on one port (issue 6): a real Jupyter Server at "/" and an MLflow-shaped
// upstream at "/mlflow" behind one gateway. The gateway adds Jupyter's token itself (from
// ${JUPYTER_TOKEN} in its environment), so clients only ever show mlgate credentials: Basic, an API
// token, or the session cookie of a browser signed in at /-/login.
//
// Every request to the Jupyter route names the gateway by a host name that is not local
// (notebooks.example.com), as users' browsers do: Jupyter on 127.0.0.1 refuses such a Host unless it
// was started as the README says (allow_remote_access), and compares a WebSocket's Origin with it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { runCli } from './helpers/cli.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { basic, type RequestOptions, type TestResponse } from './helpers/http-client.ts';
import { executeOverKernel, hasClassicFrontend, jupyterProblem, startJupyter, type RunningJupyter } from './helpers/jupyter.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { pinnedAgent } from './helpers/tls-client.ts';
import { openWebSocket, upgradeRefusal, type UpgradeRefusal } from './helpers/websocket-client.ts';

const PROBLEM = jupyterProblem();
const CLASSIC = !PROBLEM && hasClassicFrontend();
const COOKIE = '__Host-mlgate-session';
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const ADMIN = basic('admin', 'admin-password');
const ALICE = basic('alice', 'alice-password');
/** Jupyter's own token: known to Jupyter and the gateway's environment, never to a client. */
const JUPYTER_TOKEN = randomBytes(24).toString('hex');

let jupyter: RunningJupyter;
let upstream: MlflowUpstream;
let gw: TestGateway;
let host: string;
let origin: string;

beforeAll(async () => {
  if (PROBLEM) return;
  [jupyter, upstream] = await Promise.all([startJupyter({ token: JUPYTER_TOKEN }), startMlflowUpstream()]);
});
afterAll(async () => {
  await upstream?.close();
  await jupyter?.close();
});

/** The gateway of the recipe (config/notebook-host.example.yaml), started for a describe block. */
function notebookHostGateway(): void {
  beforeAll(async () => {
    gw = await startTestGateway({
      upstream: upstream.url,
      users: { admin: 'admin-password', alice: 'alice-password' },
      // ${JUPYTER_TOKEN} is read from the gateway's environment at start-up.
      env: { JUPYTER_TOKEN },
      config: {
        routes: [
          { path: '/mlflow', mlflow: true, stripPrefix: true },
          // No allow: a route that is not MLflow's is for admins only (the htpasswd user "admin" here).
          { path: '/', upstream: jupyter.url, upstreamHeaders: { Authorization: 'token ${JUPYTER_TOKEN}' } },
        ],
      },
    });
    host = `notebooks.example.com:${gw.port}`;
    origin = `https://${host}`;
  });
  afterAll(async () => {
    await gw?.close();
  });
}

/** An HTTPS request to the gateway under its public name, trusting only its certificate. */
function call(path: string, options: RequestOptions & { headers?: Record<string, string> } = {}): Promise<TestResponse> {
  return gw.request(path, { ...options, agent: pinnedAgent(gw.ca!), headers: { host, ...options.headers } });
}

function json(method: string, body: unknown, headers: Record<string, string>): RequestOptions & { headers: Record<string, string> } {
  return { method, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

/** Opens a WebSocket through the gateway under its public name. */
function connect(path: string, headers: Record<string, string>): Promise<WebSocket> {
  return openWebSocket(gw, path, { host, ...headers });
}

/** The status the gateway answers an upgrade it does not let through. */
function refusal(path: string, headers: Record<string, string> = {}): Promise<UpgradeRefusal> {
  return upgradeRefusal(gw, path, { host, ...headers });
}

async function startKernel(headers: Record<string, string>): Promise<string> {
  const res = await call('/api/kernels', json('POST', { name: 'python3' }, headers));
  expect(res.status, res.text).toBe(201);
  const kernel = res.json<{ id: string; name: string }>();
  expect(kernel.name).toBe('python3');
  return kernel.id;
}

/** Opens the kernel's channels through the gateway, runs the code, and closes. */
async function runThroughGateway(kernelId: string, code: string, headers: Record<string, string>): Promise<string> {
  const ws = await connect(`/api/kernels/${kernelId}/channels`, headers);
  try {
    return await executeOverKernel(ws, code);
  } finally {
    ws.close();
  }
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.skipIf(PROBLEM !== undefined)(`Jupyter Server itself, without the gateway${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`, () => {
  it('runs 1+1 in a kernel over its channels WebSocket with its token (the baseline for the gateway tests)', async () => {
    const auth = { authorization: `token ${jupyter.token}` };
    expect((await fetch(`${jupyter.url}/api/status`)).status).toBe(403);
    const started = await fetch(`${jupyter.url}/api/kernels`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{"name":"python3"}' });
    expect(started.status).toBe(201);
    const { id } = (await started.json()) as { id: string };
    const ws = new WebSocket(`${jupyter.url.replace(/^http:/, 'ws:')}/api/kernels/${id}/channels`, { headers: auth });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      expect(await executeOverKernel(ws, '1+1')).toBe('2');
      await expect(executeOverKernel(ws, '1/0')).rejects.toThrow('ZeroDivisionError');
      expect(await executeOverKernel(ws, 'x = 5')).toBe('');
    } finally {
      ws.close();
    }
    expect((await fetch(`${jupyter.url}/api/kernels/${id}`, { method: 'DELETE', headers: auth })).status).toBe(204);
  });
});

describe.skipIf(PROBLEM !== undefined)(`Jupyter at / and MLflow at /mlflow behind one gateway${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`, () => {
  notebookHostGateway();

  describe('an admin with Basic credentials', () => {
    it.skipIf(!CLASSIC)(`gets the notebook tree page${CLASSIC ? '' : ' (skipped: python3-nbclassic is not installed)'}`, async () => {
      const res = await call('/tree', { headers: { authorization: ADMIN, accept: HTML } });
      expect(res.status, res.text.slice(0, 500)).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.text).toContain('<title>Home');
    });

    it("gets Jupyter Server's own page and API, with Jupyter's token added by the gateway", async () => {
      const page = await call('/', { headers: { authorization: ADMIN, accept: HTML } });
      expect(page.status, page.text.slice(0, 500)).toBe(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      const status = await call('/api/status', { headers: { authorization: ADMIN } });
      expect(status.status, status.text).toBe(200);
      expect(status.json()).toHaveProperty('started');
    });

    it('reads and writes files through the contents API', async () => {
      const listing = await call('/api/contents', { headers: { authorization: ADMIN } });
      expect(listing.status, listing.text).toBe(200);
      expect(listing.json()).toMatchObject({ type: 'directory', path: '' });

      const saved = await call('/api/contents/hello.txt', json('PUT', { type: 'file', format: 'text', content: 'saved through mlgate\n' }, { authorization: ADMIN }));
      expect(saved.status, saved.text).toBe(201);
      expect(readFileSync(join(jupyter.rootDir, 'hello.txt'), 'utf8')).toBe('saved through mlgate\n');
      const read = await call('/api/contents/hello.txt?type=file&format=text', { headers: { authorization: ADMIN } });
      expect(read.json()).toMatchObject({ name: 'hello.txt', content: 'saved through mlgate\n' });
    });

    it('starts a kernel and runs 1+1 in it over wss:// to the kernel channels', async () => {
      const id = await startKernel({ authorization: ADMIN });
      expect(await runThroughGateway(id, '1+1', { authorization: ADMIN })).toBe('2');
      const gone = await call(`/api/kernels/${id}`, { method: 'DELETE', headers: { authorization: ADMIN } });
      expect(gone.status).toBe(204);
    });

    it('opens a terminal and types into it over wss://', async (ctx) => {
      const available = await call('/api/terminals', { headers: { authorization: ADMIN } });
      if (available.status === 404) ctx.skip(); // Jupyter without terminado
      const created = await call('/api/terminals', { method: 'POST', headers: { authorization: ADMIN } });
      expect(created.status, created.text).toBe(200);
      const { name } = created.json<{ name: string }>();
      const ws = await connect(`/terminals/websocket/${name}`, { authorization: ADMIN });
      try {
        let screen = '';
        const answered = new Promise<void>((resolve) => {
          ws.on('message', (data) => {
            const [stream, text] = JSON.parse(data.toString()) as [string, unknown];
            if (stream === 'stdout') screen += String(text);
            if (screen.includes('42-through-mlgate')) resolve();
          });
        });
        ws.send(JSON.stringify(['stdin', 'echo $((6*7))-through-mlgate\r']));
        await answered;
      } finally {
        ws.close();
      }
      expect((await call(`/api/terminals/${name}`, { method: 'DELETE', headers: { authorization: ADMIN } })).status).toBe(204);
    });
  });

  it('lets an admin in with an mlgate API token (Bearer), over HTTP and the kernel WebSocket', async () => {
    const issued = runCli(['token', 'issue', 'admin', '--name', 'notebook-ci', '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir, env: { JUPYTER_TOKEN } });
    expect(issued.status, issued.stderr).toBe(0);
    const bearer = `Bearer ${issued.stdout.trim()}`;
    // The running gateway picks the new token up from its file.
    await eventually(async () => (await call('/api/status', { headers: { authorization: bearer } })).status === 200);
    const id = await startKernel({ authorization: bearer });
    expect(await runThroughGateway(id, '6*7', { authorization: bearer })).toBe('42');
  });

  describe('an admin signed in at /-/login (the session cookie)', () => {
    let cookie: string;
    beforeAll(async () => {
      const res = await call('/-/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: HTML, origin },
        body: new URLSearchParams({ username: 'admin', password: 'admin-password', next: '/tree' }).toString(),
      });
      expect(res.status, res.text).toBe(303);
      expect(res.headers.location).toBe('/tree');
      const set = (res.headers['set-cookie'] ?? []).find((line) => line.startsWith(`${COOKIE}=`));
      expect(set).toBeDefined();
      cookie = set!.split(';', 1)[0]!;
    });

    it('gets the pages and runs code over a same-origin WebSocket, as the notebook page does', async () => {
      const page = await call(CLASSIC ? '/tree' : '/', { headers: { cookie, accept: HTML } });
      expect(page.status, page.text.slice(0, 500)).toBe(200);
      const id = await startKernel({ cookie, origin });
      expect(await runThroughGateway(id, '1+1', { cookie, origin })).toBe('2');
    });

    it('cannot be used from another site: the gateway checks the Origin, since its token switches off Jupyter\'s XSRF check', async () => {
      const evil = 'https://evil.example';
      const kernels = await call('/api/kernels', json('POST', { name: 'python3' }, { cookie, origin: evil }));
      expect(kernels.status, kernels.text).toBe(403);
      const write = await call('/api/contents/evil.txt', json('PUT', { type: 'file', format: 'text', content: 'x' }, { cookie, origin: evil }));
      expect(write.status, write.text).toBe(403);
      expect(existsSync(join(jupyter.rootDir, 'evil.txt'))).toBe(false);

      const id = await startKernel({ authorization: ADMIN });
      // Cross-site WebSocket hijacking: browsers send the cookie with any site's WebSocket.
      const hijack = await refusal(`/api/kernels/${id}/channels`, { cookie, origin: evil });
      expect(hijack.status).toBe(403);
      expect(JSON.parse(hijack.body).message).toContain('Origin https://evil.example');
      // And without any Origin: only a browser has the cookie, and every browser sends one.
      const bare = await refusal(`/api/kernels/${id}/channels`, { cookie });
      expect(bare.status).toBe(403);
    });
  });

  describe('refusals', () => {
    it('answers 401 without credentials, and sends a browser to sign in', async () => {
      expect((await call('/api/contents')).status).toBe(401);
      expect((await call('/api/kernels', json('POST', { name: 'python3' }, {}))).status).toBe(401);
      const page = await call('/tree', { headers: { accept: HTML } });
      expect(page.status).toBe(302);
      expect(page.headers.location).toBe('/-/login?next=%2Ftree');
      const id = await startKernel({ authorization: ADMIN });
      expect((await refusal(`/api/kernels/${id}/channels`)).status).toBe(401);
      expect((await refusal(`/api/kernels/${id}/channels`, { authorization: basic('admin', 'wrong') })).status).toBe(401);
    });

    it('answers 403 to a user who is not an admin, on pages, the API and WebSockets', async () => {
      expect((await call('/api/contents', { headers: { authorization: ALICE } })).status).toBe(403);
      expect((await call('/tree', { headers: { authorization: ALICE, accept: HTML } })).status).toBe(403);
      expect((await call('/api/kernels', json('POST', { name: 'python3' }, { authorization: ALICE }))).status).toBe(403);
      const id = await startKernel({ authorization: ADMIN });
      expect((await refusal(`/api/kernels/${id}/channels`, { authorization: ALICE })).status).toBe(403);
    });

    it("does not take Jupyter's own token from a client in place of mlgate credentials", async () => {
      // An Authorization scheme mlgate does not speak: 400, as anywhere else on the gateway.
      const res = await call('/api/contents', { headers: { authorization: `token ${JUPYTER_TOKEN}` } });
      expect(res.status).toBe(400);
      expect((await call(`/api/contents?token=${JUPYTER_TOKEN}`)).status).toBe(401);
    });
  });

  describe('MLflow at /mlflow in the same gateway', () => {
    it('reaches the MLflow upstream without the prefix, as the user, and without Jupyter\'s token', async () => {
      const before = upstream.requests.length;
      const res = await call('/mlflow/api/2.0/mlflow/experiments/search', json('POST', { max_results: 10 }, { authorization: ALICE }));
      expect(res.status, res.text).toBe(200);
      const seen = upstream.requests.slice(before).find((r) => r.url === '/api/2.0/mlflow/experiments/search');
      expect(seen).toBeDefined();
      expect(seen!.headers['x-forwarded-user']).toBe('alice');
      expect(seen!.headers.authorization).toBeUndefined();
      expect(JSON.stringify(seen!.headers)).not.toContain(JUPYTER_TOKEN);
      expect(seen!.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    });

    it('takes runs logged from a notebook cell through the /mlflow prefix, stamped with the signed-in user', async () => {
      // What the MLflow client does for MLFLOW_TRACKING_URI=https://<host>:8888/mlflow (its REST
      // calls, with the gateway's certificate as MLFLOW_TRACKING_SERVER_CERT_PATH), written with the
      // standard library because the kernel's Python has no mlflow package here.
      const cell = [
        'import base64, json, ssl, urllib.request',
        `uri = ${JSON.stringify(`${gw.url}/mlflow`)}`,
        `tls = ssl.create_default_context(cafile=${JSON.stringify(join(gw.dir, 'certs', 'mlgate.crt'))})`,
        `auth = "Basic " + base64.b64encode(b"alice:alice-password").decode()`,
        'def call(path, body):',
        '    req = urllib.request.Request(uri + path, data=json.dumps(body).encode(), headers={"Authorization": auth, "Content-Type": "application/json"})',
        '    return json.load(urllib.request.urlopen(req, context=tls))',
        'exp = call("/api/2.0/mlflow/experiments/create", {"name": "from-a-notebook"})["experiment_id"]',
        'run = call("/api/2.0/mlflow/runs/create", {"experiment_id": exp, "user_id": "jovyan", "tags": [{"key": "mlflow.user", "value": "jovyan"}]})["run"]["info"]["run_id"]',
        'call("/api/2.0/mlflow/runs/log-metric", {"run_id": run, "key": "loss", "value": 0.25, "timestamp": 1, "step": 1})',
        'run',
      ].join('\n');
      const kernel = await startKernel({ authorization: ADMIN });
      const runId = (await runThroughGateway(kernel, cell, { authorization: ADMIN })).replace(/'/g, '');
      const stored = upstream.store.runs.get(runId);
      expect(stored, `run ${runId}`).toBeDefined();
      expect(stored!.info.user_id).toBe('alice');
      expect(stored!.tags).toContainEqual({ key: 'mlflow.user', value: 'alice' });
      expect(stored!.metrics).toEqual([{ key: 'loss', value: 0.25, timestamp: 1, step: 1 }]);
    });

    it("answers in MLflow's JSON without credentials", async () => {
      const res = await call('/mlflow/api/2.0/mlflow/experiments/search', json('POST', { max_results: 10 }, {}));
      expect(res.status).toBe(401);
      expect(res.json()).toMatchObject({ error_code: 'UNAUTHENTICATED' });
    });
  });
});

describe.skipIf(PROBLEM !== undefined)(`a Jupyter route that allows a group${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`, () => {
  let shared: TestGateway;
  beforeAll(async () => {
    shared = await startTestGateway({
      upstream: upstream.url,
      users: { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password' },
      env: { JUPYTER_TOKEN },
      policy: { admins: ['admin'], groups: { 'data-science': ['alice'] } },
      config: {
        routes: [
          { path: '/mlflow', mlflow: true, stripPrefix: true },
          { path: '/', upstream: jupyter.url, allow: ['@data-science'], upstreamHeaders: { Authorization: 'token ${JUPYTER_TOKEN}' } },
        ],
      },
    });
  });
  afterAll(async () => {
    await shared?.close();
  });

  it('lets the group\'s members run code and refuses everyone else who is not an admin', async () => {
    const asUser = (authorization: string) => ({ authorization });
    expect((await shared.request('/api/contents', { headers: asUser(basic('bob', 'bob-password')) })).status).toBe(403);
    expect((await shared.request('/api/contents', { headers: asUser(ADMIN) })).status).toBe(200);
    const started = await shared.request('/api/kernels', json('POST', { name: 'python3' }, asUser(ALICE)));
    expect(started.status, started.text).toBe(201);
    const { id } = started.json<{ id: string }>();
    const ws = new WebSocket(`${shared.url.replace(/^https:/, 'wss:')}/api/kernels/${id}/channels`, { ca: shared.ca, headers: asUser(ALICE) });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      expect(await executeOverKernel(ws, '"alice" + "!"')).toBe("'alice!'");
    } finally {
      ws.close();
    }
  });
});
