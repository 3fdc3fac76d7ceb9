// Headless Chromium for browser tests: Debian's /usr/bin/chromium (apt-get install chromium), driven
// by playwright-core, which downloads no browser of its own.
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';

/** Why Chromium cannot be started here (undefined when it can), for describe.skipIf and its title. */
export function chromiumProblem(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (apt-get install chromium)`;
}

/** Quiet, sandbox-free (root in containers) headless Chromium that fetches nothing on its own. */
const BASE_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, ...extraArgs], timeout: 60_000 });
}

/**
 * The base64 SHA-256 of a certificate's SubjectPublicKeyInfo: what Chromium's
 * --ignore-certificate-errors-spki-list takes to trust that one (self-signed) certificate, and no
 * other, as a browser that added it to its trust store would.
 */
export function spkiPin(certificatePem: string): string {
  const spki = new X509Certificate(certificatePem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/**
 * Chromium arguments for reaching a gateway on 127.0.0.1 under a public-looking host name (as users
 * do), trusting only the gateway's certificate.
 */
export function gatewayArgs(hostName: string, certificatePem: string): string[] {
  return [`--host-resolver-rules=MAP ${hostName} 127.0.0.1`, `--ignore-certificate-errors-spki-list=${spkiPin(certificatePem)}`];
}
