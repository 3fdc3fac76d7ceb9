// mlgate installed as a command from a clone: `npm pack` (its prepack builds dist/) and
// `npm install -g` of the tarball into a prefix of the test's own, then the `mlgate` that puts on
// the PATH, run from directories that have nothing to do with the clone. The clone is a copy of
// this checkout's files as git sees them, so the pack never touches this checkout's dist/.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { listeningUrl, PROJECT_ROOT, spawnNode, stopCli, type RunningCli } from './helpers/cli.ts';
import { request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

/** npm's own settings from a surrounding `npm test` (its prefix, its cache) must not steer these commands. */
const npmEnv: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|MLGATE_)/i.test(name))),
  // The installed command's shebang is `/usr/bin/env node`: this node, whatever else is on the PATH.
  PATH: [dirname(process.execPath), process.env.PATH].join(delimiter),
  npm_config_update_notifier: 'false',
  npm_config_fund: 'false',
  npm_config_audit: 'false',
};
/** What keeps the install from happening on a machine without the registry: a reason to skip, not a failure. */
const OFFLINE = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH)\b/;

let work: string;
let tarballFiles: string[];
let mlgate: string;
let offline: string | undefined;
let upstream: MlflowUpstream;
let running: RunningCli | undefined;

function run(command: string, args: string[], cwd: string, timeout = 120_000) {
  const result = spawnSync(command, args, { cwd, env: npmEnv, encoding: 'utf8', timeout });
  return { status: result.status, stdout: result.stdout ?? '', stderr: `${result.stderr ?? ''}${result.error ?? ''}` };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mlgate-installed-'));
  // A clone: the files git tracks or would (this checkout's edits included), with the dev
  // dependencies the build needs; `npm install -g .` would link to it rather than copy it.
  const clone = join(work, 'clone');
  const listed = run('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], PROJECT_ROOT);
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  for (const file of listed.stdout.split('\0').filter((name) => name && existsSync(join(PROJECT_ROOT, name)))) {
    mkdirSync(dirname(join(clone, file)), { recursive: true });
    cpSync(join(PROJECT_ROOT, file), join(clone, file));
  }
  symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir');

  const pack = run('npm', ['pack', '--json', '--pack-destination', work], clone);
  if (pack.status !== 0) throw new Error(`npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
  const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  tarballFiles = packed!.files.map((file) => file.path).sort();

  const prefix = join(work, 'prefix');
  const install = run('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', join(work, packed!.filename)], work);
  if (install.status !== 0) {
    if (!OFFLINE.test(install.stderr)) throw new Error(`npm install -g failed:\n${install.stdout}\n${install.stderr}`);
    offline = `the npm registry is out of reach for the production dependencies (${OFFLINE.exec(install.stderr)![1]})`;
  }
  mlgate = join(prefix, 'bin', 'mlgate');
  upstream = await startMlflowUpstream();
}, 180_000);

afterEach(async () => {
  if (running) await stopCli(running, 'SIGKILL').catch(() => {});
  running = undefined;
});
afterAll(async () => {
  await upstream?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A directory of its own, away from the clone, the prefix and each other. */
function elsewhere(): string {
  return mkdtempSync(join(work, 'somewhere-'));
}

function needsInstall(context: TestContext): void {
  if (offline) context.skip(offline);
}

/** `mlgate serve` over plain HTTP on a free port, as an installed command started by hand. */
async function serve(cwd: string, ...args: string[]): Promise<string> {
  running = spawnNode([mlgate, 'serve', '--no-tls', '--host', '127.0.0.1', '--port', '0', '--upstream', upstream.url, ...args], { cwd, env: npmEnv });
  return listeningUrl(running);
}

describe('npm pack', () => {
  it('carries the build and what runs it, and nothing from the checkout besides', () => {
    expect(tarballFiles).toEqual(expect.arrayContaining(['package.json', 'README.md', 'bin/mlgate.js', 'dist/cli/main.js', 'dist/auth/hash-worker.js']));
    const unexpected = tarballFiles.filter((path) => !/^(package\.json|README\.md|bin\/mlgate\.js|dist\/.+\.js)$/.test(path));
    expect(unexpected).toEqual([]);
  });
});

describe('the installed mlgate command', () => {
  it('--help from another directory', (context) => {
    needsInstall(context);
    const help = run(mlgate, ['--help'], elsewhere(), 30_000);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/\bserve\b/);
    expect(help.stdout).toMatch(/--dir <path>/);
  });

  it('first start without --dir: its files go where it started, and it says where', async (context) => {
    needsInstall(context);
    const here = elsewhere();
    const url = await serve(here);
    const { stderr } = running!.output();
    const password = /password:\s+(\S+)/.exec(stderr)?.[1];
    expect(password, stderr).toBeDefined();
    expect(stderr).toContain('Change it with: mlgate user passwd admin'); // an installed copy, not a checkout
    expect(stderr).toContain(`mlgate: first start: config/htpasswd and its other files are in ${here}, the directory it was started in;`);
    expect(readdirSync(join(here, 'config'))).toContain('htpasswd');
    const search = `${url}/api/2.0/mlflow/experiments/search`;
    expect((await request(search, { method: 'POST', body: '{"max_results":1}' })).status).toBe(401);
    expect((await request(search, { method: 'POST', body: '{"max_results":1}', auth: ['admin', password!] })).status).toBe(200);
    expect(await stopCli(running!)).toBe(0);

    // The second start finds them; nothing new to announce.
    await serve(here);
    expect(running!.output().stderr).not.toContain('mlgate: first start:');
    expect(running!.output().stderr).not.toContain('password:');
  });

  it('--dir: creates the directory and keeps everything there, with workers too', async (context) => {
    needsInstall(context);
    const here = elsewhere();
    const url = await serve(here, '--dir', 'state', '--workers', '2');
    const { stderr } = running!.output();
    expect(stderr).toContain(`mlgate: created ${join(here, 'state')} (named by --dir)`);
    expect(stderr).not.toContain('first start:'); // --dir said where
    expect(readdirSync(join(here, 'state', 'config'))).toContain('htpasswd');
    expect(readdirSync(here)).toEqual(['state']); // a worker resolving "state" again would have made state/state
    expect(readdirSync(join(here, 'state')).sort()).toEqual(['config']);
    expect((await request(`${url}/-/healthz`)).status).toBe(200);
    expect(await stopCli(running!)).toBe(0);

    // The user commands find the same file from anywhere, by --dir or MLGATE_HOME.
    const list = run(mlgate, ['user', 'list'], elsewhere(), 30_000);
    expect(list.stdout).not.toContain('admin');
    const listed = spawnSync(mlgate, ['user', 'list'], { cwd: elsewhere(), env: { ...npmEnv, MLGATE_HOME: join(here, 'state') }, encoding: 'utf8' });
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('admin');
  });

  // V8 sizes its heap before any code runs, so the flag can only come from the command line: the
  // command's shebang (`env -S node --max-semi-space-size=8`) gives it, and node:cluster hands the
  // primary's to its workers. Started as a user types it, not as `node <file>`, which skips the shebang.
  it('runs with the young generation bounded (--max-semi-space-size=8), in its workers too', async (context) => {
    needsInstall(context);
    if (process.platform !== 'linux') context.skip('reads the command lines from /proc');
    const child = spawn(mlgate, ['serve', '--no-tls', '--host', '127.0.0.1', '--port', '0', '--upstream', upstream.url, '--workers', '2'], { cwd: elsewhere(), env: npmEnv });
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => { output += chunk; });
      child.stderr.on('data', (chunk: Buffer) => { output += chunk; });
      const argsOf = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const workers = () => readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      await expect.poll(() => (output.match(/"msg":"mlgate listening"/g) ?? []).length, { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
      expect(argsOf(child.pid!), output).toContain('--max-semi-space-size=8');
      expect(workers()).toHaveLength(2);
      for (const pid of workers()) expect(argsOf(pid)).toContain('--max-semi-space-size=8');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
