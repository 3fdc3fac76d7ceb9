import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Config } from '../config/schema.ts';

export interface CertificatePaths {
  cert: string;
  key: string;
}

export const SELF_SIGNED_CERT = 'mlgate.crt';
export const SELF_SIGNED_KEY = 'mlgate.key';

/** "[::1]" is how an IPv6 address is written in a URL; certificates hold the bare address. */
function bareName(name: string): string {
  return name.trim().replace(/^\[(.*)\]$/, '$1');
}

/** The names a self-signed certificate covers: loopback, this machine, and whatever the config adds. */
export function selfSignedNames(extra: readonly string[]): string[] {
  return [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...extra].map(bareName).filter(Boolean))];
}

/**
 * Writes a self-signed certificate that clients can pin directly (MLFLOW_TRACKING_SERVER_CERT_PATH,
 * Python requests' verify=): it is its own CA, so it carries basicConstraints CA and serverAuth.
 */
export async function generateSelfSignedCertificate(paths: CertificatePaths, names: readonly string[], days = 825): Promise<void> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 86_400_000);
  const dnsName = names.find((name) => !isIP(name)) ?? 'localhost';
  // Loaded only when a certificate is made: its X.509 libraries cost ~15 MB of every process.
  const { default: selfsigned } = await import('selfsigned');
  const pems = await selfsigned.generate([{ name: 'commonName', value: dnsName }, { name: 'organizationName', value: 'mlgate self-signed' }], {
    keyType: 'ec',
    curve: 'P-256',
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
  await writePairAtomically(paths, pems.cert, pems.private);
}

/**
 * Configured certificate files, or the self-signed pair in tls.selfSignedDir: generated on first
 * start and reused afterwards, so clients that pinned it keep working. It is replaced only when it
 * cannot serve any more: a file missing, key and certificate not a pair, expired, or a name added
 * to tls.hosts that it does not cover. A changed machine host name alone (a new container) keeps it.
 */
export async function ensureCertificate(tls: Config['tls']): Promise<CertificatePaths & { generated: boolean; reason?: string }> {
  if (tls.cert && tls.key) return { cert: tls.cert, key: tls.key, generated: false };
  if (tls.cert || tls.key) {
    // Falling back to a self-signed certificate here would quietly serve the wrong identity.
    throw new Error(`tls.${tls.cert ? 'key' : 'cert'} is not set: a configured certificate needs both tls.cert and tls.key`);
  }
  const paths = { cert: join(tls.selfSignedDir, SELF_SIGNED_CERT), key: join(tls.selfSignedDir, SELF_SIGNED_KEY) };
  const reason = whyNotReusable(paths, tls.hosts.map(bareName));
  if (!reason) return { ...paths, generated: false };
  await generateSelfSignedCertificate(paths, selfSignedNames(tls.hosts));
  return { ...paths, generated: true, reason };
}

/** Undefined when the existing self-signed pair can be served as it is. */
function whyNotReusable(paths: CertificatePaths, requiredNames: readonly string[]): string | undefined {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(readFileSync(paths.cert));
    if (!certificate.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))) return 'the key does not belong to the certificate';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no certificate yet' : `the existing pair is unreadable (${code ?? (err as Error).message})`;
  }
  if (Date.parse(certificate.validTo) <= Date.now()) return `the certificate expired on ${certificate.validTo}`;
  const missing = requiredNames.filter((name) => (isIP(name) ? certificate.checkIP(name) : certificate.checkHost(name)) === undefined);
  if (missing.length) return `tls.hosts names it does not cover: ${missing.join(', ')}`;
  return undefined;
}

/** Both files land complete or not at all; the key is never readable by others, even briefly. */
async function writePairAtomically(paths: CertificatePaths, cert: string, key: string): Promise<void> {
  const suffix = `.${process.pid}.tmp`;
  await mkdir(dirname(paths.key), { recursive: true });
  await mkdir(dirname(paths.cert), { recursive: true });
  try {
    await writeFile(paths.key + suffix, key, { mode: 0o600 });
    // writeFile's mode applies only to a new file and is cut by the umask; chmod makes it exact.
    await chmod(paths.key + suffix, 0o600);
    await writeFile(paths.cert + suffix, cert, { mode: 0o644 });
    await chmod(paths.cert + suffix, 0o644);
    await rename(paths.key + suffix, paths.key);
    await rename(paths.cert + suffix, paths.cert);
  } finally {
    await rm(paths.key + suffix, { force: true });
    await rm(paths.cert + suffix, { force: true });
  }
}
