// TLS clients and certificates for tests: every connection here verifies the server's certificate.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import tls, { type ConnectionOptions, type DetailedPeerCertificate } from 'node:tls';

interface TlsProbe {
  protocol: string | null;
  fingerprint256: string;
  /** Subjects' CNs from the server's certificate up to the trusted root, as the client verified them. */
  chain: string[];
}

/** One verified handshake: resolves with what the client saw, rejects with the handshake error. */
export function probeTls(port: number, options: ConnectionOptions = {}): Promise<TlsProbe> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options }, () => {
      const peer = socket.getPeerCertificate(true);
      const chain: string[] = [];
      for (let cert: DetailedPeerCertificate | undefined = peer; cert && chain.length < 10; cert = cert.issuerCertificate === cert ? undefined : cert.issuerCertificate) {
        chain.push(String(cert.subject?.CN));
      }
      resolve({ protocol: socket.getProtocol(), fingerprint256: peer.fingerprint256, chain });
      socket.end();
    });
    socket.once('error', reject);
  });
}

export function fingerprintOf(pemFile: string): string {
  return new X509Certificate(readFileSync(pemFile)).fingerprint256;
}

export function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
}

function openssl(args: string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${result.stderr}`);
}

interface CertificateChain {
  root: string;
  /** The leaf followed by the intermediate, as a server presents them. */
  chain: string;
  leaf: string;
  key: string;
}

/**
 * A root CA, an intermediate signed by it, and a leaf for localhost/127.0.0.1 signed by the
 * intermediate, made with openssl as an administrator would. `name` keeps several sets apart.
 */
export function makeCertificateChain(dir: string, name = 'set', leafCn = 'mlgate leaf'): CertificateChain {
  const file = (suffix: string) => `${name}-${suffix}`;
  writeFileSync(join(dir, file('ca.ext')), 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n');
  writeFileSync(join(dir, file('leaf.ext')), 'basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', file('root.key'), '-out', file('root.crt'), '-days', '30', '-subj', `/CN=${name} test root`, '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', ...ec, '-keyout', file('int.key'), '-out', file('int.csr'), '-subj', `/CN=${name} test intermediate`], dir);
  openssl(['x509', '-req', '-in', file('int.csr'), '-CA', file('root.crt'), '-CAkey', file('root.key'), '-CAcreateserial', '-out', file('int.crt'), '-days', '30', '-extfile', file('ca.ext')], dir);
  openssl(['req', ...ec, '-keyout', file('leaf.key'), '-out', file('leaf.csr'), '-subj', `/CN=${leafCn}`], dir);
  openssl(['x509', '-req', '-in', file('leaf.csr'), '-CA', file('int.crt'), '-CAkey', file('int.key'), '-CAcreateserial', '-out', file('leaf.crt'), '-days', '30', '-extfile', file('leaf.ext')], dir);
  const read = (suffix: string) => readFileSync(join(dir, file(suffix)), 'utf8');
  writeFileSync(join(dir, file('chain.crt')), read('leaf.crt') + read('int.crt'));
  return { root: join(dir, file('root.crt')), chain: join(dir, file('chain.crt')), leaf: join(dir, file('leaf.crt')), key: join(dir, file('leaf.key')) };
}

/** A port that was free a moment ago, for settings that cannot take 0. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
export function isListening(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

/**
 * The machine's addresses a self-signed certificate must cover: every interface address that is not
 * loopback or link-local. Written out here rather than taken from src/, so the tests check the rule.
 */
export const MACHINE_ADDRESSES: readonly string[] = [...new Set(Object.values(networkInterfaces()).flat()
  .filter((nic) => nic && !nic.internal && !nic.address.toLowerCase().startsWith('fe80:') && !nic.address.startsWith('169.254.'))
  .map((nic) => nic!.address))];

/** What openssl prints for an address in subjectAltName: IPv6 as eight upper-case groups. */
export function opensslAddress(address: string): string {
  if (!address.includes(':')) return `IP Address:${address}`;
  const [head, tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `IP Address:${groups.map((group) => parseInt(group, 16).toString(16).toUpperCase()).join(':')}`;
}
