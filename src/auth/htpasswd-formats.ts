// Pure functions on a single htpasswd hash string. No file I/O here: verifyHash
// is CPU-heavy and is meant to run inside a worker thread.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import aprMd5Module from 'apache-md5';
import { encrypt as shaCrypt } from 'unixcrypt';

export type HashScheme =
  | 'bcrypt'
  | 'apr1'
  | 'sha1'
  | 'ssha'
  | 'sha256-crypt'
  | 'sha512-crypt'
  | 'md5-crypt'
  | 'des-crypt'
  | 'plain';

/** Accepted, but the operator should be told to rehash. */
export const WEAK_SCHEMES: ReadonlySet<HashScheme> = new Set<HashScheme>(['apr1', 'md5-crypt', 'sha1', 'ssha']);

/** Refused unless the config explicitly allows insecure hashes. */
export const REFUSED_UNLESS_ALLOWED: ReadonlySet<HashScheme> = new Set<HashScheme>(['plain', 'des-crypt']);

// apache-md5 is CommonJS (`module.exports = fn`) but its typings declare an
// ES default export, so under NodeNext TypeScript types the default import as
// the namespace. At runtime the default import is the function itself.
const aprMd5 = aprMd5Module as unknown as (password: string, salt?: string) => string;

// htpasswd -B accepts costs 4..17. A file is admin-controlled, but a typo such as
// cost 31 would pin a worker for hours on every login attempt, so both hashing
// and verification stay inside htpasswd's range.
const BCRYPT_MIN_COST = 4;
const BCRYPT_MAX_COST = 17;

// glibc accepts up to 999,999,999 rounds; unixcrypt allocates an array of that
// length, so an absurd value would exhaust memory. 1e6 is 200x the default.
const SHA_CRYPT_MAX_ROUNDS = 1_000_000;

// bcrypt only reads the first 72 bytes of the password.
const BCRYPT_MAX_PASSWORD_BYTES = 72;

const B64CRYPT = '[./0-9A-Za-z]';
const BCRYPT_RE = new RegExp(`^\\$2[aby]\\$(\\d\\d)\\$${B64CRYPT}{53}$`);
const MD5_RE = new RegExp(`^\\$(?:apr1|1)\\$[^$:]{0,8}\\$${B64CRYPT}{22}$`);
const SHA_CRYPT_RE = new RegExp(`^\\$([56])\\$(?:rounds=(\\d{1,9})\\$)?${B64CRYPT}{0,16}\\$(${B64CRYPT}+)$`);
const DES_RE = new RegExp(`^${B64CRYPT}{13}$`);
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;
// Something that announces a scheme we do not implement ($y$ yescrypt,
// $argon2id$, $2x$, {SMD5}, ...). Treating it as a plaintext password would let
// anyone who has read the hash log in with it.
const UNKNOWN_SCHEME_RE = /^(?:\$[0-9A-Za-z.-]+\$|\{[A-Za-z0-9.-]+\})/;

export function detectScheme(hash: string): HashScheme {
  if (/^\$2[aby]\$/.test(hash)) return 'bcrypt';
  if (hash.startsWith('$apr1$')) return 'apr1';
  if (hash.startsWith('$1$')) return 'md5-crypt';
  if (hash.startsWith('$5$')) return 'sha256-crypt';
  if (hash.startsWith('$6$')) return 'sha512-crypt';
  if (hash.startsWith('{SHA}')) return 'sha1';
  if (hash.startsWith('{SSHA}')) return 'ssha';
  // A 13-character plaintext password made only of [./0-9A-Za-z] is
  // indistinguishable from DES crypt; Apache has the same ambiguity.
  if (DES_RE.test(hash)) return 'des-crypt';
  return 'plain';
}

/**
 * Why a hash can never verify (malformed, unsupported, or too expensive), or
 * undefined if it is usable. Lets the file loader report a bad line at startup
 * instead of the user discovering it as a failed login. Never echoes the hash.
 */
export function hashFormatProblem(hash: string): string | undefined {
  if (hash === '') return 'empty password hash';
  const scheme = detectScheme(hash);
  switch (scheme) {
    case 'bcrypt': {
      const m = BCRYPT_RE.exec(hash);
      if (!m) return 'malformed bcrypt hash';
      const cost = Number(m[1]);
      if (cost < BCRYPT_MIN_COST || cost > BCRYPT_MAX_COST) {
        return `bcrypt cost ${cost} is outside the supported range ${BCRYPT_MIN_COST}..${BCRYPT_MAX_COST}`;
      }
      return undefined;
    }
    case 'apr1':
    case 'md5-crypt':
      return MD5_RE.test(hash) ? undefined : `malformed ${scheme} hash`;
    case 'sha256-crypt':
    case 'sha512-crypt': {
      const m = SHA_CRYPT_RE.exec(hash);
      if (!m || m[3]!.length !== (m[1] === '5' ? 43 : 86)) return `malformed ${scheme} hash`;
      if (m[2] !== undefined && Number(m[2]) > SHA_CRYPT_MAX_ROUNDS) {
        return `${scheme} rounds=${m[2]} exceeds the supported maximum of ${SHA_CRYPT_MAX_ROUNDS}`;
      }
      return undefined;
    }
    case 'sha1': {
      const b64 = hash.slice('{SHA}'.length);
      return BASE64_RE.test(b64) && Buffer.from(b64, 'base64').length === 20 ? undefined : 'malformed {SHA} hash';
    }
    case 'ssha': {
      const b64 = hash.slice('{SSHA}'.length);
      return BASE64_RE.test(b64) && Buffer.from(b64, 'base64').length > 20 ? undefined : 'malformed {SSHA} hash';
    }
    case 'des-crypt':
      // No maintained pure-JS DES crypt exists; see verifyHash.
      return 'DES crypt hashes are not supported (they also ignore everything after 8 characters); set a new password';
    case 'plain':
      if (hash.startsWith('{PLAIN}')) return undefined;
      return UNKNOWN_SCHEME_RE.test(hash) ? 'unsupported password hash scheme' : undefined;
  }
}

/** Constant-time equality; unequal lengths still cost one comparison. */
function equalBytes(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

function equalStrings(a: string, b: string): boolean {
  return equalBytes(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function sha1(...parts: Buffer[]): Buffer {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * True iff `password` matches `hash`. Never throws for malformed input: a bad
 * hash simply does not verify. Does not apply policy (weak/refused schemes):
 * the caller decides which entries it is willing to check.
 */
export async function verifyHash(hash: string, password: string): Promise<boolean> {
  if (typeof hash !== 'string' || typeof password !== 'string') return false;
  if (hashFormatProblem(hash) !== undefined) return false;
  const pw = Buffer.from(password, 'utf8');
  try {
    switch (detectScheme(hash)) {
      case 'bcrypt':
        // Recompute with the stored salt and compare ourselves: bcryptjs keeps
        // the $2a$/$2b$/$2y$ minor it was given, so the strings line up.
        return equalStrings(await bcrypt.hash(password, hash.slice(0, 29)), hash);
      case 'apr1':
      case 'md5-crypt':
        // apache-md5 feeds JS strings through 'ascii' (latin1) encoding and
        // counts UTF-16 units, which breaks non-ASCII passwords. Handing it the
        // UTF-8 bytes as a latin1 string makes it hash the real bytes, as
        // htpasswd and openssl do.
        return equalStrings(aprMd5(pw.toString('latin1'), hash), hash);
      case 'sha256-crypt':
      case 'sha512-crypt':
        return equalStrings(shaCrypt(password, hash.slice(0, hash.lastIndexOf('$'))), hash);
      case 'sha1':
        return equalBytes(sha1(pw), Buffer.from(hash.slice('{SHA}'.length), 'base64'));
      case 'ssha': {
        const raw = Buffer.from(hash.slice('{SSHA}'.length), 'base64');
        const salt = raw.subarray(20);
        return equalBytes(sha1(pw, salt), raw.subarray(0, 20));
      }
      case 'des-crypt':
        // Unreachable (hashFormatProblem refuses it), kept for exhaustiveness.
        return false;
      case 'plain': {
        const stored = hash.startsWith('{PLAIN}') ? hash.slice('{PLAIN}'.length) : hash;
        // Compare digests so the stored password's length does not leak.
        return equalBytes(
          createHash('sha256').update(stored, 'utf8').digest(),
          createHash('sha256').update(pw).digest(),
        );
      }
    }
  } catch {
    return false;
  }
}

/**
 * bcrypt hash in the form `htpasswd -B` writes (`$2y$`). bcryptjs emits `$2b$`;
 * 2b and 2y are the same algorithm, only the label differs.
 */
export async function hashPassword(password: string, cost: number): Promise<string> {
  if (!Number.isInteger(cost) || cost < BCRYPT_MIN_COST || cost > BCRYPT_MAX_COST) {
    throw new Error(`bcrypt cost must be an integer from ${BCRYPT_MIN_COST} to ${BCRYPT_MAX_COST}, got ${cost}`);
  }
  if (password.length === 0) throw new Error('password must not be empty');
  // htpasswd silently truncates; refusing is kinder than a password whose tail
  // is ignored without the user knowing.
  if (Buffer.byteLength(password, 'utf8') > BCRYPT_MAX_PASSWORD_BYTES) {
    throw new Error(`password is longer than ${BCRYPT_MAX_PASSWORD_BYTES} bytes; bcrypt would ignore the rest`);
  }
  const hash = await bcrypt.hash(password, await bcrypt.genSalt(cost));
  return hash.replace(/^\$2[ab]\$/, '$2y$');
}

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomCryptChars(length: number): string {
  return Array.from(randomBytes(length), (byte) => BCRYPT_ALPHABET[byte & 63]).join('');
}

/**
 * A well-formed bcrypt hash that no password matches, checked for unknown users so they cost the
 * same time as real ones. Random characters rather than a real hash: nothing to compute at start-up.
 */
export function unmatchableBcryptHash(cost: number): string {
  return `$2y$${String(cost).padStart(2, '0')}$${randomCryptChars(53)}`;
}

/**
 * What verifying a hash costs, as a key: its scheme, with the bcrypt cost or the SHA-crypt rounds
 * (apr1, MD5-crypt, SHA-1 and plaintext have no cost of their own). Hashes with the same key take
 * the same time to check.
 */
export function hashCostKey(hash: string): string {
  const scheme = detectScheme(hash);
  switch (scheme) {
    case 'bcrypt':
      return `bcrypt:${Number(BCRYPT_RE.exec(hash)?.[1])}`;
    case 'sha256-crypt':
    case 'sha512-crypt':
      return `${scheme}:${SHA_CRYPT_RE.exec(hash)?.[2] ?? 5000}`;
    default:
      return scheme;
  }
}

/**
 * A well-formed hash that costs what `hash` costs to verify (the same scheme, bcrypt cost or
 * SHA-crypt rounds) with a random salt and digest, so that no password matches it; checked for
 * unknown users so they take as long as known ones. Undefined for a hash that is not usable.
 */
export function unmatchableHashLike(hash: string): string | undefined {
  if (hashFormatProblem(hash) !== undefined) return undefined;
  const scheme = detectScheme(hash);
  switch (scheme) {
    case 'bcrypt':
      return unmatchableBcryptHash(Number(BCRYPT_RE.exec(hash)![1]));
    case 'apr1':
    case 'md5-crypt':
      return `${scheme === 'apr1' ? '$apr1$' : '$1$'}${randomCryptChars(8)}$${randomCryptChars(22)}`;
    case 'sha256-crypt':
    case 'sha512-crypt': {
      const rounds = SHA_CRYPT_RE.exec(hash)![2];
      const id = scheme === 'sha256-crypt' ? '5' : '6';
      return `$${id}$${rounds !== undefined ? `rounds=${rounds}$` : ''}${randomCryptChars(16)}$${randomCryptChars(id === '5' ? 43 : 86)}`;
    }
    case 'sha1':
      return `{SHA}${randomBytes(20).toString('base64')}`;
    case 'ssha':
      return `{SSHA}${randomBytes(Buffer.from(hash.slice('{SSHA}'.length), 'base64').length).toString('base64')}`;
    case 'plain':
      return `{PLAIN}${randomBytes(24).toString('base64')}`;
    case 'des-crypt':
      return undefined;
  }
}
