// A small CA for client certificates, run with `openssl ca` as an administrator would (the commands
// docs/client-certificates.md shows): issue, revoke, publish the CRL.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${result.stderr}`);
}

export interface ClientCertificate {
  cert: string;
  key: string;
  /** The certificate and its key in one PEM file, as MLFLOW_TRACKING_CLIENT_CERT_PATH takes them. */
  pem: string;
}

export interface ClientCa {
  /** The CA's certificate: tls.clientCertificates.ca. */
  cert: string;
  issue(file: string, subject: { cn: string; email?: string; uri?: string; ou?: string[] }): ClientCertificate;
  revoke(certificate: ClientCertificate): void;
  /** Writes the CA's current CRL (tls.clientCertificates.crl) to `path`, valid for `seconds` (30 days unless given). */
  publishCrl(path: string, seconds?: number): void;
}

const CA_CONFIG = `[ ca ]
default_ca = ca_default
[ ca_default ]
dir = .
database = index.txt
new_certs_dir = issued
serial = serial
crlnumber = crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = any_subject
copy_extensions = copy
unique_subject = no
[ any_subject ]
commonName = supplied
organizationalUnitName = optional
[ client ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
`;

export function makeClientCa(parent: string, name: string): ClientCa {
  const dir = join(parent, name);
  mkdirSync(join(dir, 'issued'), { recursive: true });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  writeFileSync(join(dir, 'ca.cnf'), CA_CONFIG);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30',
    '-subj', `/CN=${name} client CA`, '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const ca = ['-config', 'ca.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key'];
  return {
    cert: join(dir, 'ca.crt'),
    issue(file, subject) {
      const names = [subject.email && `email:${subject.email}`, subject.uri && `URI:${subject.uri}`].filter(Boolean).join(',');
      const dn = `${(subject.ou ?? []).map((ou) => `/OU=${ou}`).join('')}/CN=${subject.cn}`;
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${file}.key`, '-out', `${file}.csr`, '-subj', dn,
        ...(names ? ['-addext', `subjectAltName=${names}`] : [])], dir);
      openssl(['ca', '-batch', '-notext', ...ca, '-extensions', 'client', '-in', `${file}.csr`, '-out', `${file}.crt`], dir);
      const cert = join(dir, `${file}.crt`);
      const key = join(dir, `${file}.key`);
      const pem = join(dir, `${file}.pem`);
      writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
      return { cert, key, pem };
    },
    revoke(certificate) {
      openssl(['ca', ...ca, '-revoke', certificate.cert], dir);
    },
    publishCrl(path, seconds) {
      openssl(['ca', ...ca, '-gencrl', ...(seconds === undefined ? [] : ['-crlsec', String(seconds)]), '-out', path], dir);
    },
  };
}
