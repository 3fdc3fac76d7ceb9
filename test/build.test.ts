// The Docker image runs the compiled CLI (dist/), not the TypeScript through tsx. Docker itself may
// not be available, so this builds dist/ the way the Dockerfile does, lays it out like /app in the
// image, and runs the image's ENTRYPOINT/CMD and HEALTHCHECK commands, taken from the Dockerfile.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listeningUrl, PROJECT_ROOT, spawnNode, stopCli, type RunningCli } from './helpers/cli.ts';
import { request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { freePort } from './helpers/tls.ts';

const dockerfile = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
/** Instructions with their line continuations joined, as Docker reads them. */
const instructions = dockerfile.replace(/\\\n/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
const execForm = (keyword: string): string[] => {
  const line = instructions.filter((l) => l.startsWith(`${keyword} `)).at(-1);
  const json = line && /(\[.*\])\s*$/.exec(line)?.[1];
  if (!json) throw new Error(`the Dockerfile has no exec-form ${keyword}`);
  return JSON.parse(json) as string[];
};
/** The runtime stage: everything after the last FROM. */
const runtimeStage = instructions.slice(instructions.map((line) => line.startsWith('FROM ')).lastIndexOf(true));

let app: string;
let upstream: MlflowUpstream;
let running: RunningCli | undefined;

beforeAll(async () => {
  // /app in the image: package.json (ESM), node_modules, dist/ from `npm run build`, bin/.
  app = mkdtempSync(join(tmpdir(), 'mlgate-build-'));
  cpSync(join(PROJECT_ROOT, 'package.json'), join(app, 'package.json'));
  cpSync(join(PROJECT_ROOT, 'bin'), join(app, 'bin'), { recursive: true });
  symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
  // What `npm run build` runs (tsconfig.build.json), with only the output directory moved.
  const tsc = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(PROJECT_ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist')], { encoding: 'utf8', timeout: 120_000 });
  if (tsc.status !== 0) throw new Error(`the build failed:\n${tsc.stdout}\n${tsc.stderr}`);
  upstream = await startMlflowUpstream();
}, 180_000);

afterEach(async () => {
  if (running) await stopCli(running, 'SIGKILL').catch(() => {});
  running = undefined;
});
afterAll(async () => {
  await upstream?.close();
  if (app) rmSync(app, { recursive: true, force: true });
});

/** Runs a command line from the Dockerfile ("node ..." exec form) in /app, resolving with its status. */
function runInApp(argv: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; output: string }> {
  expect(argv[0]).toBe('node');
  const child = spawn(process.execPath, argv.slice(1), { cwd: app, env: { PATH: process.env.PATH, ...env } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => { output += chunk; });
  child.stderr.on('data', (chunk: Buffer) => { output += chunk; });
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, output })));
}

/** Starts the gateway exactly as the image's ENTRYPOINT + CMD, configured the Docker way (MLGATE_*). */
function startImageCommand(env: NodeJS.ProcessEnv): RunningCli {
  const [node, ...args] = [...execForm('ENTRYPOINT'), ...execForm('CMD')];
  expect(node).toBe('node');
  running = spawnNode(args, { cwd: app, env });
  return running;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((name) => join(dir, name)).filter((path) => statSync(path).isFile());
}

describe('npm run build (the Dockerfile\'s build stage)', () => {
  it('emits dist/cli/main.js and the hash worker beside the pool that loads it', () => {
    expect(existsSync(join(app, 'dist', 'cli', 'main.js'))).toBe(true);
    expect(existsSync(join(app, 'dist', 'auth', 'hash-worker.js'))).toBe(true);
    expect(readFileSync(join(app, 'dist', 'auth', 'hash-worker-pool.js'), 'utf8')).toContain("'./hash-worker.js'");
  });

  it('needs only production dependencies at run time (the runtime stage installs --omit=dev)', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const imported = new Set<string>();
    for (const file of filesUnder(join(app, 'dist')).filter((path) => path.endsWith('.js'))) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)) {
        const specifier = match[1]!;
        expect(specifier.endsWith('.ts'), `${file} imports ${specifier}`).toBe(false);
        if (specifier.startsWith('.') || isBuiltin(specifier)) continue;
        imported.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!);
      }
    }
    expect(imported.size).toBeGreaterThan(3);
    const notProduction = [...imported].filter((name) => !(name in pkg.dependencies));
    expect(notProduction, 'imported by dist/ but not in "dependencies"').toEqual([]);
  });

  it('runs `node dist/cli/main.js --help`', async () => {
    const help = await runInApp(['node', 'dist/cli/main.js', '--help'], {});
    expect(help.status).toBe(0);
    expect(help.output).toMatch(/serve\b/);
    expect(help.output).toMatch(/user\b/);
  });
});

describe('the image\'s commands against the compiled gateway', () => {
  it('first start: generates users and certificate, the printed password authenticates through the worker pool', async () => {
    const port = await freePort();
    const env = { MLGATE_PORT: String(port), MLGATE_HOST: '127.0.0.1', MLGATE_UPSTREAM: upstream.url };
    const cli = startImageCommand(env);
    const url = await listeningUrl(cli);
    expect(url).toBe(`https://127.0.0.1:${port}`);

    // Hashing the admin password (first start) and checking it (below) both run in the compiled worker.
    const { stderr } = cli.output();
    const password = /password:\s+(\S+)/.exec(stderr)?.[1];
    expect(password, stderr).toBeDefined();
    expect(stderr).toContain('Change it with: mlgate user passwd admin');
    const ca = readFileSync(join(app, 'certs', 'mlgate.crt'), 'utf8');
    const res = await request(`${url}/api/2.0/mlflow/experiments/search`, { ca, auth: ['admin', password!], method: 'POST', body: '{"max_results":10}' });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ experiments: [] });
    expect((await request(`${url}/api/2.0/mlflow/experiments/search`, { ca, auth: ['admin', 'wrong'] })).status).toBe(401);

    // The `mlgate` command the image puts on PATH is bin/mlgate.js, which runs the build.
    const list = await runInApp(['node', 'bin/mlgate.js', 'user', 'list'], env);
    expect(list.status, list.output).toBe(0);
    expect(list.output).toContain('admin');

    const healthcheck = execForm('HEALTHCHECK');
    const healthy = await runInApp(healthcheck, env);
    expect(healthy.status, healthy.output).toBe(0);

    expect(await stopCli(cli, 'SIGTERM')).toBe(0);
    expect((await runInApp(healthcheck, env)).status).not.toBe(0);
  });

  it('HEALTHCHECK follows the configuration to plain HTTP when TLS is off', async () => {
    const port = await freePort();
    const env = { MLGATE_PORT: String(port), MLGATE_HOST: '127.0.0.1', MLGATE_UPSTREAM: upstream.url, MLGATE_TLS_ENABLED: 'false' };
    const cli = startImageCommand(env);
    expect(await listeningUrl(cli)).toBe(`http://127.0.0.1:${port}`);
    const healthy = await runInApp(execForm('HEALTHCHECK'), env);
    expect(healthy.status, healthy.output).toBe(0);
    // ...and it really asks this gateway: told TLS is on, it gets no answer it accepts.
    expect((await runInApp(execForm('HEALTHCHECK'), { ...env, MLGATE_TLS_ENABLED: 'true' })).status).not.toBe(0);
    expect(await stopCli(cli, 'SIGTERM')).toBe(0);
  });
});

describe('Dockerfile and .dockerignore', () => {
  it('runs as a non-root user, exposes 8888 and keeps config/ and certs/ in volumes', () => {
    const user = runtimeStage.filter((line) => line.startsWith('USER ')).at(-1);
    expect(user).toBeDefined();
    expect(user!.split(/\s+/)[1]).not.toMatch(/^(root|0)(:|$)/);
    expect(runtimeStage).toContain('EXPOSE 8888');
    const volumes = runtimeStage.find((line) => line.startsWith('VOLUME '));
    expect(JSON.parse(volumes!.slice('VOLUME '.length)) as string[]).toEqual(expect.arrayContaining(['/app/config', '/app/certs']));
    expect(runtimeStage.some((line) => /^RUN npm ci\b/.test(line))).toBe(false); // deps come from the --omit=dev stage
    expect(instructions.some((line) => /^RUN npm ci --omit=dev\b/.test(line))).toBe(true);
  });

  it('lets into the build context exactly what the Dockerfile copies, never htpasswd files or keys', () => {
    const patterns = readFileSync(join(PROJECT_ROOT, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
    expect(patterns[0]).toBe('*'); // an allow-list, so new secrets in the checkout stay out by default
    const allowed = patterns.filter((p) => p.startsWith('!')).map((p) => p.slice(1).replace(/\/$/, ''));
    const copied = instructions.filter((line) => line.startsWith('COPY ') && !line.includes('--from=')).flatMap((line) => line.split(/\s+/).slice(1, -1));
    expect(copied.length).toBeGreaterThan(0);
    for (const source of copied) expect(allowed, `COPY ${source}`).toContain(source.replace(/^\.\//, '').replace(/\/$/, ''));
    for (const secretish of allowed) expect(secretish).not.toMatch(/^(config|certs)\b|\.key$|htpasswd/);
  });
});
