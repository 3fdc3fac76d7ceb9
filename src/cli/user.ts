import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { isDefaultHtpasswd, shellWord } from '../auth/bootstrap-admin.ts';
import { readHtpasswdUsers, removeHtpasswdUser, setHtpasswdUser, userNameProblem } from '../auth/htpasswd-file.ts';
import { hashPassword } from '../auth/htpasswd-formats.ts';
import type { Config } from '../config/schema.ts';
import { addConfigFlags } from './config-flags.ts';
import { readNewPassword } from './read-password.ts';
import { loadConfigOrExit } from './serve.ts';

type Options = Record<string, unknown>;

/** `mlgate user add|passwd|remove|list`: edits auth.htpasswd in place; a running gateway reloads it. */
export function registerUser(program: Command): void {
  const user = program.command('user').description('add, change and remove the users in the htpasswd file (auth.htpasswd)');

  addConfigFlags(user.command('add').argument('<name>', 'user name'), ['htpasswd'])
    .description('add a user; the password is asked for twice, or read from standard input')
    .action(async (name: string, options: Options) => {
      const { auth } = loadConfigOrExit(options).config;
      assertUserName(name);
      if ((await readHtpasswdUsers(auth.htpasswd)).includes(name)) {
        throw new Error(`user "${name}" already exists in ${auth.htpasswd}; "user passwd ${name}" changes the password`);
      }
      const created = !existsSync(auth.htpasswd);
      await setPassword(auth, name, { mustNotExist: true });
      console.log(`added user "${name}" to ${auth.htpasswd}`);
      // A mistyped path makes a new file rather than failing; saying so lets the typo be seen.
      if (created) process.stderr.write(`note: ${auth.htpasswd} did not exist; it was created (mode 0600)\n`);
    });

  addConfigFlags(user.command('passwd').argument('<name>', 'user name'), ['htpasswd'])
    .description("change a user's password; asked for twice, or read from standard input")
    .action(async (name: string, options: Options) => {
      const { auth } = loadConfigOrExit(options).config;
      assertUserName(name);
      if (!(await readHtpasswdUsers(auth.htpasswd)).includes(name)) throw new Error(notFound(name, auth.htpasswd));
      await setPassword(auth, name, { mustExist: true });
      console.log(`changed the password of "${name}" in ${auth.htpasswd}`);
    });

  addConfigFlags(user.command('remove').argument('<name>', 'user name'), ['htpasswd'])
    .description('remove a user')
    .action(async (name: string, options: Options) => {
      const { auth } = loadConfigOrExit(options).config;
      assertUserName(name);
      if (!(await removeHtpasswdUser(auth.htpasswd, name))) throw new Error(notFound(name, auth.htpasswd));
      console.log(`removed user "${name}" from ${auth.htpasswd}`);
    });

  addConfigFlags(user.command('list'), ['htpasswd'])
    .description('print the user names, one per line')
    .action(async (options: Options) => {
      const { auth } = loadConfigOrExit(options).config;
      if (!existsSync(auth.htpasswd)) throw new Error(missingFile(auth.htpasswd));
      const users = await readHtpasswdUsers(auth.htpasswd);
      for (const name of users) console.log(name);
      if (users.length === 0) process.stderr.write(`no users in ${auth.htpasswd}\n`);
    });
}

/** Checked before the password is asked for, so nobody types one twice only to be refused. */
function assertUserName(name: string): void {
  const problem = userNameProblem(name);
  if (problem) throw new Error(`${problem}; nothing was changed`);
}

function notFound(name: string, file: string): string {
  if (!existsSync(file)) return `${missingFile(file)}; nothing was changed`;
  return `user "${name}" does not exist in ${file}; nothing was changed`;
}

/** An empty list would read as "no users" when the path is what is wrong (or the gateway never ran). */
function missingFile(file: string): string {
  return isDefaultHtpasswd(file)
    ? `there is no htpasswd file at ${file} yet: the first "mlgate serve" creates it with an "admin" user, or "mlgate user add NAME" creates it now`
    : `${file} does not exist (check --htpasswd or auth.htpasswd; "mlgate user add NAME --htpasswd ${shellWord(file)}" creates it)`;
}

async function setPassword(auth: Config['auth'], name: string, expect: { mustExist?: boolean; mustNotExist?: boolean }): Promise<void> {
  const password = await readNewPassword(name);
  if (password === '') throw new Error('the password is empty; nothing was changed');
  const hash = await hashPassword(password, auth.bcryptCost);
  await mkdir(dirname(auth.htpasswd), { recursive: true });
  await setHtpasswdUser(auth.htpasswd, name, hash, expect);
}
