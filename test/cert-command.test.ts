// `mlgate cert generate`, with the certificate read back by openssl rather than by our own code.
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.ts';
import { MACHINE_ADDRESSES as ADDRESSES, opensslAddress } from './helpers/tls.ts';

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'mlgate-cert-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function publicKeyOf(pem: string): Buffer {
  return createPublicKey(pem).export({ type: 'spki', format: 'der' });
}

function subjectAltNames(certFile: string): string[] {
  const result = spawnSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', certFile], { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout.split('\n')[1]!.trim().split(/,\s*/);
}

describe('mlgate cert generate', () => {
  it('writes a certificate for the extra names and a private key only its owner can read', () => {
    const result = runCli(['cert', 'generate', '--host', 'example.internal', '--host', '10.20.30.40'], { cwd: dir });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const cert = join(dir, 'certs', 'mlgate.crt');
    expect(result.stdout).toBe([
      'wrote certs/mlgate.crt (certificate) and certs/mlgate.key (private key, mode 0600)',
      `names: ${['localhost', '127.0.0.1', '::1', hostname(), ...ADDRESSES, 'example.internal', '10.20.30.40'].join(', ')}`,
      `MLflow clients trust it with: export MLFLOW_TRACKING_SERVER_CERT_PATH=${cert}`,
      '',
    ].join('\n'));
    expect(subjectAltNames(cert)).toEqual([
      'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', `DNS:${hostname()}`, ...ADDRESSES.map(opensslAddress), 'DNS:example.internal', 'IP Address:10.20.30.40',
    ]);
    expect(statSync(join(dir, 'certs', 'mlgate.key')).mode & 0o777).toBe(0o600);
    const keyCheck = spawnSync('openssl', ['pkey', '-noout', '-in', join(dir, 'certs', 'mlgate.key')], { encoding: 'utf8' });
    expect(keyCheck.status, keyCheck.stderr).toBe(0);
  });

  it('refuses to replace an existing pair unless --force', () => {
    expect(runCli(['cert', 'generate'], { cwd: dir }).status).toBe(0);
    const before = readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8');

    const refused = runCli(['cert', 'generate', '--host', 'new.example'], { cwd: dir });
    expect(refused).toMatchObject({
      status: 1,
      stdout: '',
      stderr: 'mlgate: certs/mlgate.crt and certs/mlgate.key already exist; add --force to replace (clients that pinned the old certificate then need the new one)\n',
    });
    expect(readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8')).toBe(before);

    expect(runCli(['cert', 'generate', '--host', 'new.example', '--force'], { cwd: dir }).status).toBe(0);
    expect(readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8')).not.toBe(before);
    expect(subjectAltNames(join(dir, 'certs', 'mlgate.crt'))).toContain('DNS:new.example');
  });

  it('--force keeps the private key (same file, same public key) and the names added before, and adds the new one', () => {
    expect(runCli(['cert', 'generate', '--host', 'first.example'], { cwd: dir }).status).toBe(0);
    const certFile = join(dir, 'certs', 'mlgate.crt');
    const keyFile = join(dir, 'certs', 'mlgate.key');
    const key = readFileSync(keyFile, 'utf8');
    const before = readFileSync(certFile, 'utf8');

    const result = runCli(['cert', 'generate', '--host', 'x', '--force'], { cwd: dir });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.split('\n')[0]).toBe('wrote certs/mlgate.crt (certificate) for the existing private key certs/mlgate.key');
    const after = readFileSync(certFile, 'utf8');
    expect(after).not.toBe(before);
    expect(readFileSync(keyFile, 'utf8')).toBe(key);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(publicKeyOf(after)).toEqual(publicKeyOf(before));
    expect(new X509Certificate(after).checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(subjectAltNames(certFile)).toEqual(expect.arrayContaining(['DNS:x', 'DNS:first.example', 'DNS:localhost']));
  });

  it('takes tls.selfSignedDir and tls.hosts from the configuration', () => {
    writeFileSync(join(dir, 'mlgate.yaml'), 'tls:\n  selfSignedDir: tls/self\n  hosts: [mlflow.example.com]\n');
    const result = runCli(['cert', 'generate', '--config', 'mlgate.yaml', '--host', 'extra.example', '[fd00::5]'], { cwd: dir });
    expect(result.status, result.stderr).toBe(0);
    const names = subjectAltNames(join(dir, 'tls', 'self', 'mlgate.crt'));
    expect(names).toEqual(expect.arrayContaining(['DNS:mlflow.example.com', 'DNS:extra.example', 'IP Address:FD00:0:0:0:0:0:0:5', 'DNS:localhost']));
  });

  it('refuses a name a certificate cannot hold, and a bad configuration (exit 2)', () => {
    expect(runCli(['cert', 'generate', '--host', 'not a name'], { cwd: dir })).toMatchObject({
      status: 1,
      stderr: 'mlgate: --host "not a name": must be a DNS name (e.g. mlflow.example.com) or an IP address\n',
    });
    const bad = runCli(['cert', 'generate'], { cwd: dir, env: { MLGATE_TLS_HOSTS: 'ok.example,bad_host!' } });
    expect(bad).toMatchObject({
      status: 2,
      stderr: 'mlgate: invalid configuration:\n  MLGATE_TLS_HOSTS (environment): tls.hosts[1]: must be a DNS name (e.g. mlflow.example.com) or an IP address, got "bad_host!"\n',
    });
  });
});
