// Management end to end: networks, sites and FullVRs created through the CLI against the
// authority; FullVRs driven only by the signed tables it pushes. Isolation, merge, split,
// host leave, an authority restart, and tables a FullVR must refuse.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { generateKeyPair } from '../../shared/handshake.js';
import { generateSigningKey, loadSigningKey } from '../../shared/join-token.js';
import { signTables } from '../../shared/signed-tables.js';
import { createLab, labSupport, type Lab } from './topology.js';
import { CLI, FULLVR_CONTROL, TINYVR_CONTROL, waitFor } from './overlay-harness.js';
import type { SpawnHandle } from './netns.js';

const support = await labSupport(['ip', 'nft', 'ping', 'curl']);
if (!support.ok) console.warn(`SKIP authority lab tests: ${support.reason}`);

const SERVER = 'http://198.51.100.1:8080';
const FV_TOKEN = 'fullvr-api-token-0123456789';
const ADMIN = 'bootstrap-admin-token-0123456789';

describe.skipIf(!support.ok)('authority: networks managed through the CLI, tables pushed to FullVRs', () => {
  let lab: Lab;
  let server: SpawnHandle;
  const fullvrs = new Map<string, { id: number; key: { publicKey: string; privateKey: string }; proc: SpawnHandle | null; cfg: string }>();
  const tinyvrs: SpawnHandle[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'tinyvine-auth-'));
  const authKey = generateSigningKey();
  const serverCfg = join(dir, 'server.yaml');

  const cli = async (...args: string[]) => {
    const r = await lab.exec('inet', [process.execPath, CLI, ...args], {
      check: false,
      env: { ...process.env, TINYVINE_SERVER: SERVER, TINYVINE_API_TOKEN: ADMIN },
    });
    if (r.code !== 0) throw new Error(`tinyvine ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };
  const startServer = async () => {
    server = lab.spawn('inet', [process.execPath, CLI, 'server', '--config', serverCfg], { logFile: join(lab.logsDir, `server-${Date.now()}.log`) });
    await server.waitForLog(/download server ready/, 30_000);
  };
  const status = async (site: string) => JSON.parse((await lab.exec(`${site}-fvr`, ['curl', '-sf', `http://${FULLVR_CONTROL}/status`])).stdout);
  const joinVm = async (vm: string, site: string, network: number) => {
    const out = await cli('token', 'create', String(network), '--json');
    const token = (JSON.parse(out).tokens ?? JSON.parse(out))[0].token as string;
    const f = fullvrs.get(site)!;
    const h = lab.spawn(vm, [
      process.execPath,
      CLI,
      'tinyvr',
      '--fullvr',
      `${lab.site(site).fullvrPublic}:4789`,
      '--fullvr-key',
      f.key.publicKey,
      '--token',
      token,
      '--keepalive',
      '2',
      '--control',
      TINYVR_CONTROL,
    ]);
    tinyvrs.push(h);
    await h.waitForLog(/ joined /, 15_000);
  };
  /**
   * Pings until a1 and b1 have a direct path (the FullVRs introduce members of one network,
   * and by default they do): removal and isolation must hold on it too, not only at FullVRs.
   */
  const directUp = async () =>
    waitFor(
      async () => {
        await lab.ping('a1', '10.2.0.11', { count: 1, waitS: 0.3 });
        const up = async (vm: string, peer: string) =>
          JSON.parse((await lab.exec(vm, ['curl', '-sf', `http://${TINYVR_CONTROL}/status`])).stdout).direct.some((d: any) => d.peer.includes(peer) && d.state === 'up');
        return (await up('a1', '10.2.0.11')) && (await up('b1', '10.1.0.11'));
      },
      15_000,
      200,
    );
  /** ms until `from` reaches `to` (ok) or stops reaching it (!ok), probing every 50 ms. */
  const until = async (from: string, to: string, ok: boolean, limitMs = 5000) => {
    const t0 = Date.now();
    await waitFor(async () => (await lab.ping(from, to, { count: 1, waitS: 0.2 })).ok === ok, limitMs, 20);
    return Date.now() - t0;
  };

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1', 'a2'] },
        { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: ['b1', 'b2'] },
      ],
    });
    mkdirSync(join(dir, 'data'));
    mkdirSync(join(dir, 'catalog'));
    writeFileSync(join(dir, 'data', 'authority.key'), authKey.privateKey + '\n', { mode: 0o600 });
    writeFileSync(serverCfg, stringify({ listen: '198.51.100.1:8080', dataDir: join(dir, 'data'), catalog: join(dir, 'catalog'), apiToken: FV_TOKEN, bootstrapToken: ADMIN, heartbeatTimeoutSeconds: 5 }));
    await startServer();
    let id = 1;
    for (const site of ['a', 'b']) {
      const key = generateKeyPair();
      const cfg = join(dir, `fullvr-${site}.yaml`);
      writeFileSync(
        cfg,
        stringify({
          id,
          listen: '0.0.0.0:4789',
          privateKey: key.privateKey,
          control: FULLVR_CONTROL,
          keepaliveSeconds: 2,
          // introduce members to each other: removal and isolation must hold on direct paths too
          directPaths: true,
          authority: { publicKey: authKey.publicKey, url: SERVER, apiToken: FV_TOKEN, heartbeatSeconds: 1, managed: true },
        }),
      );
      fullvrs.set(site, { id: id++, key, proc: null, cfg });
    }
    // Operator set-up, all through the CLI.
    await cli('site', 'add', 'a', '--provider', 'aws', '--region', 'us-east-1', '--subnet', '10.1.0.0/24');
    await cli('site', 'add', 'b', '--provider', 'gcp', '--region', 'europe-west1', '--subnet', '10.2.0.0/24');
    for (const [site, f] of fullvrs) {
      await cli('fullvr', 'register', '--id', String(f.id), '--site', site, '--endpoint', `${lab.site(site).fullvrPublic}:4789`, '--public-key', f.key.publicKey);
    }
    await cli('net', 'create', '--id', '10', '--name', 'blue', '--site', 'a');
    await cli('net', 'create', '--id', '20', '--name', 'red', '--site', 'b');
    for (const [site, f] of fullvrs) {
      f.proc = lab.spawn(`${site}-fvr`, [process.execPath, CLI, 'fullvr', '--config', f.cfg], { logFile: join(lab.logsDir, `fullvr-${site}.log`) });
      await f.proc.waitForLog(/tables applied/, 15_000);
    }
    await joinVm('a1', 'a', 10);
    await joinVm('b1', 'b', 20);
    // The authority learns its hosts from the FullVRs' heartbeats.
    await waitFor(async () => (await cli('host', 'list', '--json')).includes('10.2.0.11') && (await cli('host', 'list', '--json')).includes('10.1.0.11'), 10_000);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(tinyvrs.map((h) => h.kill()));
    await Promise.all([...fullvrs.values()].map((f) => f.proc?.kill()));
    await server?.kill();
    await lab?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('two networks created through the CLI are isolated', async () => {
    expect((await lab.ping('a1', '10.2.0.11', { count: 2, waitS: 0.5 })).received).toBe(0);
    const nets = await cli('net', 'list');
    expect(nets).toMatch(/blue/);
    expect(nets).toMatch(/red/);
  });

  it('merging them connects their hosts within 1 s', async () => {
    const t0 = Date.now();
    await cli('net', 'merge', '10', '20');
    const ms = await until('a1', '10.2.0.11', true);
    console.log(`merge: reachable ${Date.now() - t0} ms after the CLI call (${ms} ms after it returned)`);
    expect(Date.now() - t0).toBeLessThan(1000 + 500); // the CLI process start itself takes a few hundred ms
    expect((await lab.ping('b1', '10.1.0.11', { count: 2 })).ok).toBe(true);
  });

  it('splitting them isolates them again within 1 s', async () => {
    await directUp();
    const t0 = Date.now();
    await cli('net', 'split', '10', '--sites', 'b', '--new-id', '30', '--new-name', 'red2');
    await until('a1', '10.2.0.11', false);
    console.log(`split: isolated ${Date.now() - t0} ms after the CLI call`);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('a host that leaves is cut off within 1 s, and its rejoin is refused', async () => {
    await cli('net', 'merge', '10', '30');
    await until('a1', '10.2.0.11', true);
    await directUp();
    const t0 = Date.now();
    await cli('host', 'leave', '10', '10.2.0.11');
    await until('a1', '10.2.0.11', false);
    console.log(`host leave: cut off ${Date.now() - t0} ms after the CLI call`);
    expect(Date.now() - t0).toBeLessThan(1500);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await lab.ping('a1', '10.2.0.11', { count: 2, waitS: 0.5 })).received).toBe(0);
    expect((await status('b')).joinRefusals.host_left ?? 0).toBeGreaterThanOrEqual(1);
  });

  it('joining the host back through the CLI lets it in again', async () => {
    const t0 = Date.now();
    await cli('host', 'join', '10', '10.2.0.11');
    // The FullVR accepts it at once; the TinyVR's next rejoin attempt (it backs off to 2 s) gets in.
    await until('a1', '10.2.0.11', true, 6000);
    console.log(`host join: reachable ${Date.now() - t0} ms after the CLI call`);
    expect(Date.now() - t0).toBeLessThan(3500);
  });

  it('restarting the authority loses nothing, and FullVRs resync', async () => {
    const before = await cli('net', 'list', '--json');
    await server.kill();
    await startServer();
    expect(await cli('net', 'list', '--json')).toBe(before);
    await waitFor(async () => (await status('a')).counters.tables_applied >= 1 && (await status('a')).peers.every((p: any) => p.up), 10_000);
    expect((await lab.ping('a1', '10.1.0.11', { count: 1 })).ok).toBe(true);
  });

  it('a FullVR rejects tables signed by another key or older than what it has', async () => {
    // A stand-in authority in inet on :8090 streams: v5 signed right, then v3 (older), then v6 signed by a stranger.
    const good = loadSigningKey(authKey.privateKey);
    const bad = loadSigningKey(generateSigningKey().privateKey);
    const body = (version: number) => ({ version, fullvr: 9, peers: [], networks: [], members: [], revokedTokens: [] });
    const events = [signTables(good.privateKey, body(5)), signTables(good.privateKey, body(3)), signTables(bad.privateKey, body(6))];
    const script = `require('http').createServer((q,r)=>{if(!q.url.includes('/tables/stream')){r.writeHead(200);return r.end('{}')}r.writeHead(200,{'content-type':'text/event-stream'});for(const e of ${JSON.stringify(events)})r.write('data: '+JSON.stringify(e)+'\\n\\n')}).listen(8090,'198.51.100.1',()=>console.log('fake authority up'))`;
    const fake = lab.spawn('inet', [process.execPath, '-e', script]);
    await fake.waitForLog(/fake authority up/, 5000);
    const key = generateKeyPair();
    const cfg = join(dir, 'fullvr-fake.yaml');
    writeFileSync(cfg, stringify({ id: 9, listen: '0.0.0.0:4799', privateKey: key.privateKey, control: '127.0.0.1:4798', authority: { publicKey: authKey.publicKey, url: 'http://198.51.100.1:8090', apiToken: FV_TOKEN, heartbeatSeconds: 300, managed: true } }));
    const fv = lab.spawn('a-fvr', [process.execPath, CLI, 'fullvr', '--config', cfg]);
    await fv.waitForLog(/tables applied version=5/, 10_000);
    await fv.waitForLog(/tables rejected.*version 3 is not newer than 5/, 5000);
    await fv.waitForLog(/tables rejected.*signature does not verify/, 5000);
    const st = JSON.parse((await lab.exec('a-fvr', ['curl', '-sf', 'http://127.0.0.1:4798/status'])).stdout);
    expect(st.tables.version).toBe(5);
    expect(st.counters.tables_rejected).toBe(2);
    await fv.kill();
    await fake.kill();
  }, 30_000);
});
