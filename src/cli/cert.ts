import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { certificateName } from '../config/schema.ts';
import { SELF_SIGNED_CERT, SELF_SIGNED_KEY, writeSelfSignedCertificate } from '../server/certificate.ts';
import { loadConfigOrExit } from './serve.ts';

interface CertGenerateOptions {
  config?: string;
  host?: string[];
  force?: boolean;
}

/**
 * `mlgate cert generate`: the self-signed pair the gateway would make on first start, made on
 * purpose. With --force it re-makes the certificate around the existing key and names, so clients
 * that pinned the old file need only the new one, and a running gateway serves it without a restart.
 */
export function registerCert(program: Command): void {
  const cert = program.command('cert').description('make the self-signed TLS certificate');
  // Not addConfigFlags: its --host is the listen address, while here --host names the certificate covers.
  cert.command('generate')
    .description('write a self-signed certificate and key to tls.selfSignedDir (mlgate.crt, mlgate.key)')
    .option('-c, --config <file>', 'YAML configuration file (default: config/mlgate.yaml if present, or $MLGATE_CONFIG)')
    .option('--host <name...>', 'another DNS name or IP address the certificate covers, besides tls.hosts (repeatable)')
    .option('--force', 'replace an existing certificate (its key and names are kept)')
    .action(async (options: CertGenerateOptions) => {
      const { tls } = loadConfigOrExit({ config: options.config }).config;
      const extraNames = options.host ?? [];
      for (const name of extraNames) {
        const check = certificateName.safeParse(name);
        if (!check.success) throw new Error(`--host ${JSON.stringify(name)}: ${check.error.issues[0]!.message}`);
      }
      const paths = { cert: join(tls.selfSignedDir, SELF_SIGNED_CERT), key: join(tls.selfSignedDir, SELF_SIGNED_KEY) };
      const existing = [paths.cert, paths.key].filter((path) => existsSync(path));
      if (existing.length && !options.force) {
        throw new Error(`${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; add --force to replace (clients that pinned the old certificate then need the new one)`);
      }
      const { names, keptKey } = await writeSelfSignedCertificate(paths, [...tls.hosts, ...extraNames]);
      console.log(keptKey
        ? `wrote ${paths.cert} (certificate) for the existing private key ${paths.key}`
        : `wrote ${paths.cert} (certificate) and ${paths.key} (private key, mode 0600)`);
      console.log(`names: ${names.join(', ')}`);
      console.log(`MLflow clients trust it with: export MLFLOW_TRACKING_SERVER_CERT_PATH=${resolve(paths.cert)}`);
      if (tls.cert) process.stderr.write(`note: tls.cert is set, so the gateway serves ${tls.cert}, not this certificate\n`);
    });
}
