// Jupyter and MLflow on one port, in a real browser: headless Chromium signs in to the gateway of the
// README recipe (config/notebook-host.example.yaml: a real Jupyter Server at "/", an MLflow-shaped
// upstream at "/mlflow"), sees Jupyter's file list rendered by its own JavaScript, opens a notebook,
// runs a cell in a kernel over the page's same-origin WebSocket, and signs out, which closes that
// WebSocket. This is what the design rests on: the session cookie (Jupyter's token is added by the
// gateway), the browser's own Origin on WebSockets, and the browser's Host passed on to Jupyter.
//
// The browser names the gateway notebooks.example.com (mapped to 127.0.0.1 inside Chromium), as
// users' browsers do with a public host name, and trusts only the gateway's self-signed certificate
// (its SPKI pin), issued for that name through tls.hosts.
import { randomBytes } from 'node:crypto';
import type { Browser, BrowserContext, Page, WebSocket as PageWebSocket } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumProblem, gatewayArgs, launchChromium } from './helpers/chromium.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { hasClassicFrontend, jupyterProblem, startJupyter, type RunningJupyter } from './helpers/jupyter.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { pinnedAgent } from './helpers/tls-client.ts';

const HOST_NAME = 'notebooks.example.com';
const NOTEBOOK = 't.ipynb';
const JUPYTER_TOKEN = randomBytes(24).toString('hex');
/** How long a page may take to load, a kernel to start, a cell to run, on a busy 2-core machine. */
const WAIT = 45_000;

const PROBLEM = chromiumProblem() ?? jupyterProblem() ?? (hasClassicFrontend() ? undefined : 'python3-nbclassic is not installed (the classic /tree and /notebooks pages)');
const title = `Jupyter and MLflow on one port in headless Chromium${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`;

/** What the page's script sees of nbclassic's notebook (window.Jupyter), as far as the test uses it. */
interface JupyterGlobal {
  notebook?: {
    kernel?: { is_connected(): boolean; info_reply?: { status?: string } } | null;
    execute_all_cells(): void;
  };
}
type TestWindow = Window & { Jupyter?: JupyterGlobal; webSocketCloses?: { url: string; code: number; reason: string }[] };

/** A minimal nbformat 4 notebook whose only cell is `1+1`, on the python3 kernel. */
const notebook = {
  type: 'notebook',
  format: 'json',
  content: {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' },
      language_info: { name: 'python' },
    },
    cells: [{ cell_type: 'code', id: 'one-plus-one', metadata: {}, source: '1+1', outputs: [], execution_count: null }],
  },
};

/** Rejects when the promise has not settled within ms: every wait in this file is bounded. */
function within<T>(promise: Promise<T>, what: string, ms = WAIT): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe.skipIf(PROBLEM !== undefined)(title, () => {
  let jupyter: RunningJupyter;
  let upstream: MlflowUpstream;
  let gw: TestGateway;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let origin: string;
  /** The notebook page's kernel channels WebSocket, as Chromium reports it. */
  let channels: PageWebSocket | undefined;

  beforeAll(async () => {
    [jupyter, upstream] = await Promise.all([startJupyter({ token: JUPYTER_TOKEN, timeoutMs: WAIT }), startMlflowUpstream()]);
    gw = await startTestGateway({
      upstream: upstream.url,
      users: { admin: 'admin-password', alice: 'alice-password' },
      env: { JUPYTER_TOKEN },
      config: {
        tls: { hosts: [HOST_NAME] },
        routes: [
          { path: '/mlflow', mlflow: true, stripPrefix: true },
          { path: '/', upstream: jupyter.url, allow: ['admin'], upstreamHeaders: { Authorization: 'token ${JUPYTER_TOKEN}' } },
        ],
      },
    });
    origin = `https://${HOST_NAME}:${gw.port}`;

    // The notebook to open, written through the gateway with Basic credentials.
    const saved = await gw.request(`/api/contents/${NOTEBOOK}`, {
      method: 'PUT',
      agent: pinnedAgent(gw.ca!),
      headers: { host: `${HOST_NAME}:${gw.port}`, authorization: basic('admin', 'admin-password'), 'content-type': 'application/json' },
      body: JSON.stringify(notebook),
    });
    expect(saved.status, saved.text).toBe(201);

    browser = await launchChromium(gatewayArgs(HOST_NAME, gw.ca!));
    context = await browser.newContext(); // no ignoreHTTPSErrors: only the pinned certificate is trusted
    context.setDefaultTimeout(WAIT);
    context.setDefaultNavigationTimeout(WAIT);
    // Records how every WebSocket the pages open ends (code and reason), which Playwright does not report.
    await context.addInitScript(() => {
      const w = window as TestWindow;
      const Native = window.WebSocket;
      w.webSocketCloses = [];
      window.WebSocket = class extends Native {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(url, protocols);
          this.addEventListener('close', (event) => w.webSocketCloses!.push({ url: this.url, code: event.code, reason: event.reason }));
        }
      };
    });
    page = await context.newPage();
    page.on('websocket', (ws) => {
      if (/\/api\/kernels\/[^/]+\/channels/.test(ws.url())) channels = ws;
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    await Promise.all([jupyter?.close(), upstream?.close()]);
  }, 60_000);

  it('sends the browser to sign in, and back to /tree, where Jupyter\'s script lists the files with the session cookie', async () => {
    await page.goto(`${origin}/tree`);
    expect(page.url()).toBe(`${origin}/-/login?next=%2Ftree`);

    await page.getByLabel('User name').fill('admin');
    await page.getByLabel('Password').fill('admin-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${origin}/tree`);

    // The list is filled in by the page's script from /api/contents, a call carrying only the cookie.
    const item = page.locator('#notebook_list .list_item a.item_link', { hasText: NOTEBOOK });
    await item.waitFor();
    await expect(item.getAttribute('href')).resolves.toBe(`/notebooks/${NOTEBOOK}`);
    const listed = await waitForLog(gw.logs, (line) => line.msg === 'request' && String(line.path).startsWith('/api/contents') && line.status === 200, WAIT);
    expect(listed).toMatchObject({ method: 'GET', user: 'admin', auth: 'session' });
    const [cookie] = (await context.cookies()).filter((c) => c.name.includes('mlgate'));
    expect(cookie).toMatchObject({ name: '__Host-mlgate-session', domain: HOST_NAME, secure: true, httpOnly: true });
  }, 120_000);

  it('shows the MLflow UI under /mlflow/ to the same session, whose calls reach MLflow without the prefix', async () => {
    const before = upstream.requests.length;
    await page.goto(`${origin}/mlflow/`);
    await page.waitForFunction(() => document.getElementById('experiments')?.textContent !== 'loading');
    await expect(page.locator('#experiments').textContent()).resolves.toBe('200 {"experiments":[]}');
    await expect(page.locator('#user').textContent()).resolves.toBe('admin');
    const call = upstream.requests.slice(before).find((r) => r.url === '/ajax-api/2.0/mlflow/experiments/search');
    expect(call?.headers['x-forwarded-user']).toBe('admin');
    expect(JSON.stringify(call?.headers)).not.toContain(JUPYTER_TOKEN);
  }, 120_000);

  it('opens the notebook, whose kernel connects over a same-origin WebSocket, and runs 1+1 in it', async () => {
    await page.goto(`${origin}/notebooks/${NOTEBOOK}`);
    // Kernel started (POST /api/sessions) and its channels WebSocket open through the gateway.
    await page.waitForFunction(() => {
      const kernel = (window as TestWindow).Jupyter?.notebook?.kernel;
      return kernel?.is_connected() === true && kernel.info_reply?.status === 'ok';
    }, undefined, { timeout: WAIT, polling: 200 });
    await page.locator('#kernel_indicator_icon.kernel_idle_icon').waitFor();
    expect(channels?.url()).toMatch(new RegExp(`^wss://${HOST_NAME.replace(/\./g, '\\.')}:${gw.port}/api/kernels/[0-9a-f-]+/channels`));

    await page.evaluate(() => (window as TestWindow).Jupyter!.notebook!.execute_all_cells());
    const result = page.locator('.cell .output_area .output_result pre');
    await result.waitFor();
    await expect(result.textContent()).resolves.toBe('2');
    await expect(page.locator('.cell .output_prompt').first().textContent()).resolves.toMatch(/Out\s*\[1\]/);
  }, 120_000);

  it('signs out in another tab, which closes the open kernel WebSocket (1008) and leaves the notebook disconnected', async () => {
    expect(channels, 'the notebook page opened no kernel WebSocket').toBeDefined();
    const open = channels!;
    expect(open.isClosed()).toBe(false);
    const closed = new Promise<void>((resolve) => open.once('close', () => resolve()));
    const kernelPath = new URL(open.url()).pathname;

    const other = await context.newPage();
    await other.goto(`${origin}/-/logout`);
    await expect(other.locator('main').textContent()).resolves.toContain('Signed in as admin');
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.waitForURL(`${origin}/-/login?signed-out`);
    await other.close();
    expect((await context.cookies()).filter((c) => c.name.includes('mlgate'))).toEqual([]);

    // The gateway ends the tunnel (within watchInterval), and the page sees the close frame.
    const ended = await waitForLog(gw.logs, (line) => line.msg === 'WebSocket closed: its session ended', WAIT);
    expect(ended).toMatchObject({ user: 'admin', reason: 'session signed out' });
    await within(closed, 'the page seeing its kernel WebSocket close');
    await page.waitForFunction(
      (path) => (window as TestWindow).webSocketCloses!.some((c) => new URL(c.url).pathname === path && c.code === 1008),
      kernelPath,
      { timeout: WAIT, polling: 100 },
    );
    // nbclassic then asks about its kernel and may try to reconnect (which it does depends on
    // timing: after a 401 on the kernel's info it gives up); without a session the gateway refuses
    // either with 401.
    const kernelId = kernelPath.split('/')[3]!;
    await waitForLog(gw.logs, (line) => String(line.path).startsWith(`/api/kernels/${kernelId}`) && line.status === 401, WAIT);
    // The page's own API calls get a quiet 401: with a Basic challenge the browser would put a
    // password prompt over the notebook (and headless Chromium would wait on it forever).
    const saved = await within(page.evaluate(async () => {
      const res = await fetch('/api/contents/t.ipynb');
      return { status: res.status, challenge: res.headers.get('www-authenticate') };
    }), 'the page fetching its notebook after sign-out');
    expect(saved).toEqual({ status: 401, challenge: null });
    // Which indicator nbclassic shows (disconnected, or dead after its kernel info got a 401) depends
    // on the same timing; what matters is that the notebook is no longer connected.
    await page.waitForFunction(() => (window as TestWindow).Jupyter?.notebook?.kernel?.is_connected() === false, undefined, { timeout: WAIT, polling: 100 });
  }, 120_000);
});
