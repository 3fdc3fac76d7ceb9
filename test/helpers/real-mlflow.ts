// The real MLflow, for the conformance suite (test/mlflow/): which installations this machine has,
// a real `mlflow server` started in its own process group and stopped by pid, the real MLflow
// Python client run as a user runs it, and plain HTTP straight to the server (around the gateway)
// to read back what a request through the gateway did or did not do.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, type TestResponse } from './http-client.ts';
import { freePort } from './tls.ts';

interface MlflowInstallation {
  /** e.g. "2.17.2" */
  version: string;
  /** A Python interpreter that imports this MLflow (its `mlflow` command lives beside it). */
  python: string;
}

interface MlflowDiscovery {
  installations: MlflowInstallation[];
  /** Why there are none (undefined when there are some): one line, naming how to provide one. */
  problem?: string;
}

const HOW_TO_ENABLE =
  'set MLGATE_TEST_MLFLOW_PYTHON=/path/to/python (a Python that imports mlflow; several separated by ":"), ' +
  'or pip install mlflow, or run bash ../shared/mlflow/install.sh';

function mlflowVersionOf(python: string): string | undefined {
  const probe = spawnSync(python, ['-c', 'import importlib.metadata as m; print(m.version("mlflow"))'], { encoding: 'utf8', timeout: 30_000 });
  return probe.status === 0 ? probe.stdout.trim() : undefined;
}

/**
 * Where the suite finds MLflow, first that applies: MLGATE_TEST_MLFLOW_PYTHON (one or more
 * interpreters; one that cannot import mlflow is an error, not a skip), the virtual environments of
 * ../shared/mlflow/install.sh ($MLGATE_MLFLOW_HOME or ~/.cache/mlgate-mlflow), a python3 on PATH that
 * imports mlflow.
 */
export function discoverMlflow(env: NodeJS.ProcessEnv = process.env): MlflowDiscovery {
  const named = env.MLGATE_TEST_MLFLOW_PYTHON?.trim();
  if (named) {
    const installations = named.split(delimiter).filter(Boolean).map((python) => {
      const version = mlflowVersionOf(python);
      if (!version) throw new Error(`MLGATE_TEST_MLFLOW_PYTHON names ${python}, which cannot import mlflow`);
      return { version, python };
    });
    return { installations };
  }
  const home = env.MLGATE_MLFLOW_HOME || join(homedir(), '.cache', 'mlgate-mlflow');
  const installations: MlflowInstallation[] = [];
  if (existsSync(home)) {
    for (const entry of readdirSync(home).sort()) {
      const python = join(home, entry, 'venv', 'bin', 'python');
      const version = existsSync(python) ? mlflowVersionOf(python) : undefined;
      if (version) installations.push({ version, python });
    }
  }
  if (installations.length === 0) {
    const version = mlflowVersionOf('python3');
    if (version) installations.push({ version, python: 'python3' });
  }
  return installations.length ? { installations } : { installations, problem: `no MLflow found: ${HOW_TO_ENABLE}` };
}

/** The environment every MLflow process gets: nothing leaves the machine, nothing waits. */
function mlflowEnv(install: MlflowInstallation, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const bin = dirname(install.python);
  return {
    PATH: `${bin}${delimiter}${process.env.PATH ?? ''}`,
    HOME: process.env.HOME ?? tmpdir(),
    LANG: 'C.UTF-8',
    MLFLOW_DISABLE_TELEMETRY: 'true',
    DO_NOT_TRACK: 'true',
    GIT_PYTHON_REFRESH: 'quiet',
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    ...extra,
  };
}

interface MlflowServerOptions {
  /** `--app-name basic-auth`: MLflow's own authentication app. */
  appName?: 'basic-auth';
  /** `--serve-artifacts` (default) or `--no-serve-artifacts` with a local default artifact root. */
  serveArtifacts?: boolean;
  extraArgs?: string[];
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface RunningMlflow {
  version: string;
  python: string;
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  pid: number;
  /** Holds mlflow.db, artifacts/ and server.log. */
  dir: string;
  /** What the server printed so far. */
  log(): string;
  close(): Promise<void>;
}

/** MLflow's auth app's first admin, as each version creates it. */
export function basicAuthAdmin(version: string): [string, string] {
  return ['admin', version.startsWith('2.') ? 'password' : 'password1234'];
}

const running = new Set<number>();
process.once('exit', () => {
  for (const pid of running) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * `mlflow server` on a free loopback port, sqlite backend, one worker, in its own process group
 * (gunicorn and uvicorn fork workers), ready when /health answers.
 */
export async function startMlflowServer(install: MlflowInstallation, options: MlflowServerOptions = {}): Promise<RunningMlflow> {
  const dir = mkdtempSync(join(tmpdir(), `mlgate-mlflow-${install.version}-`));
  const port = await freePort();
  const artifacts = join(dir, 'artifacts');
  const args = [
    'server', '--host', '127.0.0.1', '--port', String(port),
    '--backend-store-uri', `sqlite:///${join(dir, 'mlflow.db')}`,
    ...(options.serveArtifacts === false
      ? ['--no-serve-artifacts', '--default-artifact-root', artifacts]
      : ['--serve-artifacts', '--artifacts-destination', artifacts]),
    '--workers', '1',
    ...(options.appName ? ['--app-name', options.appName] : []),
    ...(options.extraArgs ?? []),
  ];
  const logPath = join(dir, 'server.log');
  const logFd = openSync(logPath, 'a');
  const mlflowCommand = join(dirname(install.python), 'mlflow');
  const [command, commandArgs] = existsSync(mlflowCommand) ? [mlflowCommand, args] : [install.python, ['-m', 'mlflow', ...args]];
  const child = spawn(command, commandArgs, {
    cwd: dir,
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: mlflowEnv(install, {
      MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false',
      ...(options.appName === 'basic-auth' ? { MLFLOW_FLASK_SERVER_SECRET_KEY: 'mlgate-tests-only' } : {}),
      ...options.env,
    }),
  });
  closeSync(logFd);
  const pid = child.pid!;
  running.add(pid);
  let exited: number | null | undefined;
  child.on('exit', (code) => { exited = code; });
  const log = () => { try { return readFileSync(logPath, 'utf8'); } catch { return ''; } };
  const url = `http://127.0.0.1:${port}`;
  const server: RunningMlflow = {
    version: install.version,
    python: install.python,
    url,
    port,
    pid,
    dir,
    log,
    async close() {
      await stopProcessGroup(pid);
      running.delete(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + (options.timeoutMs ?? 90_000);
  for (;;) {
    if (exited !== undefined) {
      await server.close();
      throw new Error(`mlflow server ${install.version} exited with ${exited} before answering /health:\n${log().slice(-3000)}`);
    }
    const health = await request(`${url}/health`, { timeoutMs: 2000 }).catch(() => undefined);
    if (health?.status === 200) return server;
    if (Date.now() > deadline) {
      await server.close();
      throw new Error(`mlflow server ${install.version} did not answer /health in time:\n${log().slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopProcessGroup(pid: number): Promise<void> {
  try { process.kill(-pid, 'SIGTERM'); } catch { return; }
  const deadline = Date.now() + 10_000;
  while (groupAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  if (groupAlive(pid)) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

const PYTHON_DIR = fileURLToPath(new URL('../mlflow/python/', import.meta.url));

interface PythonRun<T> {
  /** The JSON object the script printed on its last line. */
  result: T;
  stdout: string;
  stderr: string;
}

interface MlflowClientEnv {
  /** MLFLOW_TRACKING_URI, e.g. the gateway's https URL. */
  trackingUri: string;
  /** MLFLOW_TRACKING_USERNAME / _PASSWORD */
  basic?: [string, string];
  /** MLFLOW_TRACKING_TOKEN */
  token?: string;
  /** MLFLOW_TRACKING_SERVER_CERT_PATH: the certificate to verify the gateway's against. */
  certPath?: string;
  extra?: Record<string, string>;
}

/**
 * Runs one of test/mlflow/python/*.py with the real MLflow client, configured only through the
 * variables a user sets; input goes to its stdin as JSON, and its last stdout line is its result.
 * A refused request fails at once (no retries).
 */
export async function runMlflowClient<T = Record<string, unknown>>(
  install: MlflowInstallation, script: string, client: MlflowClientEnv, input: unknown = {}, timeoutMs = 240_000,
): Promise<PythonRun<T>> {
  const workDir = mkdtempSync(join(tmpdir(), 'mlgate-mlflow-client-'));
  const env = mlflowEnv(install, {
    MLFLOW_TRACKING_URI: client.trackingUri,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES: '0',
    MLFLOW_HTTP_REQUEST_TIMEOUT: '120',
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR: 'false',
    TMPDIR: workDir,
    ...(client.basic ? { MLFLOW_TRACKING_USERNAME: client.basic[0], MLFLOW_TRACKING_PASSWORD: client.basic[1] } : {}),
    ...(client.token ? { MLFLOW_TRACKING_TOKEN: client.token } : {}),
    ...(client.certPath ? { MLFLOW_TRACKING_SERVER_CERT_PATH: client.certPath } : {}),
    ...client.extra,
  });
  try {
    return await new Promise<PythonRun<T>>((resolve, reject) => {
      const child = spawn(install.python, [join(PYTHON_DIR, script)], { cwd: workDir, env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; });
      child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; });
      const timer = setTimeout(() => { child.kill('SIGKILL'); }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const last = stdout.trim().split('\n').pop() ?? '';
        if (code !== 0) {
          reject(new Error(`${script} (MLflow ${install.version}) exited with ${code ?? signal}:\n${stderr.slice(-4000)}\n${stdout.slice(-2000)}`));
          return;
        }
        try {
          resolve({ result: JSON.parse(last) as T, stdout, stderr });
        } catch {
          reject(new Error(`${script} printed no JSON result:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`));
        }
      });
      child.stdin.end(JSON.stringify(input));
    });
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

/** Plain HTTP to the MLflow server itself, around the gateway: what MLflow really holds. */
export class MlflowDirect {
  constructor(readonly url: string, private readonly auth?: [string, string], private readonly headers: Record<string, string> = {}) {}

  async call(method: string, path: string, body?: unknown): Promise<TestResponse> {
    const isGet = method === 'GET';
    const query = isGet && body ? `?${new URLSearchParams(body as Record<string, string>)}` : '';
    return request(`${this.url}${path}${query}`, {
      method,
      auth: this.auth,
      headers: isGet ? this.headers : { 'content-type': 'application/json', ...this.headers },
      body: isGet ? undefined : JSON.stringify(body ?? {}),
    });
  }

  /** An API call that must succeed; its JSON answer. */
  async api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.call(method, `/api/2.0/mlflow/${path}`, body);
    if (res.status !== 200) throw new Error(`MLflow ${method} ${path} answered ${res.status}: ${res.text}`);
    return res.json<T>();
  }
}
