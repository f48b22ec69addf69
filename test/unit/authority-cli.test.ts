import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningKey, loadSigningKey, loadVerifyKey, verifyToken } from '../../shared/join-token.js';
import { createAuthority } from '../../download-server/authority/api.js';
import { FileStore } from '../../download-server/authority/store.js';
import { runAuthorityCli, type CliGroup } from '../../download-server/authority/cli.js';

const BOOT = 'bootstrap-secret-0123456789';
const key = (i: number) => Buffer.alloc(32, i).toString('base64');
const signingKey = loadSigningKey(generateSigningKey().privateKey);

let dir: string;
let server: Server;
let base: string;
let admin: string;
let user: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tv-authority-cli-'));
  const a = createAuthority({ store: new FileStore(join(dir, 'authority.json')), signingKey, bootstrapAdminToken: BOOT });
  const app = express();
  app.use('/api/v1', a.router);
  server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const res = await fetch(`${base}/api/v1/api-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BOOT}`, 'content-type': 'application/json' },
    body: JSON.stringify({ role: 'admin' }),
  });
  admin = ((await res.json()) as { token: string }).token;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

async function cli(group: CliGroup, argv: string[], env: Record<string, string | undefined> = {}) {
  let out = '';
  let err = '';
  const code = await runAuthorityCli(group, argv, {
    out: { write: (s: string) => (out += s) },
    err: { write: (s: string) => (err += s) },
    env: { TINYVINE_SERVER: base, TINYVINE_API_TOKEN: admin, ...env },
  });
  return { code, out, err };
}

const ok = async (group: CliGroup, argv: string[], env?: Record<string, string | undefined>) => {
  const r = await cli(group, argv, env);
  expect(r.err, `${group} ${argv.join(' ')}`).toBe('');
  expect(r.code).toBe(0);
  return r.out;
};

describe('authority CLI', () => {
  it('prints help everywhere and refuses bad usage with exit 2', async () => {
    const g = await cli('net', ['--help']);
    expect(g.code).toBe(0);
    expect(g.out).toContain('Usage: tinyvine net <command>');
    expect(g.out).toContain('tinyvine net split ID');
    const s = await cli('token', ['create', '--help']);
    expect(s).toMatchObject({ code: 0, err: '' });
    expect(s.out).toContain('--expires-in');
    expect(s.out).toContain('TINYVINE_API_TOKEN');
    expect((await cli('site', [])).code).toBe(2);
    const unknown = await cli('net', ['frobnicate']);
    expect(unknown).toMatchObject({ code: 2, out: '' });
    expect(unknown.err).toBe('tinyvine: net: unknown command "frobnicate" (known: create, list, show, delete, shutdown, add-site, merge, split) (see --help)\n');
    const flag = await cli('net', ['list', '--bogus']);
    expect(flag.code).toBe(2);
    expect(flag.err).toMatch(/^tinyvine: net list: Unknown option '--bogus'.*\(see --help\)\n$/);
    expect((await cli('net', ['delete'])).err).toMatch(/expected 1 argument, got 0/);
    expect((await cli('net', ['delete', 'abc'])).err).toMatch(/ID must be a whole number/);
    const noServer = await cli('site', ['list'], { TINYVINE_SERVER: undefined });
    expect(noServer).toMatchObject({ code: 2, err: 'tinyvine: no authority server: give --server URL or set TINYVINE_SERVER (see --help)\n' });
    expect((await cli('token', ['create', '10', '--expires-in', 'soon'])).code).toBe(2);
  });

  it('maps auth errors to exit 4 and unreachable servers to exit 1', async () => {
    const none = await cli('site', ['list'], { TINYVINE_API_TOKEN: undefined });
    expect(none).toMatchObject({ code: 4, out: '' });
    expect(none.err).toBe('tinyvine: missing or wrong API token (Authorization: Bearer <token>)\n');
    const wrong = await cli('site', ['list', '--api-token', 'nope-nope-nope-nope']);
    expect(wrong.code).toBe(4);
    // a port that was just free: nothing listens there
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const down = await cli('site', ['list', '--server', `http://127.0.0.1:${port}`]);
    expect(down).toEqual({ code: 1, out: '', err: `tinyvine: cannot reach http://127.0.0.1:${port} (ECONNREFUSED)\n` });
  });

  it('manages sites, FullVRs, networks, hosts and tokens with tables and --json', async () => {
    expect(await ok('site', ['add', 'a', '--provider', 'aws', '--region', 'us-east-1', '--subnet', '10.1.0.0/16'])).toBe(
      'registered site a (aws/us-east-1): 10.1.0.0/16\n',
    );
    await ok('site', ['add', 'b', '--provider', 'gcp', '--subnet', '10.2.0.0/16,192.168.2.0/24', '--contact', 'noc@b']);
    await ok('site', ['add', 'c', '--provider', 'lab', '--subnet', '10.3.0.0/16']);
    const sites = await ok('site', ['list']);
    expect(sites.split('\n')[0]).toMatch(/^NAME\s+PROVIDER\s+REGION\s+SUBNETS\s+CONTACT$/);
    expect(sites).toMatch(/^b\s+gcp\s+-\s+10\.2\.0\.0\/16,192\.168\.2\.0\/24\s+noc@b$/m);
    const sj = JSON.parse(await ok('site', ['list', '--json']));
    expect(sj.sites.map((s: any) => s.name)).toEqual(['a', 'b', 'c']);

    await ok('fullvr', ['register', '--id', '1', '--endpoint', '198.51.100.1:4789', '--public-key', key(1), '--site', 'a']);
    await ok('fullvr', ['register', '--id', '2', '--endpoint', '198.51.100.2:4789', '--public-key', key(2), '--site', 'b']);
    expect(await ok('fullvr', ['register', '--id', '3', '--endpoint', '203.0.113.3:4789', '--public-key', key(3), '--site', 'c', '--nat', 'limited', '--queue-vr', '1'])).toBe(
      'registered FullVR 3 at site c (203.0.113.3:4789, limited via queue-VR 1)\n',
    );

    expect(await ok('net', ['create', '--id', '10', '--name', 'lab', '--site', 'a', '--site', 'b,c'])).toBe('created network 10 (lab), physical, sites: a, b, c\n');
    expect(await ok('net', ['create', '--id', '20', '--name', 'v', '--mode', 'virtual', '--overlay', '172.16.0.0/16', '--site', 'a'])).toBe(
      'created network 20 (v), virtual, sites: a=172.16.0.0/24\n',
    );
    const fl = await ok('fullvr', ['list']);
    expect(fl).toMatch(/^ID\s+ENDPOINT\s+SITE\s+NAT\s+QUEUE-VR\s+NETWORKS\s+HEALTH$/m);
    expect(fl).toMatch(/^1\s+198\.51\.100\.1:4789\s+a\s+public\s+-\s+10,20\s+unknown$/m);
    expect(fl).toMatch(/^3\s+203\.0\.113\.3:4789\s+c\s+limited\s+1\s+10\s+unknown$/m);
    const tables = JSON.parse(await ok('fullvr', ['tables', '2']));
    expect(tables.networks[0].sites).toContainEqual({ name: 'c', subnet: '10.3.0.0/16', vr: 1 });

    expect(await ok('host', ['join', '10', '10.2.0.7', '--name', 'web'])).toBe('10.2.0.7 joined network 10 at site b (FullVR 2)\n');
    expect(await ok('host', ['join', '20'])).toBe('172.16.0.1 joined network 20 at site a (FullVR 1)\n');
    const hosts = await ok('host', ['list']);
    expect(hosts).toMatch(/^NETWORK\s+ADDRESS\s+SITE\s+FULLVR\s+NAME\s+JOINED$/m);
    expect(hosts).toMatch(/^10\s+10\.2\.0\.7\s+b\s+2\s+web\s+\d{4}-/m);
    expect(JSON.parse(await ok('host', ['list', '--network', '20', '--json'])).hosts).toHaveLength(1);

    const nets = await ok('net', ['list']);
    expect(nets).toMatch(/^ID\s+NAME\s+MODE\s+AUTH\s+STATE\s+OVERLAY\s+HOSTS\s+SITES$/m);
    expect(nets).toMatch(/^10\s+lab\s+physical\s+gmac\s+active\s+-\s+1\s+a, b, c$/m);
    expect(nets).toMatch(/^20\s+v\s+virtual\s+gmac\s+active\s+172\.16\.0\.0\/16\s+1\s+a=172\.16\.0\.0\/24$/m);
    expect(await ok('net', ['show', '10'])).toContain('10.2.0.7');

    // tokens: human output is one signed token per line after a comment
    const created = await ok('token', ['create', '10', '--count', '2', '--expires-in', '30m', '--fullvr', '2']);
    const lines = created.trim().split('\n');
    expect(lines[0]).toMatch(/^# 2 single-use token\(s\) for network 10, expire \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(shown only now\)$/);
    const pub = loadVerifyKey(signingKey.publicB64);
    const claims = lines.slice(1).map((t) => verifyToken(pub, t));
    expect(claims.map((c) => [c.net, c.vr, c.su, c.exp - c.iat])).toEqual([
      [10, 2, true, 1800],
      [10, 2, true, 1800],
    ]);
    const multi = JSON.parse(await ok('token', ['create', '10', '--multi-use', '--json']));
    expect(multi.tokens[0]).toMatchObject({ singleUse: false, count: 0 });
    const tl = await ok('token', ['list', '--network', '10']);
    expect(tl).toMatch(/^JTI\s+NETWORK\s+FULLVR\s+USE\s+EXPIRES\s+STATE$/m);
    expect(tl).toContain(claims[0].jti);
    expect(await ok('token', ['revoke', claims[0].jti])).toBe(`revoked token ${claims[0].jti} (network 10)\n`);
    expect(await ok('token', ['list'])).toMatch(new RegExp(`^${claims[0].jti}\\s+10\\s+2\\s+single\\s+\\S+\\s+revoked$`, 'm'));

    // split, merge, leave, shutdown, delete
    const sp = await ok('net', ['split', '10', '--sites', 'b', '--new-id', '11', '--new-name', 'lab-b']);
    expect(sp).toMatch(/^10\s+lab\s+0\s+a, c$/m);
    expect(sp).toMatch(/^11\s+lab-b\s+1\s+b$/m);
    expect(await ok('net', ['merge', '10', '11'])).toBe('merged network 11 into 10 (lab); sites: a, c, b; 1 hosts\n');
    expect(await ok('host', ['leave', '10', '10.2.0.7'])).toBe('10.2.0.7 left network 10\n');
    expect(await ok('net', ['shutdown', '20'])).toBe('network 20 (v) is shut down\n');
    expect(JSON.parse(await ok('net', ['delete', '20', '--json']))).toMatchObject({ deleted: 20 });
  });

  it('prints the server error line with the right exit code', async () => {
    const notFound = await cli('net', ['delete', '99']);
    expect(notFound).toEqual({ code: 3, out: '', err: 'tinyvine: unknown network 99\n' });
    const conflict = await cli('site', ['add', 'a', '--provider', 'aws', '--subnet', '10.9.0.0/16']);
    expect(conflict).toEqual({ code: 1, out: '', err: 'tinyvine: site "a" already exists\n' });
    const badInput = await cli('site', ['add', 'z', '--provider', 'aws', '--subnet', '10.9.0.5/16']);
    expect(badInput.code).toBe(2);
    expect(badInput.err).toBe('tinyvine: subnets[0]: 10.9.0.5/16 has host bits set; did you mean 10.9.0.0/16?\n');
    const unknownSite = await cli('net', ['create', '--id', '12', '--name', 'x', '--site', 'a', '--site', 'a2']);
    expect(unknownSite.code).toBe(3);
    expect(unknownSite.err).toBe('tinyvine: unknown site "a2"\n');
    // a user token may list but not create
    const res = await fetch(`${base}/api/v1/api-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'user', scope: 10 }),
    });
    user = ((await res.json()) as { token: string }).token;
    expect((await cli('net', ['list'], { TINYVINE_API_TOKEN: user })).code).toBe(0);
    const forbidden = await cli('net', ['create', '--id', '12', '--name', 'x', '--site', 'a'], { TINYVINE_API_TOKEN: user });
    expect(forbidden.code).toBe(4);
    expect(forbidden.err).toMatch(/^tinyvine: user token \w+ may not create networks\n$/);
  });
});
