import { existsSync } from 'node:fs';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import selfsigned from 'selfsigned';
import type { Config } from '../config/schema.ts';

export interface CertificatePaths {
  cert: string;
  key: string;
}

export const SELF_SIGNED_CERT = 'mlgate.crt';
export const SELF_SIGNED_KEY = 'mlgate.key';

/** The names a self-signed certificate covers: loopback, this machine, and whatever the config adds. */
export function selfSignedNames(extra: readonly string[]): string[] {
  return [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...extra].filter(Boolean))];
}

/**
 * Writes a self-signed certificate that clients can pin directly (MLFLOW_TRACKING_SERVER_CERT_PATH,
 * Python requests' verify=): it is its own CA, so it carries basicConstraints CA and serverAuth.
 */
export async function generateSelfSignedCertificate(paths: CertificatePaths, names: readonly string[], days = 825): Promise<void> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 86_400_000);
  const dnsName = names.find((name) => !isIP(name)) ?? 'localhost';
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
  await writeAtomically(paths.key, pems.private, 0o600);
  await writeAtomically(paths.cert, pems.cert, 0o644);
}

/** Configured certificate files, or the self-signed pair in tls.selfSignedDir, generated on first start. */
export async function ensureCertificate(tls: Config['tls']): Promise<CertificatePaths & { generated: boolean }> {
  if (tls.cert && tls.key) return { cert: tls.cert, key: tls.key, generated: false };
  const paths = { cert: join(tls.selfSignedDir, SELF_SIGNED_CERT), key: join(tls.selfSignedDir, SELF_SIGNED_KEY) };
  if (existsSync(paths.cert) && existsSync(paths.key)) return { ...paths, generated: false };
  await generateSelfSignedCertificate(paths, selfSignedNames(tls.hosts));
  return { ...paths, generated: true };
}

async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, content, { mode });
  await chmod(temporary, mode);
  await rename(temporary, path);
}
