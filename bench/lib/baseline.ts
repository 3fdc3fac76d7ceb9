// --baseline: another revision of this repository, checked out in a git worktree in the workspace
// and built there, so its gateway runs as mlgate-baseline in the same rounds as this checkout's.
// On the 2-core VM the same target moved ±40% between runs minutes apart; within one run, the
// two take turns and drift falls on both.
import { existsSync } from 'node:fs';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { runToEnd } from './processes.ts';
import { REPO_ROOT, type Workspace } from './workspace.ts';

export interface Baseline {
  /** e.g. "mlgate @cc00f0a", for the table. */
  label: string;
  /** Its compiled CLI, run exactly as this checkout's dist/cli/main.js is. */
  main: string;
}

const worktreeOf = (ws: Workspace) => ws.path('baseline');

async function git(args: string[], timeoutMs = 60_000): Promise<string> {
  const result = await runToEnd(`git ${args[0]}`, 'git', args, { cwd: REPO_ROOT, timeoutMs });
  if (result.code !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.output.trim().slice(-500)}`);
  return result.stdout.trim();
}

/** The revision's short commit id; checked before anything is started, so a typo costs no set-up. */
export function resolveBaseline(revision: string): Promise<string> {
  return git(['rev-parse', '--verify', '--short', `${revision}^{commit}`]).catch(() => {
    throw new Error(`--baseline ${revision}: not a commit of ${REPO_ROOT}`);
  });
}

export async function buildBaseline(ws: Workspace, commit: string): Promise<Baseline> {
  const dir = worktreeOf(ws);
  await git(['worktree', 'add', '--detach', dir, commit]);
  // The build needs only tsc; the dependencies are this checkout's (a revision whose package.json
  // differs would need its own npm ci, which is not worth it for a before/after of a few commits).
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const build = await runToEnd('npm run build (baseline)', 'npm', ['run', 'build', '--silent'], { cwd: dir, timeoutMs: 180_000 });
  const main = join(dir, 'dist', 'cli', 'main.js');
  if (build.code !== 0 || !existsSync(main)) throw new Error(`npm run build of ${commit} failed: ${build.output.trim().slice(-500)}`);
  return { label: `mlgate @${commit}`, main };
}

/**
 * Unregisters and deletes the worktree, whether or not buildBaseline got far enough to add it; the
 * prune drops the entry should the directory be gone already (a removed workspace).
 */
export async function removeBaseline(ws: Workspace): Promise<void> {
  const dir = worktreeOf(ws);
  if (existsSync(dir)) await git(['worktree', 'remove', '--force', dir]).catch((err: Error) => process.stderr.write(`bench: ${err.message}\n`));
  await git(['worktree', 'prune']).catch((err: Error) => process.stderr.write(`bench: ${err.message}\n`));
}
