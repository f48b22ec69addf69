// Bad input and hostile environments: each failure exits non-zero with ONE line naming the
// problem, and leaves nothing behind (no TUN, no route, no changed sysctl).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { generateKeyPair } from '../../shared/handshake.js';
import { run, type RunResult } from './netns.js';
import { createLab, labSupport, type Lab } from './topology.js';
import { CLI, Overlay } from './overlay-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'tinyvine-cli-'));
const key = generateKeyPair();

function cli(args: string[], opts: { input?: string } = {}): Promise<RunResult> {
  return run([process.execPath, CLI, ...args], { check: false, timeoutMs: 30_000, input: opts.input });
}

function oneLine(r: RunResult): string {
  const lines = r.stderr.trim().split('\n');
  expect(lines, `stderr was:\n${r.stderr}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^tinyvine: /);
  return lines[0];
}

function file(name: string, body: string | object): string {
  const p = join(dir, name);
  writeFileSync(p, typeof body === 'string' ? body : stringify(body));
  return p;
}

const goodFullvr = () => ({
  id: 1,
  listen: '127.0.0.1:47999',
  privateKey: key.privateKey,
  networks: [{ id: 1, name: 'n', mode: 'physical', sites: [{ name: 's', subnet: '10.1.0.0/24', vr: 1 }] }],
  tokens: [{ token: 'token-0123456789abcdef', network: 1 }],
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('configuration and flag errors', () => {
  it.each([
    ['missing file', () => ['fullvr', '--config', join(dir, 'nope.yaml')], /nope\.yaml.*(ENOENT|cannot read)/],
    ['malformed YAML', () => ['fullvr', '--config', file('bad.yaml', 'id: [1,\n  listen')], /bad\.yaml/],
    ['bad CIDR', () => ['fullvr', '--config', file('cidr.yaml', { ...goodFullvr(), networks: [{ id: 1, name: 'n', mode: 'physical', sites: [{ name: 's', subnet: '10.1.0.0/33', vr: 1 }] }] })], /cidr\.yaml.*10\.1\.0\.0\/33/],
    ['unknown key', () => ['fullvr', '--config', file('key.yaml', { ...goodFullvr(), tunn: {} })], /key\.yaml.*tunn/],
    ['unknown flag', () => ['fullvr', '--bogus'], /bogus/],
    ['unknown command', () => ['frobnicate'], /unknown command "frobnicate"/],
    ['tinyvr without FullVR', () => ['tinyvr', '--token', 'x'.repeat(20)], /fullvr/],
    ['bad keepalive', () => ['tinyvr', '--fullvr', '192.0.2.1:4789', '--fullvr-key', key.publicKey, '--token', 'x'.repeat(20), '--keepalive', '60'], /keepalive/i],
    ['bad moderation', () => ['tinyvr', '--fullvr', '192.0.2.1:4789', '--fullvr-key', key.publicKey, '--token', 'x'.repeat(20), '--moderation-us', '5'], /moderationMicros: must be 0 \(off\) or 10\.\.100000/],
    ['moderation not a number', () => ['tinyvr', '--fullvr', '192.0.2.1:4789', '--fullvr-key', key.publicKey, '--token', 'x'.repeat(20), '--moderation-us', 'fast'], /--moderation-us: "fast" is not a whole number of microseconds/],
    ['shortcut idle not a number', () => ['tinyvr', '--fullvr', '192.0.2.1:4789', '--fullvr-key', key.publicKey, '--token', 'x'.repeat(20), '--shortcut-idle', 'soon'], /--shortcut-idle: "soon" is not a whole number of seconds/],
    ['bad key', () => ['tinyvr', '--fullvr', '192.0.2.1:4789', '--fullvr-key', 'abc', '--token', 'x'.repeat(20)], /fullvrKey|key/],
  ])('%s -> one line, non-zero exit', async (_name, args, re) => {
    const r = await cli(args());
    expect(r.code).not.toBe(0);
    expect(oneLine(r)).toMatch(re);
  });

  it('an unknown TINYVINE_GMAC is an error, not silently ignored (and nothing is set up)', async () => {
    const links = (await run(['ip', '-o', 'link', 'show'], { check: false })).stdout;
    const r = await run([process.execPath, CLI, 'fullvr', '--config', file('gmac.yaml', goodFullvr())], {
      check: false,
      timeoutMs: 30_000,
      env: { ...process.env, TINYVINE_GMAC: 'avx512' },
    });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/TINYVINE_GMAC must be "openssl" or "avx2" \(or unset\), not "avx512"/);
    expect((await run(['ip', '-o', 'link', 'show'], { check: false })).stdout).toBe(links);
  });

  it('a file with several problems still gives one line (the first, and how many more)', async () => {
    const r = await cli(['fullvr', '--config', file('many.yaml', { ...goodFullvr(), id: 0, listen: 'nope', extra: 1 })]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(/more problem/);
  });

  it('UDP port already in use', async () => {
    const dgram = await import('node:dgram');
    const s = dgram.createSocket('udp4');
    await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
    const port = s.address().port;
    const r = await cli(['fullvr', '--config', file('port.yaml', { ...goodFullvr(), listen: `127.0.0.1:${port}` })]);
    s.close();
    expect(r.code).not.toBe(0);
    expect(oneLine(r)).toMatch(/in use/i);
  });

  it('keygen and pubkey agree', async () => {
    const k = await cli(['keygen']);
    const [priv, pub] = k.stdout.trim().split('\n').map((l) => l.split(/\s+/)[1]);
    const p = await cli(['pubkey'], { input: priv + '\n' });
    expect(p.stdout.trim()).toBe(pub);
  });
});

const support = await labSupport(['ip', 'nft', 'ping', 'unshare', 'setpriv']);
if (!support.ok) console.warn(`SKIP environment-error lab tests: ${support.reason}`);

describe.skipIf(!support.ok)('environment errors leave nothing behind', () => {
  let lab: Lab;
  let ov: Overlay;

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1'] },
        { name: 'c', kind: 'lan', publicPrefix: '192.0.2.0/25', subnet: '10.3.0.0/24', hosts: ['h1'] },
      ],
    });
    ov = new Overlay(
      lab,
      [
        {
          id: 1,
          name: 'blue',
          mode: 'physical',
          sites: [
            { site: 'a', subnet: '10.1.0.0/24' },
            { site: 'c', subnet: '10.3.0.0/24' },
          ],
          lan: [{ site: 'c', prefix: '10.3.0.0/24' }],
          token: 'blue-token-0123456789abcdef',
        },
      ],
      ['a', 'c'],
    );
    await ov.startFullvr('a');
  }, 30_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
  });

  async function leftovers(node: string): Promise<string> {
    const links = (await lab.exec(node, ['ip', '-o', 'link', 'show'])).stdout;
    const routes = (await lab.exec(node, ['ip', 'route', 'show'])).stdout;
    return [...links.split('\n').filter((l) => /tvn0|tvfvr0/.test(l)), ...routes.split('\n').filter((l) => /tvn0|tvfvr0/.test(l))].join('\n');
  }

  const tinyvrArgs = (token = 'blue-token-0123456789abcdef', fullvr = ov.endpoint('a')) => [
    process.execPath,
    CLI,
    'tinyvr',
    '--fullvr',
    fullvr,
    '--fullvr-key',
    ov.fullvrs.get('a')!.publicKey,
    '--token',
    token,
    '--join-timeout',
    '2',
  ];

  it('FullVR unreachable: clear message after the join timeout, no TUN or route left', async () => {
    const r = await lab.exec('a1', tinyvrArgs(undefined, '192.0.2.99:4789'), { check: false, timeoutMs: 20_000 });
    expect(r.code).not.toBe(0);
    expect(oneLine(r)).toMatch(/did not answer within 2 s/);
    expect(await leftovers('a1')).toBe('');
  });

  it('wrong token: join refused by the FullVR (exit 4), no TUN or route left', async () => {
    const r = await lab.exec('a1', tinyvrArgs('not-the-right-token-xyz'), { check: false, timeoutMs: 20_000 });
    expect(r.code).toBe(4);
    expect(oneLine(r)).toMatch(/join refused.*token not accepted/);
    expect(await leftovers('a1')).toBe('');
    expect((await ov.fullvrStatus('a')).counters.joins_refused).toBeGreaterThanOrEqual(1);
  });

  it('no /dev/net/tun: clear message, nothing created', async () => {
    const r = await lab.exec('a1', ['unshare', '-m', 'sh', '-c', `mount -t tmpfs none /dev/net && exec "$@"`, 'sh', ...tinyvrArgs()], { check: false });
    expect(r.code).not.toBe(0);
    expect(oneLine(r)).toMatch(/\/dev\/net\/tun does not exist/);
    expect(await leftovers('a1')).toBe('');
  });

  it('not root: clear message, nothing created', async () => {
    // The checkout may sit in a directory only root can read: give nobody its own copy of the CLI.
    const pub = mkdtempSync(join(tmpdir(), 'tinyvine-nobody-'));
    chmodSync(pub, 0o755);
    copyFileSync(CLI, join(pub, 'tinyvine.mjs'));
    const args = tinyvrArgs().map((a) => (a === CLI ? join(pub, 'tinyvine.mjs') : a));
    const r = await lab.exec('a1', ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...args], { check: false });
    rmSync(pub, { recursive: true, force: true });
    expect(r.code).not.toBe(0);
    expect(oneLine(r)).toMatch(/must run as root/);
    expect(await leftovers('a1')).toBe('');
  });

  it('a LAN FullVR that fails late (status port taken) removes its TUN and restores ip_forward', async () => {
    const fwd0 = (await lab.exec('c-fvr', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim();
    // Hold the control port so the FullVR fails after it created its TUN and routes.
    const holder = lab.spawn('c-fvr', [process.execPath, '-e', "require('net').createServer().listen(4790,'127.0.0.1',()=>console.log('holding'))"]);
    await holder.waitForLog(/holding/, 5000);
    await lab.exec('c-fvr', ['sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    const r = await lab.exec('c-fvr', [process.execPath, CLI, 'fullvr', '--config', ov.fullvrs.get('c')!.configPath], { check: false });
    await holder.kill();
    expect(r.code).not.toBe(0);
    expect(oneLine(r)).toMatch(/status endpoint .*in use/);
    expect(await leftovers('c-fvr')).toBe('');
    expect((await lab.exec('c-fvr', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('0');
    await lab.exec('c-fvr', ['sysctl', '-qw', `net.ipv4.ip_forward=${fwd0}`]);
  });
});
