import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import express from 'express';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSigningKey, loadSigningKey, loadVerifyKey, verifyToken } from '../../shared/join-token.js';
import { createAuthority, type AuthorityDeps } from '../../download-server/authority/api.js';
import { FileStore, type StateStore } from '../../download-server/authority/store.js';
import type { State } from '../../download-server/authority/state.js';

const BOOT = 'bootstrap-secret-0123456789';
const key = (i: number) => Buffer.alloc(32, i).toString('base64');
const signingKey = loadSigningKey(generateSigningKey().privateKey);

interface Running {
  url: string;
  current(): State;
  changes: State[];
  close(): Promise<void>;
}

const servers: Running[] = [];
let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tv-authority-api-'));
  file = join(dir, 'authority.json');
});
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(extra: Partial<AuthorityDeps> = {}, store: StateStore = new FileStore(file)): Promise<Running> {
  const changes: State[] = [];
  const a = createAuthority({ store, signingKey, bootstrapAdminToken: BOOT, onChange: (s) => changes.push(s), ...extra });
  const app = express();
  app.use('/api/v1', a.router);
  // the download server's own routes after it (heartbeats must still reach them)
  app.post('/api/v1/fullvrs/:id/heartbeat', (req, res) => void res.json({ heartbeat: Number(req.params.id) }));
  const server: Server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  const run: Running = {
    url: `http://127.0.0.1:${addr.port}/api/v1`,
    current: a.current,
    changes,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  servers.push(run);
  return run;
}

async function call(r: Running, method: string, path: string, o: { token?: string; body?: unknown; raw?: string } = {}) {
  const headers: Record<string, string> = {};
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined || o.raw !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(r.url + path, { method, headers, body: o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body)) });
  const text = await res.text();
  let json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** Bootstrap an admin, then a small world: sites a, b, c; FullVRs 1, 2 (public), 3 (limited via 1); network 10. */
async function seed(r: Running): Promise<string> {
  const t = await call(r, 'POST', '/api-tokens', { token: BOOT, body: { role: 'admin' } });
  expect(t.status).toBe(201);
  const admin = t.json.token as string;
  const ok = async (method: string, path: string, body: unknown) => {
    const x = await call(r, method, path, { token: admin, body });
    expect(x.status, JSON.stringify(x.json)).toBeLessThan(300);
    return x.json;
  };
  await ok('POST', '/sites', { name: 'a', provider: 'aws', region: 'us-east-1', subnets: ['10.1.0.0/16'] });
  await ok('POST', '/sites', { name: 'b', provider: 'gcp', subnets: ['10.2.0.0/16'] });
  await ok('POST', '/sites', { name: 'c', provider: 'lab', subnets: ['10.3.0.0/16'], contact: 'ops@c' });
  await ok('POST', '/fullvrs', { id: 1, endpoint: '198.51.100.1:4789', publicKey: key(1), site: 'a' });
  await ok('POST', '/fullvrs', { id: 2, endpoint: '198.51.100.2:4789', publicKey: key(2), site: 'b' });
  await ok('POST', '/fullvrs', { id: 3, endpoint: '203.0.113.3:4789', publicKey: key(3), site: 'c', nat: 'limited', queueVr: 1 });
  await ok('POST', '/networks', { id: 10, name: 'lab', sites: ['a', 'b', 'c'] });
  return admin;
}

async function apiToken(r: Running, admin: string, role: string, scope?: string | number) {
  const x = await call(r, 'POST', '/api-tokens', { token: admin, body: { role, scope } });
  expect(x.status, JSON.stringify(x.json)).toBe(201);
  return x.json.token as string;
}

describe('authority API', () => {
  it('bootstrap token creates the first admin, then stops working', async () => {
    const r = await start();
    expect((await call(r, 'GET', '/sites')).status).toBe(401);
    expect((await call(r, 'GET', '/sites', { token: 'wrong-token-0123456789' })).json).toEqual({ error: expect.stringContaining('missing or wrong API token') });
    const admin = await seed(r);
    expect(admin).toMatch(/^tva_/);
    expect((await call(r, 'GET', '/sites', { token: BOOT })).status).toBe(401);
    expect((await call(r, 'GET', '/sites', { token: admin })).status).toBe(200);
    // the secret is never stored, only its hash
    expect(readFileSync(file, 'utf8')).not.toContain(admin);
  });

  it('401 and 403 change nothing', async () => {
    const r = await start();
    const admin = await seed(r);
    const user = await apiToken(r, admin, 'user', 10);
    const siteAdmin = await apiToken(r, admin, 'site-admin', 'a');
    const before = readFileSync(file);
    const version = r.current().version;
    const nChanges = r.changes.length;
    const attempts: Array<[string, string, unknown]> = [
      ['POST', '/sites', { name: 'z', provider: 'p', subnets: ['10.9.0.0/16'] }],
      ['POST', '/fullvrs', { id: 9, endpoint: '198.51.100.9:4789', publicKey: key(9), site: 'b' }],
      ['POST', '/networks', { id: 11, name: 'x', sites: ['a'] }],
      ['DELETE', '/networks/10', undefined],
      ['POST', '/networks/10/shutdown', undefined],
      ['POST', '/networks/10/split', { sites: ['b'], newId: 12, newName: 'y' }],
      ['POST', '/networks/10/hosts', { address: '10.2.0.7' }],
      ['POST', '/api-tokens', { role: 'admin' }],
    ];
    for (const [m, p, b] of attempts) {
      expect((await call(r, m, p, { body: b })).status, `${m} ${p} unauthenticated`).toBe(401);
      const asUser = await call(r, m, p, { token: user, body: b });
      expect(asUser.status, `${m} ${p} as user`).toBe(403);
      expect(asUser.json.error).toMatch(/^user token \w+ may not|does not administer/);
      if (p !== '/sites' && p !== '/api-tokens' && !(m === 'POST' && p === '/networks')) {
        expect((await call(r, m, p, { token: siteAdmin, body: b })).status, `${m} ${p} as site-admin of a`).toBe(403);
      }
    }
    expect(readFileSync(file)).toEqual(before);
    expect(r.current().version).toBe(version);
    expect(r.changes.length).toBe(nChanges);
  });

  it('serves every endpoint (happy path) and persists across a restart', async () => {
    let health = { healthy: true, members: 4, load: 4 };
    const r = await start({ health: (id) => (id === 1 ? health : null) });
    const admin = await seed(r);
    const A = (method: string, path: string, body?: unknown) => call(r, method, path, { token: admin, body });

    const sites = await A('GET', '/sites');
    expect(sites.json.sites.map((s: any) => s.name)).toEqual(['a', 'b', 'c']);
    expect((await A('PATCH', '/sites/c', { contact: 'noc@c' })).json.site.contact).toBe('noc@c');

    const fv = await A('GET', '/fullvrs');
    expect(fv.json.fullvrs[0]).toMatchObject({ id: 1, site: 'a', nat: 'public', serves: [10], health });
    expect(fv.json.fullvrs[2]).toMatchObject({ id: 3, nat: 'limited', queueVr: 1, health: null });
    health = { healthy: false, members: 0, load: 0 };
    expect((await A('GET', '/fullvrs')).json.fullvrs[0].health.healthy).toBe(false);

    const created = await A('POST', '/networks', { id: 20, name: 'v', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['a'] });
    expect(created.status).toBe(201);
    expect(created.json.network).toMatchObject({ id: 20, blocks: { a: '172.16.0.0/24' }, hosts: 0 });
    expect((await A('POST', '/networks/20/sites', { site: 'c' })).json.network.blocks).toEqual({ a: '172.16.0.0/24', c: '172.16.1.0/24' });
    expect((await A('GET', '/networks')).json.networks.map((n: any) => n.id)).toEqual([10, 20]);

    const j1 = await A('POST', '/networks/10/hosts', { address: '10.2.0.7', name: 'web' });
    expect(j1.status).toBe(201);
    expect(j1.json.host).toMatchObject({ address: '10.2.0.7', network: 10, site: 'b', fullvr: 2, name: 'web' });
    expect((await A('POST', '/networks/20/hosts', { site: 'c' })).json.host.address).toBe('172.16.1.1');
    await A('POST', '/networks/10/hosts', { address: '10.3.0.9' });
    expect((await A('GET', '/hosts?network=10')).json.hosts.map((h: any) => h.address)).toEqual(['10.2.0.7', '10.3.0.9']);
    expect((await A('GET', '/hosts')).json.hosts).toHaveLength(3);
    expect((await A('GET', '/networks/10')).json).toMatchObject({ network: { id: 10, hosts: 2 }, hosts: [{ address: '10.2.0.7' }, { address: '10.3.0.9' }] });
    expect((await A('DELETE', '/networks/10/hosts/10.3.0.9')).json.host.address).toBe('10.3.0.9');

    // tokens: returned once, signed, verifiable offline
    const tk = await A('POST', '/networks/10/tokens', { expiresIn: 600, singleUse: true, count: 2, fullvr: 2 });
    expect(tk.status).toBe(201);
    expect(tk.json.tokens).toHaveLength(2);
    const pub = loadVerifyKey(signingKey.publicB64);
    for (const t of tk.json.tokens) {
      const claims = verifyToken(pub, t.token);
      expect(claims).toMatchObject({ net: 10, vr: 2, su: true, jti: t.jti, exp: t.expires });
    }
    const defaults = await A('POST', '/networks/10/tokens', {});
    expect(defaults.json.tokens[0]).toMatchObject({ singleUse: true, fullvr: null });
    expect(defaults.json.tokens[0].expires - defaults.json.tokens[0].issuedAt).toBe(3600);
    const list = await A('GET', '/tokens?network=10');
    expect(list.json.tokens).toHaveLength(3);
    expect(JSON.stringify(list.json)).not.toContain(tk.json.tokens[0].token);
    expect(readFileSync(file, 'utf8')).not.toContain(tk.json.tokens[0].token);
    const rv = await A('POST', `/tokens/${tk.json.tokens[0].jti}/revoke`);
    expect(rv.json.token.revoked).toBe(true);

    // tables for the public FullVR 2 (site c behind limited 3 -> queue-VR 1)
    const tables = await A('GET', '/fullvrs/2/tables');
    expect(tables.json.networks[0].sites).toContainEqual({ name: 'c', subnet: '10.3.0.0/16', vr: 1 });
    expect(tables.json.revokedTokens).toEqual([tk.json.tokens[0].jti]);
    expect(tables.json.members).toEqual([{ network: 10, address: '10.2.0.7' }]);

    // split and merge
    const sp = await A('POST', '/networks/10/split', { sites: ['b'], newId: 11, newName: 'lab-b' });
    expect(sp.json.network).toMatchObject({ id: 10, sites: ['a', 'c'], hosts: 0 });
    expect(sp.json.created).toMatchObject({ id: 11, sites: ['b'], hosts: 1 });
    const mg = await A('POST', '/networks/10/merge', { from: 11 });
    expect(mg.json).toMatchObject({ merged: 11, network: { id: 10, sites: ['a', 'c', 'b'], hosts: 1 } });

    expect((await A('POST', '/networks/20/shutdown')).json.network.state).toBe('shutdown');
    expect((await A('DELETE', '/networks/20')).json.deleted).toBe(20);

    const apiList = await A('GET', '/api-tokens');
    expect(apiList.json.apiTokens[0]).not.toHaveProperty('hash');
    const log = await A('GET', '/changelog');
    expect(log.json.changelog.at(-1)).toMatchObject({ what: 'delete network 20 (v)', who: apiList.json.apiTokens[0].id });
    expect(r.changes.at(-1)!.version).toBe(r.current().version);

    // restart: a new router over the same file sees everything, and the admin token still works
    const snapshot = r.current();
    await servers.pop()!.close();
    const r2 = await start();
    expect(r2.current()).toEqual(snapshot);
    expect((await call(r2, 'GET', '/networks/10', { token: admin })).json.network.sites).toEqual(['a', 'c', 'b']);
    expect((await call(r2, 'GET', '/tokens', { token: admin })).json.tokens.find((t: any) => t.revoked).jti).toBe(tk.json.tokens[0].jti);
  });

  it('validates input: strict schemas, malformed JSON, big bodies, bad ids, unknowns, conflicts', async () => {
    const r = await start();
    const admin = await seed(r);
    const A = (method: string, path: string, o: { body?: unknown; raw?: string } = {}) => call(r, method, path, { token: admin, ...o });
    const v = r.current().version;
    const unknownKey = await A('POST', '/sites', { body: { name: 'z', provider: 'p', subnets: ['10.9.0.0/16'], colour: 'red' } });
    expect(unknownKey).toEqual({ status: 400, json: { error: 'body: unknown key "colour" at top level' } });
    expect((await A('POST', '/sites', { body: { name: 'z', provider: 'p', subnets: 'x' } })).json.error).toBe('body: subnets: expected a list, got "x"');
    expect(await A('POST', '/sites', { raw: '{"name":' })).toEqual({ status: 400, json: { error: 'malformed JSON body' } });
    expect((await A('POST', '/sites', { raw: JSON.stringify({ name: 'x'.repeat(70_000) }) })).status).toBe(413);
    expect(await A('GET', '/networks/abc')).toEqual({ status: 400, json: { error: 'network must be an integer 1..4294967295, got "abc"' } });
    expect(await A('GET', '/networks/4294967296')).toMatchObject({ status: 400 });
    expect(await A('GET', '/networks/77')).toEqual({ status: 404, json: { error: 'unknown network 77' } });
    expect(await A('GET', '/hosts?network=77')).toEqual({ status: 404, json: { error: 'unknown network 77' } });
    expect((await A('GET', '/hosts?colour=1')).status).toBe(400);
    expect(await A('POST', '/networks/10/merge', { body: { from: 10 } })).toEqual({ status: 400, json: { error: 'cannot merge network 10 with itself' } });
    expect(await A('POST', '/networks', { body: { id: 10, name: 'x', sites: ['a'] } })).toEqual({ status: 409, json: { error: 'network 10 already exists' } });
    expect(await A('POST', '/sites', { body: { name: 'd', provider: 'p', subnets: ['10.2.3.0/24'] } })).toMatchObject({ status: 201 });
    expect(await A('POST', '/networks/10/sites', { body: { site: 'd' } })).toEqual({
      status: 409,
      json: { error: 'network 10: site "b" subnet 10.2.0.0/16 overlaps site "d" subnet 10.2.3.0/24' },
    });
    expect(await A('POST', '/networks/10/hosts', { body: { address: '8.8.8.8' } })).toEqual({
      status: 409,
      json: { error: '8.8.8.8 is not inside a subnet of any site of network 10 (a, b, c)' },
    });
    expect((await A('POST', '/networks/10/tokens', { body: { expiresIn: 1 } })).status).toBe(400);
    expect((await A('POST', '/networks/10/shutdown', { body: { now: true } })).status).toBe(400);
    expect((await A('POST', '/tokens/zzzzzzzzzz/revoke')).status).toBe(404);
    expect(r.current().version).toBe(v + 1); // only site d was added
  });

  it('a failed save changes nothing (500, state and onChange untouched)', async () => {
    const inner = new FileStore(file);
    let failing = false;
    const store: StateStore = {
      load: () => inner.load(),
      save: (s) => {
        if (failing) throw new Error('disk full');
        inner.save(s);
      },
    };
    const r = await start({}, store);
    const admin = await seed(r);
    const before = structuredClone(r.current());
    const n = r.changes.length;
    failing = true;
    const res = await call(r, 'POST', '/networks/10/hosts', { token: admin, body: { address: '10.1.0.5' } });
    expect(res).toEqual({ status: 500, json: { error: 'state not saved, nothing changed: disk full' } });
    expect(r.current()).toEqual(before);
    expect(r.changes.length).toBe(n);
    failing = false;
    expect((await call(r, 'GET', '/hosts', { token: admin })).json.hosts).toEqual([]);
  });

  it('roles: site-admin, network-admin (owner of what it creates) and user', async () => {
    const r = await start();
    const admin = await seed(r);
    const sa = await apiToken(r, admin, 'site-admin', 'b');
    const na = await apiToken(r, admin, 'network-admin');
    const na10 = await apiToken(r, admin, 'network-admin', 10);
    const user = await apiToken(r, admin, 'user', 10);
    const as = (t: string, m: string, p: string, body?: unknown) => call(r, m, p, { token: t, body });

    // site-admin of b: FullVRs and edits at b only; hosts of its site
    expect((await as(sa, 'POST', '/fullvrs', { id: 7, endpoint: '198.51.100.7:4789', publicKey: key(7), site: 'b' })).status).toBe(201);
    expect((await as(sa, 'POST', '/fullvrs', { id: 8, endpoint: '198.51.100.8:4789', publicKey: key(8), site: 'a' })).status).toBe(403);
    expect((await as(sa, 'PATCH', '/sites/b', { contact: 'b@x' })).status).toBe(200);
    expect((await as(sa, 'PATCH', '/sites/a', { contact: 'a@x' })).status).toBe(403);
    expect((await as(sa, 'POST', '/networks/10/hosts', { address: '10.2.0.9' })).status).toBe(201);
    expect((await as(sa, 'POST', '/networks/10/hosts', { address: '10.1.0.9' })).status).toBe(403);
    expect((await as(sa, 'GET', '/fullvrs/2/tables')).status).toBe(200);
    expect((await as(sa, 'GET', '/fullvrs/1/tables')).status).toBe(403);

    // network-admin without scope: creates 30 and then owns it, but not 10
    expect((await as(na, 'POST', '/networks', { id: 30, name: 'mine', sites: ['a'] })).status).toBe(201);
    expect((await as(na, 'POST', '/networks/30/hosts', { address: '10.1.0.1' })).status).toBe(201);
    expect((await as(na, 'POST', '/networks/30/tokens', { count: 1 })).status).toBe(201);
    expect((await as(na, 'POST', '/networks/10/shutdown')).json.error).toMatch(/does not administer network 10/);
    // merging needs both networks
    expect((await as(na, 'POST', '/networks/30/merge', { from: 10 })).status).toBe(403);
    expect((await as(na10, 'POST', '/networks/10/merge', { from: 30 })).status).toBe(403);
    expect((await as(na10, 'POST', '/networks/10/split', { sites: ['c'], newId: 31, newName: 'c-only' })).status).toBe(200);
    expect((await as(na10, 'POST', '/networks/31/shutdown')).status).toBe(200); // the splitter owns the new half
    expect((await as(na, 'POST', '/networks/30/shutdown')).status).toBe(200);
    expect((await as(na, 'DELETE', '/networks/30')).status).toBe(200);

    // user: list and tokens for its network only
    expect((await as(user, 'GET', '/networks')).status).toBe(200);
    const ut = await as(user, 'POST', '/networks/10/tokens', { count: 1 });
    expect(ut.status).toBe(201);
    expect((await as(user, 'POST', `/tokens/${ut.json.tokens[0].jti}/revoke`)).status).toBe(200);
    expect((await as(user, 'POST', '/networks/31/tokens', { count: 1 })).status).toBe(403);
    expect((await as(user, 'POST', '/networks/10/hosts', { address: '10.2.0.10' })).status).toBe(403);
    expect((await as(user, 'GET', '/api-tokens')).status).toBe(403);
  });

  it('leaves routes it does not know to the app (heartbeats reach the registry)', async () => {
    const r = await start();
    const res = await call(r, 'POST', '/fullvrs/5/heartbeat', { body: { members: 1, load: 1 } });
    expect(res).toEqual({ status: 200, json: { heartbeat: 5 } });
  });
});
