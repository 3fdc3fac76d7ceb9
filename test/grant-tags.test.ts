// How a grantee's name becomes part of an MLflow tag key (src/authz/grant-tags.ts): names MLflow
// allows in a key stay as they always were; any other name (an e-mail address) is escaped under its
// own prefix, reversibly and without two names ever sharing a key.
import { describe, expect, it } from 'vitest';
import { encodeGranteeName, grantsFromTags, granteeOfTagKey, grantTagKey, grantTagKeysOf, MAX_TAG_KEY_LENGTH, type Grantee } from '../src/authz/grant-tags.ts';
import { granteeNameProblem, parseGrantee } from '../src/authz/grants-client.ts';

/** MLflow's tag-key rule (validation.py): 2.17 allows these characters; 3.x adds ":". Length at most 250. */
const MLFLOW_2_17_KEY = /^[/\p{L}\p{N}_.\- ]*$/u;

/** Names as mlgate accepted them before escaping existed: each keeps its key, byte for byte. */
const PLAIN = ['alice', 'team-a', 'svc.ci_bot', 'Zoë', '田中', 'A1', '_', '-', '.hidden', 'a..b', 'x_5F', 'user-enc', '_40', 'Ünïcödé_1.2-3'];

/** Names that need escaping, including some built to look like another name's escaping. */
const ESCAPED = [
  'alice@example.com', 'first_last@example.com', 'bob smith', 'a/b', '../etc', 'a:b', '100%', '%40', 'a+b', 'O\'Brien', 'say "hi"',
  'back\\slash', '😀', '田中 太郎', 'e\u0301', '@', '@@x', 'x@', 'alice_40example.com@', 'tab\u00a0space', '~user', '#1', 'a,b;c=d',
  'CN=Alice,OU=ML', 'domain\\user', '\u200bzero-width',
];

const kinds = ['user', 'group'] as const;
const key = (kind: Grantee['kind'], name: string) => grantTagKey({ kind, name } as Grantee);

describe('grant tag keys', () => {
  it('keeps today\'s keys for every name that could hold a grant before', () => {
    for (const name of PLAIN) {
      expect(encodeGranteeName(name), name).toEqual({ escaped: false, text: name });
      expect(key('user', name)).toBe(`mlgate.grant.user.${name}`);
      expect(key('group', name)).toBe(`mlgate.grant.group.${name}`);
    }
    // Tags written by earlier versions read exactly as they did.
    const grants = grantsFromTags([
      { key: 'mlgate.owner', value: 'alice' },
      { key: 'mlgate.grant.user.bob', value: 'EDIT' },
      { key: 'mlgate.grant.user.svc.ci_bot', value: 'READ' },
      { key: 'mlgate.grant.group.team-a', value: 'MANAGE' },
      { key: 'mlgate.grant.group.viewers', value: 'NO_PERMISSIONS' },
      { key: 'mlgate.grant.user.carol', value: '' }, // revoked on MLflow 2.17
    ]);
    expect(grants.owner).toBe('alice');
    expect([...grants.users]).toEqual([['bob', 'EDIT'], ['svc.ci_bot', 'READ']]);
    expect([...grants.groups]).toEqual([['team-a', 'MANAGE'], ['viewers', 'NO_PERMISSIONS']]);
  });

  it('escapes every other name under its own prefix, in characters every MLflow version accepts', () => {
    expect(key('user', 'alice@example.com')).toBe('mlgate.grant.user-enc.alice_40example.com');
    expect(key('group', 'ops@example.com')).toBe('mlgate.grant.group-enc.ops_40example.com');
    expect(key('user', 'first_last@example.com')).toBe('mlgate.grant.user-enc.first_5Flast_40example.com'); // "_" is escaped too
    expect(key('user', 'bob smith')).toBe('mlgate.grant.user-enc.bob_20smith');
    expect(key('user', '😀')).toBe('mlgate.grant.user-enc._F0_9F_98_80');
    for (const name of ESCAPED) {
      for (const kind of kinds) {
        const k = key(kind, name);
        expect(k, name).toMatch(/^mlgate\.grant\.(user|group)-enc\.[A-Za-z0-9._-]+$/);
        expect(k, name).toMatch(MLFLOW_2_17_KEY);
      }
    }
  });

  it('reads back every name it writes (round trip), and marks the keys as mlgate\'s own', () => {
    for (const name of [...PLAIN, ...ESCAPED]) {
      for (const kind of kinds) {
        expect(granteeOfTagKey(key(kind, name)), `${kind} ${name}`).toEqual({ kind, name, canonical: true });
        const grants = grantsFromTags([{ key: key(kind, name), value: 'EDIT' }]);
        expect((kind === 'user' ? grants.users : grants.groups).get(name), name).toBe('EDIT');
      }
    }
  });

  it('never gives two names, or a user and a group, the same key', () => {
    const names = new Set([...PLAIN, ...ESCAPED]);
    // The escaped spelling of each name as a name of its own, and with prefixes glued on.
    for (const name of [...names]) {
      const { text } = encodeGranteeName(name);
      names.add(text);
      names.add(`enc.${text}`);
      names.add(`-enc.${text}`);
      names.add(`user-enc.${text}`);
    }
    // And a deterministic spread of random strings over an alphabet full of troublemakers.
    const alphabet = ['a', 'Z', '0', '_', '-', '.', '@', ' ', '/', ':', '%', '5', 'F', '4', 'é', '\u0301', '😀', '\u00a0'];
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 3000; i++) {
      const length = 1 + Math.floor(random() * 8);
      names.add(Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join(''));
    }
    const owners = new Map<string, string>();
    for (const name of names) {
      for (const kind of kinds) {
        const k = key(kind, name);
        expect(owners.get(k), `${kind} ${JSON.stringify(name)} and ${owners.get(k)} share ${k}`).toBeUndefined();
        owners.set(k, `${kind} ${JSON.stringify(name)}`);
        expect(granteeOfTagKey(k)).toEqual({ kind, name, canonical: true });
      }
    }
    expect(owners.size).toBe(names.size * 2);
  });

  it('ignores escaped keys that mlgate would not have written, so each name has one key that counts', () => {
    for (const k of [
      'mlgate.grant.user-enc.bob', // needs no escaping: its key is mlgate.grant.user.bob
      'mlgate.grant.user-enc.alice_40example_2Ecom', // "." needs no escaping
      'mlgate.grant.user-enc.alice_4aexample.com', // lower-case hex
      'mlgate.grant.user-enc.alice_', 'mlgate.grant.user-enc.a_4', 'mlgate.grant.user-enc.a_GG', 'mlgate.grant.user-enc.a@b',
      'mlgate.grant.user-enc._FF', // not UTF-8
      'mlgate.grant.user-enc._C0_80', // overlong UTF-8
      'mlgate.grant.user-enc.', 'mlgate.grant.user.', 'mlgate.grant.group-enc.', 'mlgate.grant.usr.bob', 'mlgate.owner', 'mlflow.user',
    ]) {
      expect(granteeOfTagKey(k), k).toBeUndefined();
      expect(grantsFromTags([{ key: k, value: 'MANAGE' }]).users.size, k).toBe(0);
    }
  });

  it('still reads a grant written by hand under the plain prefix, but the canonical key wins', () => {
    // MLflow allows space, "/" and ":" in a key, so such a tag may exist from before.
    const legacy = { key: 'mlgate.grant.user.bob smith', value: 'NO_PERMISSIONS' };
    expect(granteeOfTagKey(legacy.key)).toEqual({ kind: 'user', name: 'bob smith', canonical: false });
    expect(grantsFromTags([legacy]).users.get('bob smith')).toBe('NO_PERMISSIONS');
    const canonical = { key: 'mlgate.grant.user-enc.bob_20smith', value: 'EDIT' };
    expect(grantsFromTags([legacy, canonical]).users.get('bob smith')).toBe('EDIT');
    expect(grantsFromTags([canonical, legacy]).users.get('bob smith')).toBe('EDIT');
    // A blanked (revoked on 2.17) canonical key leaves the legacy one in force; grant and revoke remove both.
    expect(grantsFromTags([{ ...canonical, value: '' }, legacy]).users.get('bob smith')).toBe('NO_PERMISSIONS');
    const tags = [legacy, canonical, { key: 'mlgate.grant.user.bob', value: 'READ' }, { key: 'mlgate.grant.group-enc.bob_20smith', value: 'READ' }];
    expect(grantTagKeysOf(tags, { kind: 'user', name: 'bob smith' })).toEqual([legacy.key, canonical.key]);
    expect(grantTagKeysOf(tags, { kind: 'group', name: 'bob smith' })).toEqual(['mlgate.grant.group-enc.bob_20smith']);
    expect(grantTagKeysOf(tags, { kind: 'user', name: 'nobody' })).toEqual([]);
  });

  it('the owner is a tag value, which holds any name as it is', () => {
    expect(grantsFromTags([{ key: 'mlgate.owner', value: 'alice@example.com' }]).owner).toBe('alice@example.com');
    expect(grantsFromTags([{ key: 'mlgate.owner', value: 'bob smith / ops' }]).owner).toBe('bob smith / ops');
  });
});

describe('which names can hold a grant', () => {
  it('any name a user or group can have, as long as its key fits in MLflow\'s 250 characters', () => {
    for (const name of [...PLAIN, ...ESCAPED]) expect(granteeNameProblem(name), name).toBeUndefined();
    expect(granteeNameProblem('')).toBe('the user or group name is empty');
    expect(granteeNameProblem('a\tb')).toContain('control character');
    expect(granteeNameProblem('bob\u0007')).toContain('control character');
    expect(granteeNameProblem(' bob')).toContain('starts or ends with whitespace');
    expect(granteeNameProblem('bob ')).toContain('starts or ends with whitespace');
    expect(granteeNameProblem('\ud800x')).toContain('not valid Unicode');
    // The longest names that fit: the group key (the longer prefix) is exactly 250 characters.
    const plainRoom = MAX_TAG_KEY_LENGTH - 'mlgate.grant.group.'.length;
    expect(granteeNameProblem('x'.repeat(plainRoom))).toBeUndefined();
    expect(granteeNameProblem('x'.repeat(plainRoom + 1))).toContain('too long');
    const escapedRoom = MAX_TAG_KEY_LENGTH - 'mlgate.grant.group-enc.'.length;
    expect(granteeNameProblem(`${'x'.repeat(escapedRoom - 3)}@`)).toBeUndefined();
    expect(granteeNameProblem(`${'x'.repeat(escapedRoom - 2)}@`)).toContain('too long');
    expect(granteeNameProblem('😀'.repeat(20))).toContain('its MLflow tag key would have 263 characters, more than 250');
  });

  it('@name is a group on the command line and the page, anything else a user', () => {
    expect(parseGrantee('alice@example.com')).toEqual({ grantee: { kind: 'user', name: 'alice@example.com' } });
    expect(parseGrantee('@ops@example.com')).toEqual({ grantee: { kind: 'group', name: 'ops@example.com' } });
    expect(parseGrantee('@')).toEqual({ problem: 'the user or group name is empty' });
  });
});
