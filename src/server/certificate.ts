import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.ts';

export interface CertificatePaths {
  cert: string;
  key: string;
}

export const SELF_SIGNED_CERT = 'mlgate.crt';
export const SELF_SIGNED_KEY = 'mlgate.key';

/** A checkout runs the CLI through npm (npm start); an installed copy or the image has `mlgate` on the PATH. */
const MLGATE = existsSync(fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url))) ? 'npm run mlgate --' : 'mlgate';
/** What start-up and the SNI warning tell users to run; the running gateway picks the new file up by itself. */
export const ADD_NAME_COMMAND = `${MLGATE} cert generate --host NAME --force`;
/** Re-makes the self-signed certificate for this machine's current names, keeping its key and other names. */
export const REMAKE_COMMAND = `${MLGATE} cert generate --force`;

/** "[::1]" is how an IPv6 address is written in a URL; certificates hold the bare address. */
function bareName(name: string): string {
  return name.trim().replace(/^\[(.*)\]$/, '$1');
}

/** One spelling per name, so "FD00:0:0:0:0:0:0:5" (how X.509 prints it) and "fd00::5" are one address. */
function nameKey(name: string): string {
  const bare = bareName(name);
  return isIP(bare) === 6 ? new URL(`http://[${bare}]`).hostname.slice(1, -1) : bare.toLowerCase();
}

function uniqueNames(names: readonly string[]): string[] {
  const seen = new Map<string, string>();
  for (const name of names.map(bareName).filter(Boolean)) if (!seen.has(nameKey(name))) seen.set(nameKey(name), isIP(name) ? nameKey(name) : name);
  return [...seen.values()];
}

/**
 * The addresses other machines reach this one by. Link-local ones (fe80::/10, 169.254.0.0/16) are
 * left out: a URL needs a zone index for fe80:: and both change with the link, so no client pins them.
 */
function machineAddresses(): string[] {
  return Object.values(networkInterfaces()).flat()
    .filter((nic) => nic !== undefined && !nic.internal)
    .map((nic) => nic!.address)
    .filter((address) => !/^fe[89ab][0-9a-f]:/i.test(address) && !address.startsWith('169.254.'));
}

/** The names a self-signed certificate covers: loopback, this machine's name and addresses, and whatever the config adds. */
export function selfSignedNames(extra: readonly string[]): string[] {
  return uniqueNames(['localhost', '127.0.0.1', '::1', hostname(), ...machineAddresses(), ...extra]);
}

/** The DNS names and IP addresses in a certificate's subjectAltName (IPv6 in its short form). */
export function certificateNames(certificate: X509Certificate): string[] {
  const names: string[] = [];
  // Node quotes an entry holding a comma or quote; no name a certificate can usefully cover does.
  for (const entry of (certificate.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4));
    else if (entry.startsWith('IP Address:')) names.push(nameKey(entry.slice(11)));
  }
  return names;
}

function covers(certificate: X509Certificate, name: string): boolean {
  return (isIP(name) ? certificate.checkIP(name) : certificate.checkHost(name)) !== undefined;
}

type KeyChoice = { keyType: 'ec'; curve: 'P-256' | 'P-384' | 'P-521' } | { keyType: 'rsa' };
const CURVES = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' } as const;

/** The key already in keyFile, if selfsigned can sign with it (RSA or a NIST curve; not Ed25519). */
function existingKey(keyFile: string): { key: KeyObject; choice: KeyChoice } | undefined {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile));
  } catch {
    return undefined;
  }
  if (key.asymmetricKeyType === 'rsa') return { key, choice: { keyType: 'rsa' } };
  const curve = CURVES[key.asymmetricKeyDetails?.namedCurve as keyof typeof CURVES];
  return key.asymmetricKeyType === 'ec' && curve ? { key, choice: { keyType: 'ec', curve } } : undefined;
}

/**
 * Writes a self-signed certificate that clients can pin directly (MLFLOW_TRACKING_SERVER_CERT_PATH,
 * Python requests' verify=): it is its own CA, so it carries basicConstraints CA and serverAuth.
 * A private key already at paths.key is kept, so whoever holds the key file (a backup, a second
 * gateway) stays in step; only a missing or unusable key is replaced by a new P-256 one.
 */
export async function generateSelfSignedCertificate(paths: CertificatePaths, names: readonly string[], days = 825): Promise<{ keptKey: boolean }> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 86_400_000);
  const dnsName = names.find((name) => !isIP(name)) ?? 'localhost';
  const kept = existingKey(paths.key);
  // Loaded only when a certificate is made: its X.509 libraries cost ~15 MB of every process.
  const { default: selfsigned } = await import('selfsigned');
  const pems = await selfsigned.generate([{ name: 'commonName', value: dnsName }, { name: 'organizationName', value: 'mlgate self-signed' }], {
    ...(kept
      ? {
        ...kept.choice,
        keyPair: {
          privateKey: kept.key.export({ type: 'pkcs8', format: 'pem' }) as string,
          publicKey: createPublicKey(kept.key).export({ type: 'spki', format: 'pem' }) as string,
        },
      }
      : { keyType: 'ec', curve: 'P-256' }),
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyCertSign: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: names.map((name) => (isIP(name) ? { type: 7, ip: name } : { type: 2, value: name })) },
    ],
  });
  // A kept key file is left byte for byte as it was: the reload watcher then sees only the certificate change.
  await writePairAtomically(paths, pems.cert, kept ? undefined : pems.private);
  return { keptKey: Boolean(kept) };
}

/**
 * Makes (or re-makes) the pair in a self-signed directory: this machine's names, `extra`, and every
 * name the certificate it replaces covered, so that `cert generate --host b` after `--host a` adds
 * b instead of dropping a. Deleting both files is how names are dropped (and a new key made).
 */
export async function writeSelfSignedCertificate(paths: CertificatePaths, extra: readonly string[]): Promise<{ names: string[]; keptKey: boolean }> {
  let previous: string[] = [];
  try {
    previous = certificateNames(new X509Certificate(readFileSync(paths.cert)));
  } catch {
    // No certificate, or not one: nothing to carry over.
  }
  const names = uniqueNames([...selfSignedNames(extra), ...previous]);
  return { names, ...(await generateSelfSignedCertificate(paths, names)) };
}

interface EnsuredCertificate extends CertificatePaths {
  generated: boolean;
  reason?: string;
  keptKey?: boolean;
  /** The pair in tls.selfSignedDir, which mlgate made and may re-make; tls.cert/tls.key are never touched. */
  selfSigned: boolean;
  /** This machine's names and addresses the (kept) self-signed certificate does not cover. */
  missing: string[];
}

/**
 * Configured certificate files, or the self-signed pair in tls.selfSignedDir: generated on first
 * start and reused afterwards, so clients that pinned it keep working. It is replaced (keeping its
 * key and names) only when it cannot serve any more: a file missing, key and certificate not a
 * pair, expired, or a name added to tls.hosts that it does not cover. A new host name or address
 * of the machine only gives `missing`: re-making then is the user's call, since every client that
 * pinned the old certificate file needs the new one.
 */
export async function ensureCertificate(tls: Omit<Config['tls'], 'clientCertificates'>): Promise<EnsuredCertificate> {
  if (tls.cert && tls.key) return { cert: tls.cert, key: tls.key, generated: false, selfSigned: false, missing: [] };
  if (tls.cert || tls.key) {
    // Falling back to a self-signed certificate here would quietly serve the wrong identity.
    throw new Error(`tls.${tls.cert ? 'key' : 'cert'} is not set: a configured certificate needs both tls.cert and tls.key`);
  }
  const paths = { cert: join(tls.selfSignedDir, SELF_SIGNED_CERT), key: join(tls.selfSignedDir, SELF_SIGNED_KEY) };
  const checked = checkReusable(paths, tls.hosts.map(bareName));
  if (typeof checked === 'string') {
    const { keptKey } = await writeSelfSignedCertificate(paths, tls.hosts);
    return { ...paths, generated: true, reason: checked, keptKey, selfSigned: true, missing: [] };
  }
  const missing = selfSignedNames([]).filter((name) => !covers(checked, name));
  return { ...paths, generated: false, selfSigned: true, missing };
}

/** The certificate when the existing self-signed pair can be served as it is, else why not. */
function checkReusable(paths: CertificatePaths, requiredNames: readonly string[]): X509Certificate | string {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(readFileSync(paths.cert));
    if (!certificate.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))) return 'the key does not belong to the certificate';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no certificate yet' : `the existing pair is unreadable (${code ?? (err as Error).message})`;
  }
  if (Date.parse(certificate.validTo) <= Date.now()) return `the certificate expired on ${certificate.validTo}`;
  const missing = requiredNames.filter((name) => !covers(certificate, name));
  if (missing.length) return `tls.hosts names it does not cover: ${missing.join(', ')}`;
  return certificate;
}

/** Both files land complete or not at all; the key is never readable by others, even briefly. */
async function writePairAtomically(paths: CertificatePaths, cert: string, key: string | undefined): Promise<void> {
  const suffix = `.${process.pid}.tmp`;
  await mkdir(dirname(paths.key), { recursive: true });
  await mkdir(dirname(paths.cert), { recursive: true });
  try {
    if (key !== undefined) {
      await writeFile(paths.key + suffix, key, { mode: 0o600 });
      // writeFile's mode applies only to a new file and is cut by the umask; chmod makes it exact.
      await chmod(paths.key + suffix, 0o600);
    }
    await writeFile(paths.cert + suffix, cert, { mode: 0o644 });
    await chmod(paths.cert + suffix, 0o644);
    if (key !== undefined) await rename(paths.key + suffix, paths.key);
    await rename(paths.cert + suffix, paths.cert);
  } finally {
    await rm(paths.key + suffix, { force: true });
    await rm(paths.cert + suffix, { force: true });
  }
}
