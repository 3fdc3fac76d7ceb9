// A real Jupyter Server (Debian's jupyter-server, with python3-ipykernel for kernels) started for a
// test on a free loopback port with a fixed token, and the Jupyter messaging protocol over a kernel's
// WebSocket, enough to run a line of Python and read its value back.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type WebSocket from 'ws';
import { freePort } from './tls.ts';

export interface RunningJupyter {
  /** e.g. http://127.0.0.1:41234 (no trailing slash; the base URL is not included). */
  url: string;
  port: number;
  token: string;
  /** The base URL Jupyter serves under ("/" unless asked otherwise), with both slashes. */
  baseUrl: string;
  /** Jupyter's root directory (--ServerApp.root_dir): the files the contents API shows. */
  rootDir: string;
  /** Everything Jupyter printed so far (its log goes to stderr). */
  output(): string;
  close(): Promise<void>;
}

interface StartJupyterOptions {
  token: string;
  /** --ServerApp.base_url; default "/". */
  baseUrl?: string;
  /** More --ServerApp.* arguments; one naming a setting of jupyterArgs replaces it. */
  args?: string[];
  /** How long to wait for /api/status to answer; default 30 s. */
  timeoutMs?: number;
}

/**
 * The command line of the README recipe (config/notebook-host.example.yaml), on another port and
 * directory: loopback only, no browser, the token from the JUPYTER_TOKEN environment variable (so it
 * is not in `ps`), and the Host check off, because mlgate passes on the Host the browser used
 * (notebooks.example.com:8888), which Jupyter on 127.0.0.1 would otherwise refuse as a DNS-rebinding
 * attempt; its token still guards it. Allowed to run as root only when it is root (CI, containers).
 */
function jupyterArgs(port: number, rootDir: string, baseUrl = '/'): string[] {
  return [
    '--ServerApp.ip=127.0.0.1',
    `--ServerApp.port=${port}`,
    '--ServerApp.port_retries=0',
    '--ServerApp.allow_remote_access=True',
    '--ServerApp.open_browser=False',
    `--ServerApp.root_dir=${rootDir}`,
    ...(baseUrl === '/' ? [] : [`--ServerApp.base_url=${baseUrl}`]),
    ...(process.getuid?.() === 0 ? ['--ServerApp.allow_root=True'] : []),
  ];
}

let problem: string | null | undefined;

/**
 * Why a real Jupyter cannot be started here (undefined when it can): jupyter-server missing, or its
 * default kernel (python3) missing or without ipykernel. Checked once, synchronously, so a test file
 * can use it in describe.skipIf.
 */
export function jupyterProblem(): string | undefined {
  if (problem === undefined) problem = findProblem() ?? null;
  return problem ?? undefined;
}

/** Whether the classic notebook frontend (python3-nbclassic: /tree, /notebooks/...) is installed. */
export function hasClassicFrontend(): boolean {
  const python = jupyterPython();
  return python !== undefined && spawnSync(python, ['-c', 'import nbclassic'], { stdio: 'ignore' }).status === 0;
}

function findProblem(): string | undefined {
  const version = spawnSync('jupyter-server', ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (version.error || version.status !== 0) return 'jupyter-server is not installed (apt-get install jupyter-server)';
  const python = jupyterPython();
  if (!python) return 'cannot tell which Python runs jupyter-server';
  const spec = spawnSync(python, ['-c', 'import json; from jupyter_client.kernelspec import KernelSpecManager as M; print(json.dumps(M().get_kernel_spec("python3").argv))'], { encoding: 'utf8', timeout: 30_000 });
  if (spec.status !== 0) return 'Jupyter has no python3 kernel (apt-get install python3-ipykernel)';
  let argv: string[];
  try {
    argv = JSON.parse(spec.stdout.trim().split('\n').at(-1)!) as string[];
  } catch {
    return 'cannot read the python3 kernelspec';
  }
  const kernel = spawnSync(argv[0]!, ['-c', 'import ipykernel'], { stdio: 'ignore', timeout: 30_000 });
  if (kernel.status !== 0) return `the python3 kernel's interpreter ${argv[0]} has no ipykernel (apt-get install python3-ipykernel)`;
  return undefined;
}

/** The interpreter of the jupyter-server script (its #! line), which may not be the python3 on PATH. */
function jupyterPython(): string | undefined {
  const where = spawnSync('sh', ['-c', 'command -v jupyter-server'], { encoding: 'utf8' });
  if (where.status !== 0) return undefined;
  try {
    const shebang = readFileSync(where.stdout.trim(), 'utf8').split('\n', 1)[0]!;
    const words = shebang.replace(/^#!\s*/, '').split(/\s+/);
    return words[0]!.endsWith('/env') ? words[1] : words[0];
  } catch {
    return undefined;
  }
}

export async function startJupyter(options: StartJupyterOptions): Promise<RunningJupyter> {
  const baseUrl = `/${(options.baseUrl ?? '/').replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/');
  const home = mkdtempSync(join(tmpdir(), 'mlgate-jupyter-'));
  const rootDir = join(home, 'notebooks');
  mkdirSync(rootDir);
  const port = await freePort();
  const extra = options.args ?? [];
  const replaced = new Set(extra.map((arg) => arg.split('=', 1)[0]));
  const args = [...jupyterArgs(port, rootDir, baseUrl).filter((arg) => !replaced.has(arg.split('=', 1)[0])), ...extra];
  const child = spawn('jupyter-server', args, {
    cwd: rootDir, // terminals open here
    env: {
      ...process.env,
      // Its own runtime, config and IPython directories: nothing read from or written to ~/.jupyter.
      JUPYTER_RUNTIME_DIR: join(home, 'runtime'),
      JUPYTER_CONFIG_DIR: join(home, 'config'),
      IPYTHONDIR: join(home, 'ipython'),
      PYDEVD_DISABLE_FILE_VALIDATION: '1',
      JUPYTER_TOKEN: options.token,
      JUPYTER_TOKEN_FILE: undefined,
      JUPYTER_PORT: undefined,
    },
    detached: true, // its own process group, ended as one by close()
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  child.once('error', (err) => { output += `\n${String(err)}`; });

  const url = `http://127.0.0.1:${port}`;
  const running: RunningJupyter = {
    url,
    port,
    token: options.token,
    baseUrl,
    rootDir,
    output: () => output,
    async close() {
      await stopGroup(child, exited);
      rmSync(home, { recursive: true, force: true });
    },
  };
  try {
    await waitForStatus(`${url}${baseUrl}api/status`, options.token, exited, options.timeoutMs ?? 30_000, () => output);
  } catch (err) {
    await running.close();
    throw err;
  }
  return running;
}

async function waitForStatus(statusUrl: string, token: string, exited: Promise<number | null>, timeoutMs: number, output: () => string): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((code) => { exitCode = code; });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`jupyter-server exited (${exitCode}) before answering:\n${output()}`);
    try {
      const res = await fetch(statusUrl, { headers: { authorization: `token ${token}` }, signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
      await res.body?.cancel();
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`jupyter-server did not answer ${statusUrl} within ${timeoutMs} ms:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * SIGTERM to the process group: Jupyter shuts its kernels and terminals down (kernels run in
 * process groups of their own, and also exit when their parent goes). SIGKILL after 10 s.
 */
async function stopGroup(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, name);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  const killed = await Promise.race([exited.then(() => false), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 10_000).unref())]);
  if (killed) {
    signal('SIGKILL');
    await exited;
  }
}

interface JupyterMessage {
  header: { msg_id: string; msg_type: string; [key: string]: unknown };
  parent_header: { msg_id?: string; [key: string]: unknown };
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  channel: string;
  buffers?: unknown[];
}

/**
 * Runs `code` in the kernel on the other end of an open /api/kernels/<id>/channels WebSocket (the
 * JSON protocol Jupyter Server speaks when no subprotocol is asked for) and resolves with the
 * text/plain form of its value ("" when it has none, e.g. a statement). Rejects with the Python
 * error if the code raised, or if no answer comes within timeoutMs.
 */
export function executeOverKernel(ws: WebSocket, code: string, timeoutMs = 30_000): Promise<string> {
  const msgId = randomUUID();
  const request: JupyterMessage = {
    header: { msg_id: msgId, username: 'mlgate-test', session: randomUUID(), msg_type: 'execute_request', version: '5.3', date: new Date().toISOString() },
    parent_header: {},
    metadata: {},
    content: { code, silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true },
    channel: 'shell',
    buffers: [],
  };
  return new Promise((resolve, reject) => {
    let result = '';
    let error: string | undefined;
    const finish = (outcome: () => void) => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
      outcome();
    };
    const onMessage = (data: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return;
      let message: JupyterMessage;
      try {
        message = JSON.parse(data.toString()) as JupyterMessage;
      } catch {
        return;
      }
      if (message.parent_header?.msg_id !== msgId) return;
      const type = message.header.msg_type;
      if (type === 'execute_result') {
        result = String((message.content.data as Record<string, unknown> | undefined)?.['text/plain'] ?? '');
      } else if (type === 'error') {
        error = `${String(message.content.ename)}: ${String(message.content.evalue)}`;
      } else if (type === 'status' && message.channel === 'iopub' && message.content.execution_state === 'idle') {
        // The last message the kernel publishes for a request: everything it produced came before.
        finish(() => (error === undefined ? resolve(result) : reject(new Error(`the kernel raised ${error}`))));
      }
    };
    const onClose = (code: number) => finish(() => reject(new Error(`the kernel WebSocket closed (${code}) before the code ran`)));
    const timer = setTimeout(() => finish(() => reject(new Error(`no answer from the kernel within ${timeoutMs} ms`))), timeoutMs);
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.send(JSON.stringify(request));
  });
}
