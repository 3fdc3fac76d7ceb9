// Parsing and editing whole htpasswd files.
//
// Format decisions (what nginx and Apache both accept, and safe where they differ):
// - `user:hash` splits on the FIRST ':'. The hash ends at the next ':'; anything
//   after it is a comment and is ignored. nginx documents `name:password:comment`
//   and Apache's mod_authn_file also stops the hash at the next ':'. Editing a
//   user keeps that trailing `:comment`.
// - Blank lines and lines whose first non-blank character is '#' are ignored.
// - CRLF is tolerated; a UTF-8 BOM at the start is ignored (and kept on edit).
// - Trailing spaces/tabs after a hash are dropped (Apache trims them; no hash
//   format contains them).
// - A user name with leading/trailing whitespace is a problem: Apache trims it,
//   nginx does not, so the "same" file would mean different users.
// - Duplicate users: the first line wins (nginx's behaviour), later ones are
//   reported. This holds even when the first line is refused or broken, so a
//   duplicate can never bring in a second password for a user.
// - Problem messages never quote a hash or an unparseable line: it could be a
//   password pasted in the wrong place.
import { randomBytes } from 'node:crypto';
import { open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import {
  detectScheme,
  hashFormatProblem,
  REFUSED_UNLESS_ALLOWED,
  WEAK_SCHEMES,
  type HashScheme,
} from './htpasswd-formats.ts';

export interface HtpasswdEntry { user: string; hash: string; scheme: HashScheme; line: number }
export interface HtpasswdProblem { line: number; message: string }
export interface ParsedHtpasswd {
  entries: Map<string, HtpasswdEntry>;
  problems: HtpasswdProblem[];
  /** Accepted but weak (MD5, SHA-1; also plaintext/DES when insecure hashes are allowed). */
  weakUsers: string[];
  /** Plaintext or DES entries left out because insecure hashes are not allowed. */
  refusedUsers: string[];
}

const MAX_USER_BYTES = 255;
const CONTROL_RE = /\p{Cc}/u;
const BOM = '\uFEFF';

/** Why `user` cannot be an htpasswd user name, or undefined if it can. */
export function userNameProblem(user: string): string | undefined {
  if (user.length === 0) return 'user name is empty';
  if (user.includes(':')) return "user name must not contain ':'";
  if (CONTROL_RE.test(user)) return 'user name contains a control character';
  if (user.trim() !== user) return 'user name has leading or trailing whitespace';
  if (user.startsWith('#')) return "user name must not start with '#' (the line would be a comment)";
  if (Buffer.byteLength(user, 'utf8') > MAX_USER_BYTES) return `user name is longer than ${MAX_USER_BYTES} bytes`;
  return undefined;
}

type LineParse =
  | { kind: 'skip' }
  | { kind: 'problem'; message: string; user?: string }
  | { kind: 'user'; user: string; hash: string };

/** One line without its terminator (a trailing '\r' is tolerated). */
function parseLine(raw: string): LineParse {
  const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  const trimmed = line.trim();
  if (trimmed === '' || trimmed.startsWith('#')) return { kind: 'skip' };
  const colon = line.indexOf(':');
  if (colon === -1) return { kind: 'problem', message: "line is not of the form user:hash (no ':' found)" };
  const user = line.slice(0, colon);
  const userProblem = userNameProblem(user);
  if (userProblem) return { kind: 'problem', message: userProblem };
  const rest = line.slice(colon + 1);
  const end = rest.indexOf(':');
  const hash = (end === -1 ? rest : rest.slice(0, end)).replace(/[ \t]+$/, '');
  if (CONTROL_RE.test(hash)) {
    return { kind: 'problem', user, message: `user ${JSON.stringify(user)}: password hash contains a control character` };
  }
  return { kind: 'user', user, hash };
}

export function parseHtpasswd(text: string, opts: { allowInsecureHashes: boolean }): ParsedHtpasswd {
  const result: ParsedHtpasswd = { entries: new Map(), problems: [], weakUsers: [], refusedUsers: [] };
  const firstLine = new Map<string, number>();
  const lines = (text.startsWith(BOM) ? text.slice(1) : text).split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const parsed = parseLine(lines[i]!);
    if (parsed.kind === 'skip') continue;
    const user = parsed.user;
    if (user !== undefined) {
      const first = firstLine.get(user);
      if (first !== undefined) {
        result.problems.push({ line, message: `duplicate user ${JSON.stringify(user)} (first defined on line ${first}); this line is ignored` });
        continue;
      }
      firstLine.set(user, line);
    }
    if (parsed.kind === 'problem') {
      result.problems.push({ line, message: parsed.message });
      continue;
    }
    const { user: name, hash } = parsed;
    const scheme = detectScheme(hash);
    const formatProblem = hashFormatProblem(hash);
    // An unknown scheme ("$y$...") also detects as 'plain'; it is a problem,
    // not a refusal, because allowing insecure hashes would not make it work.
    const unknownScheme = scheme === 'plain' && formatProblem !== undefined;
    if (REFUSED_UNLESS_ALLOWED.has(scheme) && !opts.allowInsecureHashes && !unknownScheme) {
      result.refusedUsers.push(name);
      continue;
    }
    if (formatProblem) {
      result.problems.push({ line, message: `user ${JSON.stringify(name)}: ${formatProblem}` });
      continue;
    }
    if (WEAK_SCHEMES.has(scheme) || REFUSED_UNLESS_ALLOWED.has(scheme)) result.weakUsers.push(name);
    result.entries.set(name, { user: name, hash, scheme, line });
  }
  return result;
}

// ---- editing -------------------------------------------------------------

/** Byte offsets of one line: content is [start, end), terminator up to next. */
interface RawLine { start: number; end: number; next: number; user: string | undefined }

function splitRawLines(buf: Buffer): RawLine[] {
  const lines: RawLine[] = [];
  // Offsets are bytes so that untouched lines are copied byte for byte, even
  // if they are not valid UTF-8.
  let start = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    const next = nl === -1 ? buf.length : nl + 1;
    const contentEnd = nl === -1 ? buf.length : nl;
    const end = contentEnd > start && buf[contentEnd - 1] === 0x0d ? contentEnd - 1 : contentEnd;
    const parsed = parseLine(buf.toString('utf8', start, end));
    lines.push({ start, end, next, user: parsed.kind === 'skip' ? undefined : parsed.user });
    start = next;
  }
  return lines;
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function assertUserName(user: string): void {
  const problem = userNameProblem(user);
  if (problem) throw new Error(`invalid user name ${JSON.stringify(user)}: ${problem}`);
}

function shellWord(s: string): string {
  return /^[A-Za-z0-9_.@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** User names in file order, once each. A missing file has no users. */
export async function readHtpasswdUsers(path: string): Promise<string[]> {
  const buf = await readIfExists(path);
  if (!buf) return [];
  const users = new Set<string>();
  for (const line of splitRawLines(buf)) if (line.user !== undefined) users.add(line.user);
  return [...users];
}

/**
 * Sets `user`'s hash: replaces the user's first line in place (keeping any
 * `:comment`) and drops later duplicates of that user, or appends a line.
 * Every other byte of the file is kept. Creates the file (mode 0600) if missing.
 */
export async function setHtpasswdUser(
  path: string,
  user: string,
  hash: string,
  opts: { mustExist?: boolean; mustNotExist?: boolean },
): Promise<void> {
  assertUserName(user);
  if (hash === '' || hash.includes(':') || CONTROL_RE.test(hash) || hash.trim() !== hash) {
    throw new Error('password hash must be non-empty and contain no colon, whitespace at the ends, or control characters');
  }
  const formatProblem = hashFormatProblem(hash);
  if (formatProblem) throw new Error(`refusing to write an unusable hash for ${JSON.stringify(user)}: ${formatProblem}`);

  const target = await resolveTarget(path);
  const buf = await readIfExists(target);
  const lines = buf ? splitRawLines(buf) : [];
  const mine = lines.filter((l) => l.user === user);
  if (opts.mustExist && mine.length === 0) {
    throw new Error(`user ${JSON.stringify(user)} does not exist in ${path}; use "mlgate user add ${shellWord(user)}"`);
  }
  if (opts.mustNotExist && mine.length > 0) {
    throw new Error(`user ${JSON.stringify(user)} already exists in ${path}; use "mlgate user passwd ${shellWord(user)}"`);
  }

  const newLine = Buffer.from(`${user}:${hash}`, 'utf8');
  let out: Buffer;
  if (buf && mine.length > 0) {
    const first = mine[0]!;
    const content = buf.subarray(first.start, first.end);
    const userEnd = content.indexOf(0x3a);
    const commentAt = content.indexOf(0x3a, userEnd + 1);
    const comment = commentAt === -1 ? Buffer.alloc(0) : content.subarray(commentAt);
    const parts: Buffer[] = [buf.subarray(0, first.start), newLine, comment];
    let pos = first.end;
    for (const dup of mine.slice(1)) {
      parts.push(buf.subarray(pos, dup.start));
      pos = dup.next;
    }
    parts.push(buf.subarray(pos));
    out = Buffer.concat(parts);
  } else {
    const existing = buf ?? Buffer.alloc(0);
    const eol = usesCrlf(existing) ? '\r\n' : '\n';
    const needsBreak = existing.length > 0 && existing[existing.length - 1] !== 0x0a;
    out = Buffer.concat([existing, Buffer.from(needsBreak ? eol : ''), newLine, Buffer.from(eol)]);
  }
  await writeFileAtomic(target, out, buf !== undefined);
}

/** Removes every line of `user`. False (file untouched) if there was none. */
export async function removeHtpasswdUser(path: string, user: string): Promise<boolean> {
  assertUserName(user);
  const target = await resolveTarget(path);
  const buf = await readIfExists(target);
  if (!buf) return false;
  const mine = splitRawLines(buf).filter((l) => l.user === user);
  if (mine.length === 0) return false;
  const parts: Buffer[] = [];
  let pos = 0;
  for (const line of mine) {
    parts.push(buf.subarray(pos, line.start));
    pos = line.next;
  }
  parts.push(buf.subarray(pos));
  await writeFileAtomic(target, Buffer.concat(parts), true);
  return true;
}

function usesCrlf(buf: Buffer): boolean {
  const nl = buf.indexOf(0x0a);
  return nl > 0 && buf[nl - 1] === 0x0d;
}

/** Edit the file a symlink points to, rather than replacing the link with a file. */
async function resolveTarget(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path;
    throw err;
  }
}

/**
 * Temp file in the same directory (so rename is atomic), same mode and owner as
 * the file it replaces (so a root-run CLI does not lock the gateway's user out),
 * fsync, rename, then fsync the directory so the rename survives a crash.
 */
export async function writeFileAtomic(target: string, data: Buffer, existed: boolean): Promise<void> {
  const dir = dirname(target);
  let mode = 0o600;
  let owner: { uid: number; gid: number } | undefined;
  if (existed) {
    const st = await stat(target);
    mode = st.mode & 0o7777;
    owner = { uid: st.uid, gid: st.gid };
  }
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fh;
  try {
    fh = await open(tmp, 'wx', mode); // 'x': never follow a planted symlink
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`cannot write ${target}: directory ${dir} does not exist`);
    throw err;
  }
  try {
    await fh.chmod(mode); // open()'s mode is filtered by the umask
    if (owner && (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.())) {
      await fh.chown(owner.uid, owner.gid).catch(() => {}); // only root may; otherwise keep ours
    }
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, target);
  } catch (err) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the data itself is synced.
  }
}
