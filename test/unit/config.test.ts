import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadFullvrConfig, parseFullvrConfig } from '../../fullvr/config.js';
import { ConfigError } from '../../shared/config-error.js';
import { loadTinyvrConfig, loadTinyvrRaw, parseTinyvrConfig } from '../../tinyvr/config.js';

const PRIV = Buffer.alloc(32, 7).toString('base64');
const PUB2 = Buffer.alloc(32, 8).toString('base64');
const PUB3 = Buffer.alloc(32, 9).toString('base64');
const TOKEN = 'join-me-please-0123456789';

const dir = mkdtempSync(join(tmpdir(), 'tinyvine-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = any;

function baseFullvr(): Obj {
  return {
    id: 1,
    privateKey: PRIV,
    tun: { name: 'tvn0' },
    peers: [
      { id: 2, endpoint: '203.0.113.2:4789', publicKey: PUB2 },
      { id: 3, endpoint: 'vr3.example.net:4789', publicKey: PUB3 },
    ],
    networks: [
      {
        id: 1,
        name: 'blue',
        sites: [
          { name: 'cloud-a', subnet: '10.1.0.0/24', vr: 1 },
          { name: 'cloud-b', subnet: '10.2.0.0/24', vr: 2 },
          { name: 'office', subnet: '10.3.0.0/16', vr: 1 },
        ],
        lan: ['10.3.0.0/24'],
      },
      {
        id: 2,
        name: 'green',
        mode: 'virtual',
        auth: 'chacha',
        overlay: '10.200.0.0/16',
        sites: [
          { name: 'hub', subnet: '10.200.0.0/16', vr: 2 },
          { name: 'here', subnet: '10.200.1.0/24', vr: 1 },
        ],
      },
    ],
    tokens: [
      { token: TOKEN, network: 1 },
      { token: TOKEN + '-green', network: 2 },
    ],
  };
}

function baseTinyvr(): Obj {
  return { fullvr: '203.0.113.1:4789', fullvrKey: PUB2, token: TOKEN };
}

/** Write `content` (object -> YAML, string as is) to <fresh dir>/<name>; return its path. */
function write(name: string, content: unknown): string {
  const file = join(mkdtempSync(join(dir, 'c')), name);
  writeFileSync(file, typeof content === 'string' ? content : stringify(content));
  return file;
}

/** Load expecting exactly one problem; returns that line. */
function oneProblem(load: () => unknown): string {
  let err: unknown;
  try {
    load();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const ce = err as ConfigError;
  expect(ce.problems).toHaveLength(1);
  expect(ce.message).not.toContain('\n');
  expect(ce.message).toBe(ce.problems[0]);
  return ce.message;
}

function fullvrError(mutate: (c: Obj) => void): string {
  const c = baseFullvr();
  mutate(c);
  const file = write('fullvr.yaml', c);
  const line = oneProblem(() => loadFullvrConfig(file));
  expect(line.startsWith(`${file}: `)).toBe(true);
  return line.slice(file.length - 'fullvr.yaml'.length); // "fullvr.yaml: ..."
}

function tinyvrError(mutate: (c: Obj) => void): string {
  const c = baseTinyvr();
  mutate(c);
  const file = write('tinyvr.yaml', c);
  const line = oneProblem(() => loadTinyvrConfig(file));
  expect(line.startsWith(`${file}: `)).toBe(true);
  return line.slice(file.length - 'tinyvr.yaml'.length);
}

describe('FullVR config: valid files', () => {
  it('loads YAML and fills defaults', () => {
    const cfg = loadFullvrConfig(write('fullvr.yaml', baseFullvr()));
    expect(cfg.listen).toBe('0.0.0.0:4789');
    expect(cfg.pathMtu).toBe(1500);
    expect(cfg.keepaliveSeconds).toBe(10);
    expect(cfg.moderationMicros).toBe(500);
    expect(cfg.control).toBeUndefined();
    expect(cfg.privateKey).toBe(PRIV);
    expect(cfg.networks[0].mode).toBe('physical');
    expect(cfg.networks[0].auth).toBe('gmac');
    expect(cfg.networks[1].lan).toEqual([]);
    expect(cfg.networks[1].auth).toBe('chacha');
  });

  it('loads JSON (valid YAML) and a minimal config', () => {
    const minimal = {
      id: 9,
      privateKey: PRIV,
      networks: [{ id: 1, name: 'n', sites: [{ name: 's', subnet: 'fd00:1::/64', vr: 9 }] }],
    };
    const cfg = loadFullvrConfig(write('fullvr.json', JSON.stringify(minimal, null, 2)));
    expect(cfg.peers).toEqual([]);
    expect(cfg.tokens).toEqual([]);
    expect(cfg.tun).toBeUndefined();
  });

  it('reads privateKeyFile relative to the config file', () => {
    const c = baseFullvr();
    delete c.privateKey;
    c.privateKeyFile = 'fullvr.key';
    const file = write('fullvr.yaml', c);
    writeFileSync(join(file, '..', 'fullvr.key'), PRIV + '\n');
    expect(loadFullvrConfig(file).privateKey).toBe(PRIV);
  });

  it('parseFullvrConfig accepts an object and names the source in errors', () => {
    expect(parseFullvrConfig(baseFullvr(), 'inline').id).toBe(1);
    expect(() => parseFullvrConfig({ ...baseFullvr(), id: 0 }, 'inline')).toThrow(/^inline: id: must be >= 1 \(got 0\)$/);
  });
});

describe('FullVR config: each error is one line naming file and field', () => {
  const cases: Array<[string, (c: Obj) => void, string]> = [
    ['unknown top-level key', (c) => ((c.tunn = c.tun), delete c.tun), 'fullvr.yaml: unknown key "tunn" at top level'],
    ['unknown nested key', (c) => (c.networks[0].sites[1].subnett = 'x'), 'fullvr.yaml: unknown key "subnett" in networks[0].sites[1]'],
    ['invalid CIDR', (c) => (c.networks[0].sites[1].subnet = '10.1.0.0/33'), 'fullvr.yaml: networks[0].sites[1].subnet: "10.1.0.0/33" is not a valid CIDR'],
    ['CIDR garbage', (c) => (c.networks[0].sites[1].subnet = '10.2.0.0'), 'fullvr.yaml: networks[0].sites[1].subnet: "10.2.0.0" is not a valid CIDR'],
    ['host bits', (c) => (c.networks[0].sites[0].subnet = '10.1.0.5/24'), 'fullvr.yaml: networks[0].sites[0].subnet: 10.1.0.5/24 has host bits set; did you mean 10.1.0.0/24?'],
    ['host bits in lan', (c) => (c.networks[0].lan = ['10.3.0.1/24']), 'fullvr.yaml: networks[0].lan[0]: 10.3.0.1/24 has host bits set'],
    ['port too large', (c) => (c.listen = '0.0.0.0:70000'), 'fullvr.yaml: listen: "0.0.0.0:70000" is not a valid endpoint (port must be 1..65535)'],
    ['port 0', (c) => (c.peers[0].endpoint = '203.0.113.2:0'), 'fullvr.yaml: peers[0].endpoint: "203.0.113.2:0" is not a valid endpoint'],
    ['listen on a host name', (c) => (c.listen = 'example.com:4789'), 'fullvr.yaml: listen: "example.com:4789" must use an IP address'],
    ['unbracketed IPv6 endpoint', (c) => (c.control = '::1:4790'), 'fullvr.yaml: control: "::1:4790" is not a valid endpoint (write IPv6 endpoints as "[v6]:port")'],
    ['id 0', (c) => (c.id = 0), 'fullvr.yaml: id: must be >= 1 (got 0)'],
    ['id too large', (c) => (c.networks[1].id = 2 ** 32), 'fullvr.yaml: networks[1].id: must be <= 4294967295 (got 4294967296)'],
    ['id as string', (c) => (c.peers[1].id = '3'), 'fullvr.yaml: peers[1].id: expected a number, got "3"'],
    ['id not integer', (c) => (c.id = 1.5), 'fullvr.yaml: id: expected an integer, got 1.5'],
    ['missing id', (c) => delete c.id, 'fullvr.yaml: id: is required'],
    ['duplicate peer id', (c) => (c.peers[1].id = 2), 'fullvr.yaml: peers[1].id: duplicate VR id 2 (also peers[0].id)'],
    ['peer id is own id', (c) => (c.peers[1].id = 1), "fullvr.yaml: peers[1].id: 1 is this VR's own id"],
    ['id beyond the safe integer range', (c) => (c.id = 2 ** 53), 'fullvr.yaml: id: must be <= 4294967295 (got 9007199254740992)'],
    [
      'duplicate network id',
      (c) => (c.networks[1].id = 1) && (c.tokens[1].network = 1),
      'fullvr.yaml: networks[1].id: duplicate network id 1 (also networks[0].id)',
    ],
    ['duplicate network name', (c) => (c.networks[1].name = 'blue'), 'fullvr.yaml: networks[1].name: duplicate network name "blue"'],
    ['bad public key', (c) => (c.peers[0].publicKey = 'AAAA'), 'fullvr.yaml: peers[0].publicKey: must be a 32-byte key in base64'],
    ['key of wrong length', (c) => (c.privateKey = Buffer.alloc(31).toString('base64')), 'fullvr.yaml: privateKey: must be a 32-byte key in base64'],
    ['no key at all', (c) => delete c.privateKey, 'fullvr.yaml: privateKey: is required (or privateKeyFile)'],
    ['both key and key file', (c) => (c.privateKeyFile = 'k'), 'fullvr.yaml: privateKeyFile: cannot be used together with privateKey'],
    [
      'physical overlap',
      (c) => (c.networks[0].sites[1].subnet = '10.1.0.128/25'),
      'fullvr.yaml: networks[0].sites[1].subnet: 10.1.0.128/25 (site "cloud-b") overlaps 10.1.0.0/24 (site "cloud-a", sites[0])',
    ],
    ['virtual without overlay', (c) => delete c.networks[1].overlay, 'fullvr.yaml: networks[1].overlay: is required when mode is virtual'],
    [
      'virtual site outside overlay',
      (c) => (c.networks[1].sites[1].subnet = '10.201.1.0/24'),
      'fullvr.yaml: networks[1].sites[1].subnet: 10.201.1.0/24 (site "here") is not inside overlay 10.200.0.0/16',
    ],
    ['overlay in physical mode', (c) => (c.networks[0].overlay = '10.0.0.0/8'), 'fullvr.yaml: networks[0].overlay: is only used with mode: virtual'],
    ['bad mode', (c) => (c.networks[0].mode = 'mesh'), 'fullvr.yaml: networks[0].mode: "mesh" is not one of physical | virtual'],
    ['bad auth', (c) => (c.networks[0].auth = 'aes'), 'fullvr.yaml: networks[0].auth: "aes" is not one of hmac | gmac | aes-gcm | chacha | none'],
    ['no sites', (c) => (c.networks[0].sites = []), 'fullvr.yaml: networks[0].sites: must have at least 1 entry'],
    ['sites not a list', (c) => (c.networks[0].sites = { a: 1 }), 'fullvr.yaml: networks[0].sites: expected a list, got a mapping'],
    ['unknown site vr', (c) => (c.networks[0].sites[1].vr = 7), 'fullvr.yaml: networks[0].sites[1].vr: 7 is neither this VR (id 1) nor one of peers[].id'],
    ['duplicate site name', (c) => (c.networks[0].sites[2].name = 'cloud-a'), 'fullvr.yaml: networks[0].sites[2].name: duplicate site name "cloud-a"'],
    ['lan outside own sites', (c) => (c.networks[0].lan = ['10.2.0.0/25']), 'fullvr.yaml: networks[0].lan[0]: 10.2.0.0/25 is not inside a site subnet served by this VR (id 1)'],
    ['lan without tun', (c) => delete c.tun, 'fullvr.yaml: tun: is required because networks[0].lan is not empty'],
    [
      'lan overlap across networks',
      (c) => (c.networks[1].lan = ['10.200.1.0/24']) && (c.networks[0].lan = ['10.3.0.0/24', '10.3.0.0/25']),
      'fullvr.yaml: networks[0].lan[1]: 10.3.0.0/25 overlaps 10.3.0.0/24 (networks[0].lan[0])',
    ],
    ['token too short', (c) => (c.tokens[0].token = 'short'), 'fullvr.yaml: tokens[0].token: must be at least 16 characters long'],
    ['token with spaces', (c) => (c.tokens[0].token = 'has spaces in it, 123'), 'fullvr.yaml: tokens[0].token: must be printable ASCII without spaces'],
    ['duplicate token', (c) => (c.tokens[1].token = TOKEN), 'fullvr.yaml: tokens[1].token: same token as tokens[0]'],
    ['token for unknown network', (c) => (c.tokens[0].network = 5), 'fullvr.yaml: tokens[0].network: no network with id 5 in networks[]'],
    [
      'token for a network without own site',
      (c) => (c.networks[1].sites = [{ name: 'hub', subnet: '10.200.0.0/16', vr: 2 }]),
      'fullvr.yaml: tokens[1].network: network 2 has no site served by this VR (id 1)',
    ],
    ['keepalive too long', (c) => (c.keepaliveSeconds = 30), 'fullvr.yaml: keepaliveSeconds: must be <= 25 (got 30)'],
    ['moderation too short', (c) => (c.moderationMicros = 5), 'fullvr.yaml: moderationMicros: must be 0 (off) or 10..100000 microseconds'],
    ['pathMtu too small', (c) => (c.pathMtu = 500), 'fullvr.yaml: pathMtu: must be >= 576 (got 500)'],
    [
      'pathMtu too small for IPv6',
      (c) => (c.pathMtu = 1300) && c.networks[0].sites.push({ name: 'v6', subnet: 'fd00::/64', vr: 2 }),
      'fullvr.yaml: pathMtu: 1300 gives a TUN MTU of 1232, below the IPv6 minimum of 1280',
    ],
    ['bad tun name', (c) => (c.tun.name = 'a/b'), 'fullvr.yaml: tun.name: "a/b" is not a valid interface name'],
    ['bad network name', (c) => (c.networks[0].name = 'my net'), 'fullvr.yaml: networks[0].name: "my net" is not a valid name'],
  ];

  for (const [what, mutate, expected] of cases) {
    it(what, () => {
      expect(fullvrError(mutate)).toContain(expected);
    });
  }

  it('never echoes secrets', () => {
    const secretKey = 'S3cretS3cretS3cretS3cretS3cretS3cretS3cret=='; // 44 chars, not a valid 32-byte key
    expect(fullvrError((c) => (c.privateKey = secretKey))).not.toContain('S3cret');
    expect(fullvrError((c) => (c.tokens[0].token = 'tiny-secret'))).not.toContain('tiny-secret');
    expect(fullvrError((c) => (c.tokens[0].token = 42))).toBe('fullvr.yaml: tokens[0].token: expected a string, got 42');
    expect(fullvrError((c) => (c.tokens[0].token = 'a secret with spaces'))).not.toContain('secret');
  });

  it('cannot read file', () => {
    const file = join(dir, 'missing', 'fullvr.yaml');
    expect(oneProblem(() => loadFullvrConfig(file))).toBe(`${file}: cannot read file (ENOENT)`);
    expect(oneProblem(() => loadFullvrConfig(dir))).toBe(`${dir}: cannot read file (EISDIR)`);
  });

  it('missing privateKeyFile', () => {
    const line = fullvrError((c) => {
      delete c.privateKey;
      c.privateKeyFile = 'nope.key';
    });
    expect(line).toMatch(/^fullvr\.yaml: privateKeyFile: cannot read ".*nope\.key" \(ENOENT\)$/);
  });

  it('YAML syntax errors and duplicate keys', () => {
    const a = write('fullvr.yaml', 'id: 1\nnetworks: [\n');
    expect(oneProblem(() => loadFullvrConfig(a))).toMatch(/fullvr\.yaml: line \d+, column \d+: invalid YAML: /);
    const b = write('fullvr.yaml', 'id: 1\nid: 2\n');
    expect(oneProblem(() => loadFullvrConfig(b))).toMatch(/fullvr\.yaml: line 2, column 1: invalid YAML: Map keys must be unique$/);
  });

  it('empty file and wrong top-level type', () => {
    expect(oneProblem(() => loadFullvrConfig(write('fullvr.yaml', '')))).toMatch(/fullvr\.yaml: file is empty$/);
    expect(oneProblem(() => loadFullvrConfig(write('fullvr.yaml', '- 1\n- 2\n')))).toMatch(
      /fullvr\.yaml: expected a mapping \(key: value\) at top level, got a list$/,
    );
  });

  it('reports several problems as several lines', () => {
    const c = baseFullvr();
    c.id = 0;
    c.tunn = 1;
    try {
      parseFullvrConfig(c, 'fullvr.yaml');
      expect.unreachable();
    } catch (e) {
      const ce = e as ConfigError;
      expect(ce.problems).toEqual(['fullvr.yaml: id: must be >= 1 (got 0)', 'fullvr.yaml: unknown key "tunn" at top level']);
      expect(ce.message.split('\n')).toEqual(ce.problems);
    }
  });
});

describe('TinyVR config', () => {
  it('loads and fills defaults', () => {
    const cfg = loadTinyvrConfig(write('tinyvr.yaml', { ...baseTinyvr(), statusFile: '/run/tinyvine/status.json' }));
    expect(cfg).toEqual({
      fullvr: '203.0.113.1:4789',
      fullvrKey: PUB2,
      token: TOKEN,
      tun: { name: 'tvn0' },
      keepaliveSeconds: 10,
      joinTimeoutSeconds: 15,
      moderationMicros: 500,
      shortcuts: true,
      shortcutIdleSeconds: 60,
      direct: true,
      statusFile: '/run/tinyvine/status.json',
    });
    expect(parseTinyvrConfig({ ...baseTinyvr(), fullvr: '[2001:db8::1]:4789', tun: { name: 'ovl0' } }, 'x').tun.name).toBe('ovl0');
  });

  it('loadTinyvrRaw returns the unvalidated mapping for flag merging', () => {
    const file = write('tinyvr.yaml', { token: 'x' });
    expect(loadTinyvrRaw(file)).toEqual({ token: 'x' });
    expect(oneProblem(() => loadTinyvrRaw(write('tinyvr.yaml', '[1]')))).toMatch(/tinyvr\.yaml: expected a mapping/);
  });

  const cases: Array<[string, (c: Obj) => void, string]> = [
    ['keepalive above 25', (c) => (c.keepaliveSeconds = 26), 'tinyvr.yaml: keepaliveSeconds: must be <= 25 (got 26)'],
    ['moderation too long', (c) => (c.moderationMicros = 200000), 'tinyvr.yaml: moderationMicros: must be 0 (off) or 10..100000 microseconds'],
    ['moderation not whole', (c) => (c.moderationMicros = 2.5), 'tinyvr.yaml: moderationMicros: expected an integer, got 2.5'],
    ['shortcut idle negative', (c) => (c.shortcutIdleSeconds = -1), 'tinyvr.yaml: shortcutIdleSeconds: must be >= 0'],
    ['shortcut idle over a day', (c) => (c.shortcutIdleSeconds = 90000), 'tinyvr.yaml: shortcutIdleSeconds: must be <= 86400'],
    ['missing key', (c) => delete c.fullvrKey, 'tinyvr.yaml: fullvrKey: is required'],
    ['bad key', (c) => (c.fullvrKey = 'nope'), 'tinyvr.yaml: fullvrKey: must be a 32-byte key in base64'],
    ['bad endpoint', (c) => (c.fullvr = '[2001:db8::1]4789'), 'tinyvr.yaml: fullvr: "[2001:db8::1]4789" is not a valid endpoint'],
    ['missing port', (c) => (c.fullvr = '203.0.113.1'), 'tinyvr.yaml: fullvr: "203.0.113.1" is not a valid endpoint (missing ":port")'],
    ['unknown key', (c) => (c.status_file = '/x'), 'tinyvr.yaml: unknown key "status_file" at top level'],
    ['unknown tun key', (c) => (c.tun = { name: 'tvn0', mtu: 1400 }), 'tinyvr.yaml: unknown key "mtu" in tun'],
    ['short token', (c) => (c.token = 'abc'), 'tinyvr.yaml: token: must be at least 16 characters long'],
    ['empty status path', (c) => (c.statusFile = ''), 'tinyvr.yaml: statusFile: must be at least 1 character long'],
  ];
  for (const [what, mutate, expected] of cases) {
    it(what, () => {
      expect(tinyvrError(mutate)).toContain(expected);
    });
  }

  it('cannot read file', () => {
    const file = join(dir, 'nowhere', 'tinyvr.yaml');
    expect(oneProblem(() => loadTinyvrConfig(file))).toBe(`${file}: cannot read file (ENOENT)`);
  });
});
