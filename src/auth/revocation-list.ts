// Certificate revocation lists (RFC 5280 section 5) read just far enough to answer "is this
// certificate revoked?" for connections that were verified against an older list. New TLS
// handshakes are checked by OpenSSL itself (the list is on the listener's secure context, signature
// included); this check only ever refuses, so it trusts the configured file as the operator wrote it.

/** One DER element: its tag, where its contents start and where it ends. */
interface Element {
  tag: number;
  start: number;
  contents: number;
  end: number;
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
/** [0] EXPLICIT: a certificate's version. */
const CONTEXT_0 = 0xa0;

function element(der: Uint8Array, offset: number, limit = der.length): Element {
  if (offset + 2 > limit) throw new Error('truncated DER');
  const tag = der[offset]!;
  let length = der[offset + 1]!;
  let contents = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || contents + bytes > limit) throw new Error('bad DER length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[contents++]!;
  }
  if (contents + length > limit) throw new Error('truncated DER');
  return { tag, start: offset, contents, end: contents + length };
}

function children(der: Uint8Array, parent: Element): Element[] {
  const found: Element[] = [];
  for (let offset = parent.contents; offset < parent.end;) {
    const child = element(der, offset, parent.end);
    found.push(child);
    offset = child.end;
  }
  return found;
}

function expect(found: Element | undefined, tag: number, what: string): Element {
  if (!found || found.tag !== tag) throw new Error(`not a ${what}`);
  return found;
}

/** A serial number's value, however many leading zero bytes its encoding has. */
function serialHex(der: Uint8Array, serial: Element): string {
  let start = serial.contents;
  while (start < serial.end - 1 && der[start] === 0) start++;
  return Buffer.from(der.subarray(start, serial.end)).toString('hex');
}

function hexOf(der: Uint8Array, part: Element): string {
  return Buffer.from(der.subarray(part.start, part.end)).toString('hex');
}

function timeOf(der: Uint8Array, time: Element): Date {
  const text = Buffer.from(der.subarray(time.contents, time.end)).toString('latin1');
  const match = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!match) throw new Error(`unreadable time ${text}`);
  const year = match[1]!.length === 4 ? Number(match[1]) : Number(match[1]) + (Number(match[1]) < 50 ? 2000 : 1900);
  return new Date(Date.UTC(year, Number(match[2]) - 1, Number(match[3]), Number(match[4]), Number(match[5]), Number(match[6])));
}

/** "issuer:serial" of a certificate, as a revocation list names it. */
export function certificateKey(certificateDer: Uint8Array): string {
  const certificate = expect(element(certificateDer, 0), SEQUENCE, 'certificate');
  const tbs = children(certificateDer, expect(children(certificateDer, certificate)[0], SEQUENCE, 'certificate'));
  const fields = tbs[0]?.tag === CONTEXT_0 ? tbs.slice(1) : tbs;
  const serial = expect(fields[0], INTEGER, 'certificate serial number');
  const issuer = expect(fields[2], SEQUENCE, 'certificate issuer');
  return `${hexOf(certificateDer, issuer)}:${serialHex(certificateDer, serial)}`;
}

interface RevocationList {
  /** certificateKey() of every certificate revoked by one of the lists. */
  revoked: ReadonlySet<string>;
  /** How many lists the file held. */
  lists: number;
  /** The earliest nextUpdate among them: past it, OpenSSL refuses every certificate (CRL_HAS_EXPIRED). */
  nextUpdate?: Date;
}

const PEM_CRL = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g;

/** Every X509 CRL in a PEM file; throws when it holds none or one cannot be read. */
export function parseRevocationLists(pem: string): RevocationList {
  const revoked = new Set<string>();
  let lists = 0;
  let nextUpdate: Date | undefined;
  for (const block of pem.matchAll(PEM_CRL)) {
    lists++;
    const der = Buffer.from(block[1]!.replace(/\s+/g, ''), 'base64');
    try {
      const list = expect(element(der, 0), SEQUENCE, 'certificate revocation list');
      const tbs = children(der, expect(children(der, list)[0], SEQUENCE, 'certificate revocation list'));
      const fields = tbs[0]?.tag === INTEGER ? tbs.slice(1) : tbs;
      const issuer = expect(fields[1], SEQUENCE, 'CRL issuer');
      let next = 3;
      const until = fields[next];
      if (until && (until.tag === UTC_TIME || until.tag === GENERALIZED_TIME)) {
        const date = timeOf(der, until);
        if (!nextUpdate || date < nextUpdate) nextUpdate = date;
        next++;
      }
      const entries = fields[next]?.tag === SEQUENCE ? children(der, fields[next]!) : [];
      const issuerHex = hexOf(der, issuer);
      for (const entry of entries) {
        const serial = expect(children(der, expect(entry, SEQUENCE, 'CRL entry'))[0], INTEGER, 'CRL entry serial number');
        revoked.add(`${issuerHex}:${serialHex(der, serial)}`);
      }
    } catch (err) {
      throw new Error(`CRL number ${lists} in the file cannot be read: ${(err as Error).message}`);
    }
  }
  if (lists === 0) throw new Error('holds no PEM certificate revocation list (-----BEGIN X509 CRL-----)');
  return { revoked, lists, nextUpdate };
}
