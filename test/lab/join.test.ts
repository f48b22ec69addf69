// Zero-config join end to end: a download server on the simulated internet recognises each
// VM's cloud from its (NATed) source address, picks that cloud's FullVR, and the VM joins
// with exactly `curl -fsSL http://<server>/join | sh`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { generateSigningKey, issueToken, loadSigningKey } from '../../shared/join-token.js';
import { createLab, labSupport, type Lab } from './topology.js';
import { blueNetwork, CLI, Overlay, waitFor, writeJoinLabState } from './overlay-harness.js';
import type { SpawnHandle } from './netns.js';

const support = await labSupport(['ip', 'nft', 'ping', 'curl']);
if (!support.ok) console.warn(`SKIP join lab tests: ${support.reason}`);

const SERVER = 'http://198.51.100.1:8080';

/** A process that exited but was not reaped (our container's init may not reap) counts as gone. */
function alive(pid: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}
const API_TOKEN = 'api-token-0123456789abcdef';

describe.skipIf(!support.ok)('zero-config join with curl | sh', () => {
  let lab: Lab;
  let ov: Overlay;
  let server: SpawnHandle;
  const dir = mkdtempSync(join(tmpdir(), 'tinyvine-join-'));
  const key = generateSigningKey();
  const prefix = (vm: string) => join(dir, 'vm', vm);

  /** Exactly the documented one-liner; the env only keeps lab VMs (which share one filesystem) apart. */
  const joinCmd = (vm: string, url = `${SERVER}/join`) => [
    'sh',
    '-c',
    `curl -fsSL '${url}' | TINYVINE_PREFIX='${prefix(vm)}' TINYVINE_NO_SYSTEMD=1 sh`,
  ];

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1', 'a2'] },
        { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: ['b1'] },
        { name: 'x', kind: 'cloud', publicPrefix: '192.0.2.0/25', subnet: '10.9.0.0/24', vms: ['x1'], fullvr: false },
      ],
    });
    // The providers' own formats, test ranges only: a -> aws/us-east-1, b -> gcp/europe-west1; x unknown.
    const { catalog } = writeJoinLabState(dir, key.privateKey);
    ov = new Overlay(
      lab,
      [blueNetwork(['a', 'b'], { token: 'static-token-unused-0123456789' })],
      ['a', 'b'],
      {
        authority: { publicKey: key.publicKey, url: SERVER, apiToken: API_TOKEN, heartbeatSeconds: 1 },
        placement: { a: ['aws', 'us-east-1'], b: ['gcp', 'europe-west1'] },
      },
    );
    const serverCfg = join(dir, 'server.yaml');
    writeFileSync(
      serverCfg,
      stringify({
        listen: '198.51.100.1:8080',
        dataDir: join(dir, 'data'),
        catalog,
        apiToken: API_TOKEN,
        heartbeatTimeoutSeconds: 5,
        fullvrs: [...ov.fullvrs.values()].map((f) => ({
          id: f.id,
          endpoint: ov.endpoint(f.site),
          publicKey: f.publicKey,
          provider: ov.opts.placement![f.site][0],
          region: ov.opts.placement![f.site][1],
          networks: [1],
        })),
      }),
    );
    server = lab.spawn('inet', [process.execPath, CLI, 'server', '--config', serverCfg], { logFile: join(lab.logsDir, 'server.log') });
    await server.waitForLog(/download server ready/, 30_000);
    await ov.startAllFullvrs();
    // Both FullVRs must have reported in before VMs ask for one.
    await waitFor(async () => {
      const r = await lab.exec('inet', ['curl', '-sf', '-H', `authorization: Bearer ${API_TOKEN}`, `${SERVER}/api/v1/fullvrs`]);
      return (JSON.parse(r.stdout) as Array<{ healthy: boolean }>).every((f) => f.healthy);
    }, 15_000);
  }, 90_000);

  afterAll(async () => {
    for (const vm of ['a1', 'a2', 'b1']) {
      if (lab && existsSync(prefix(vm))) await lab.exec(vm, joinCmd(vm, `${SERVER}/join?uninstall=1`), { check: false });
    }
    await server?.kill();
    await ov?.stop();
    await lab?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const status = (vm: string) => JSON.parse(readFileSync(join(prefix(vm), 'status.json'), 'utf8'));

  it('VMs join with the one-liner, each on its own cloud\'s FullVR, and reach each other', async () => {
    const ra = await lab.exec('a1', joinCmd('a1'), { timeoutMs: 60_000 });
    expect(ra.stdout + ra.stderr).toMatch(/joined network 1 as 10\.1\.0\.11 via FullVR 198\.51\.100\.3:4789 \(same provider and region \(aws\/us-east-1\)/);
    const rb = await lab.exec('b1', joinCmd('b1'), { timeoutMs: 60_000 });
    expect(rb.stdout + rb.stderr).toMatch(/joined network 1 as 10\.2\.0\.11 via FullVR 203\.0\.113\.3:4789 \(same provider and region \(gcp\/europe-west1\)/);
    expect(status('a1').state).toBe('joined');
    const p1 = await lab.ping('a1', '10.2.0.11', { count: 3 });
    if (!p1.ok) console.log('PING', p1.output, JSON.stringify((await ov.fullvrStatus('a')).engine), JSON.stringify((await ov.fullvrStatus('b')).drops));
    expect(p1.ok).toBe(true);
    expect((await lab.ping('b1', '10.1.0.11', { count: 3 })).ok).toBe(true);
    // Heartbeats carry per-peer link metrics (handshake RTT, throughput from real traffic).
    await waitFor(async () => {
      const r = await lab.exec('inet', ['curl', '-sf', '-H', `authorization: Bearer ${API_TOKEN}`, `${SERVER}/api/v1/fullvrs`]);
      const f1 = (JSON.parse(r.stdout) as Array<{ id: number; peers: Array<{ id: number; up: boolean; rxBps: unknown; txBps: unknown }> | null }>).find((f) => f.id === 1);
      return f1?.peers?.some((p) => p.id === 2 && p.up && typeof p.rxBps === 'number' && typeof p.txBps === 'number');
    }, 10_000);
  }, 120_000);

  it('running the one-liner again is harmless: one process, same routes, still connected', async () => {
    const pid1 = readFileSync(join(prefix('a1'), 'tinyvine.pid'), 'utf8').trim();
    await lab.exec('a1', joinCmd('a1'), { timeoutMs: 60_000 });
    const pid2 = readFileSync(join(prefix('a1'), 'tinyvine.pid'), 'utf8').trim();
    // The old supervisor is gone, exactly one new one runs.
    if (pid1 !== pid2) expect(alive(pid1)).toBe(false);
    expect(alive(pid2)).toBe(true);
    const routes = JSON.parse((await lab.exec('a1', ['ip', '-j', 'route', 'show', 'dev', 'tvn0'])).stdout) as Array<{ dst: string }>;
    expect(routes.map((r) => r.dst)).toEqual(['10.2.0.0/24']);
    const tuns = (await lab.exec('a1', ['ip', '-o', 'link', 'show'])).stdout.split('\n').filter((l) => l.includes('tvn'));
    expect(tuns).toHaveLength(1);
    expect((await lab.ping('a1', '10.2.0.11', { count: 2 })).ok).toBe(true);
  }, 120_000);

  it('a VM from an unknown range gets 403 with an explanation, and nothing is installed', async () => {
    const r = await lab.exec('x1', ['curl', '-sS', '-w', '\\n%{http_code}', `${SERVER}/join`], { check: false });
    const lines = r.stdout.trim().split('\n');
    const code = lines.pop();
    const body = lines.join('\n');
    expect(code).toBe('403');
    expect(body).toMatch(/not in any known cloud provider range or operator site.*sites\.json/);
    await lab.exec('x1', joinCmd('x1'), { check: false });
    expect(existsSync(prefix('x1'))).toBe(false);
    expect((await lab.exec('x1', ['ip', '-o', 'link', 'show'])).stdout).not.toContain('tvn');
  });

  it('a forged X-Forwarded-For from an untrusted peer changes nothing', async () => {
    const r = await lab.exec('a2', ['curl', '-s', '-D', '-', '-o', '/dev/null', '-H', 'X-Forwarded-For: 203.0.113.50', `${SERVER}/join`]);
    expect(r.stdout).toMatch(/X-TinyViNe-FullVR: 1 198\.51\.100\.3:4789/i);
  });

  it('bad requests get a clear 4xx, never a partial script', async () => {
    for (const [url, code] of [
      [`${SERVER}/join?arch=sparc`, '400'],
      [`${SERVER}/join?bogus=1`, '400'],
      [`${SERVER}/join?network=abc`, '400'],
      [`${SERVER}/join?${'a'.repeat(3000)}=1`, '414'],
    ] as const) {
      const r = await lab.exec('a2', ['curl', '-s', '-w', '\\n%{http_code}', url]);
      const lines = r.stdout.trim().split('\n');
      expect(lines.pop()).toBe(code);
      expect(lines.join('\n').trim()).toMatch(/^echo 'tinyvine: .*' >&2; exit 3$/);
    }
    // Oversized headers are refused by the HTTP parser itself; the answer is still a whole
    // refusal script and curl exits 0 (no reset while it is still sending).
    const big = await lab.exec('a2', ['curl', '-s', '-w', '\\n%{http_code}', '-H', `X-Junk: ${'x'.repeat(100_000)}`, `${SERVER}/join`]);
    expect(big.stdout).toBe("echo 'tinyvine: request headers too large' >&2; exit 3\n\n431");
  });

  it('tampered, expired and reused single-use tokens make the TinyVR exit with a clear message, counted by the FullVR', async () => {
    const sk = loadSigningKey(key.privateKey);
    const fa = ov.fullvrs.get('a')!;
    const args = (token: string) => [process.execPath, CLI, 'tinyvr', '--fullvr', ov.endpoint('a'), '--fullvr-key', fa.publicKey, '--token', token, '--join-timeout', '5', '--tun', 'tvt0'];
    const good = issueToken(sk, { network: 1, fullvr: fa.id, ttlSeconds: 600, singleUse: true }).token;
    const tampered = good.slice(0, 12) + (good[12] === 'A' ? 'B' : 'A') + good.slice(13);
    const expired = issueToken(sk, { network: 1, fullvr: fa.id, ttlSeconds: 60, now: Date.now() - 3600_000 }).token;
    const otherVr = issueToken(sk, { network: 1, fullvr: 2, ttlSeconds: 600 }).token;
    const before = (await ov.fullvrStatus('a')).joinRefusals;
    for (const [tok, re] of [
      [tampered, /signature is invalid/],
      [expired, /expired/],
      [otherVr, /issued for FullVR 2/],
    ] as const) {
      const r = await lab.exec('a2', args(tok), { check: false, timeoutMs: 20_000 });
      expect(r.code).toBe(4);
      expect(r.stderr.trim()).toMatch(re);
    }
    // First use joins; the same single-use token again is refused.
    const first = lab.spawn('a2', args(good));
    await first.waitForLog(/ joined /, 15_000);
    await first.kill();
    const again = await lab.exec('a2', args(good), { check: false, timeoutMs: 20_000 });
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/already used/);
    const after = (await ov.fullvrStatus('a')).joinRefusals;
    const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    expect(d('bad_signature')).toBe(1);
    expect(d('expired')).toBe(1);
    expect(d('wrong_fullvr')).toBe(1);
    expect(d('reused')).toBe(1);
  }, 90_000);

  it('uninstall removes everything: no route, TUN, process or file', async () => {
    const pid = readFileSync(join(prefix('b1'), 'tinyvine.pid'), 'utf8').trim();
    const r = await lab.exec('b1', joinCmd('b1', `${SERVER}/join?uninstall=1`), { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    expect(existsSync(prefix('b1'))).toBe(false);
    expect(alive(pid)).toBe(false);
    expect((await lab.exec('b1', ['ip', '-o', 'link', 'show'])).stdout).not.toContain('tvn');
    expect((await lab.exec('b1', ['ip', 'route', 'show'])).stdout).not.toContain('tvn');
  });
});
