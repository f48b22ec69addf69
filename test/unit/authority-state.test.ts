import { describe, expect, it } from 'vitest';
import { parseFullvrConfig } from '../../fullvr/config.js';
import {
  AuthorityError,
  CHANGELOG_LIMIT,
  addSiteToNetwork,
  computeTables,
  createApiToken,
  createNetwork,
  createTokens,
  deleteNetwork,
  emptyState,
  joinHost,
  leaveHost,
  listFullvrs,
  listHosts,
  listNetworks,
  listSites,
  listTokens,
  mergeNetworks,
  registerFullvr,
  registerSite,
  revokeToken,
  shutdownNetwork,
  splitNetwork,
  updateSite,
  type Applied,
  type Ctx,
  type State,
} from '../../download-server/authority/state.js';

const T0 = Date.UTC(2030, 0, 1);
const ctx: Ctx = { who: 'tester', now: T0 };
const key = (i: number) => Buffer.alloc(32, i).toString('base64');

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Run `op`; expect an AuthorityError with this status and a message matching `msg`, and the state untouched. */
function refused(s: State, op: (s: State) => Applied<unknown>, status: number, msg: RegExp | string): void {
  const before = structuredClone(s);
  deepFreeze(s); // any in-place mutation would throw a TypeError instead of an AuthorityError
  let err: unknown;
  try {
    op(s);
  } catch (e) {
    err = e;
  }
  expect(err, 'operation should have been refused').toBeInstanceOf(AuthorityError);
  expect((err as AuthorityError).status).toBe(status);
  expect((err as Error).message).toMatch(msg);
  expect((err as Error).message).not.toMatch(/\n/);
  expect(s).toEqual(before);
}

/** Three sites (a, b public FullVRs 1, 2; c behind a limited FullVR 3 queued at 1) and a physical network 10. */
function world(): State {
  let s = emptyState();
  s = registerSite(s, { name: 'a', provider: 'aws', region: 'us-east-1', subnets: ['10.1.0.0/16'], contact: 'ops@a' }, ctx).state;
  s = registerSite(s, { name: 'b', provider: 'gcp', region: null, subnets: ['10.2.0.0/16', '192.168.2.0/24'] }, ctx).state;
  s = registerSite(s, { name: 'c', provider: 'lab', subnets: ['10.3.0.0/16'] }, ctx).state;
  s = registerFullvr(s, { id: 1, endpoint: '198.51.100.1:4789', publicKey: key(1), site: 'a' }, ctx).state;
  s = registerFullvr(s, { id: 2, endpoint: 'vr2.example.org:4789', publicKey: key(2), site: 'b' }, ctx).state;
  s = registerFullvr(s, { id: 3, endpoint: '203.0.113.3:4789', publicKey: key(3), site: 'c', nat: 'limited', queueVr: 1 }, ctx).state;
  s = createNetwork(s, { id: 10, name: 'lab', sites: ['a', 'b', 'c'] }, ctx).state;
  return s;
}

describe('sites and FullVRs', () => {
  it('registers and lists, bumping the version and logging each change', () => {
    const s = world();
    expect(s.version).toBe(7);
    expect(s.changelog.map((c) => c.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(s.changelog[6]).toEqual({ version: 7, what: expect.stringContaining('create network 10'), who: 'tester', when: new Date(T0).toISOString() });
    expect(listSites(s).map((x) => x.name)).toEqual(['a', 'b', 'c']);
    expect(listSites(s)[0]).toEqual({ name: 'a', provider: 'aws', region: 'us-east-1', subnets: ['10.1.0.0/16'], contact: 'ops@a' });
    expect(listFullvrs(s).map((f) => [f.id, f.nat, f.queueVr])).toEqual([
      [1, 'public', null],
      [2, 'public', null],
      [3, 'limited', 1],
    ]);
  });

  it('refuses bad sites', () => {
    const s = world();
    refused(s, (x) => registerSite(x, { name: 'a', provider: 'aws', subnets: ['10.9.0.0/16'] }, ctx), 409, 'site "a" already exists');
    refused(s, (x) => registerSite(x, { name: 'bad name', provider: 'aws', subnets: ['10.9.0.0/16'] }, ctx), 400, /site name "bad name" is not valid/);
    refused(s, (x) => registerSite(x, { name: 'x.y', provider: 'aws', subnets: ['10.9.0.0/16'] }, ctx), 400, /not valid/);
    refused(s, (x) => registerSite(x, { name: 'd', provider: 'aws', subnets: ['10.9.0.5/16'] }, ctx), 400, /host bits set/);
    refused(s, (x) => registerSite(x, { name: 'd', provider: 'aws', subnets: ['10.9.0.0/33'] }, ctx), 400, /not a valid CIDR/);
    refused(s, (x) => registerSite(x, { name: 'd', provider: 'aws', subnets: [] }, ctx), 400, /needs 1..64 subnets/);
    refused(s, (x) => registerSite(x, { name: 'd', provider: 'aws', subnets: ['10.9.0.0/16', '10.9.4.0/24'] }, ctx), 400, /10.9.4.0\/24 overlaps its subnet 10.9.0.0\/16/);
    refused(s, (x) => registerSite(x, { name: 'd', provider: 'a b', subnets: ['10.9.0.0/16'] }, ctx), 400, /provider "a b"/);
  });

  it('refuses bad FullVRs: invalid ids, keys, endpoints, unknown sites, bad queue-VRs', () => {
    const s = world();
    const f = { endpoint: '198.51.100.9:4789', publicKey: key(9), site: 'a' };
    refused(s, (x) => registerFullvr(x, { ...f, id: 0 }, ctx), 400, /FullVR id must be an integer 1..4294967295, got "0"/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 2 ** 32 }, ctx), 400, /FullVR id must be an integer/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 1.5 }, ctx), 400, /FullVR id must be an integer/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 1 }, ctx), 409, 'FullVR 1 already exists');
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, publicKey: key(1) }, ctx), 409, 'FullVR 1 already uses this public key');
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, publicKey: 'short' }, ctx), 400, /32-byte key/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, endpoint: 'nope' }, ctx), 400, /not a valid endpoint/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, site: 'zz' }, ctx), 404, 'unknown site "zz"');
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, nat: 'limited' }, ctx), 400, /needs a queueVr/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, queueVr: 1 }, ctx), 400, /is public; queueVr is only for nat: limited/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, nat: 'limited', queueVr: 3 }, ctx), 409, /queueVr 3 is itself limited/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, nat: 'limited', queueVr: 77 }, ctx), 404, /unknown FullVR 77/);
    refused(s, (x) => registerFullvr(x, { ...f, id: 9, nat: 'limited', queueVr: 9 }, ctx), 400, /its own queueVr/);
  });

  it('updates a site, re-checking the physical networks it is in', () => {
    let s = world();
    s = joinHost(s, { network: 10, address: '10.1.0.5' }, ctx).state;
    const u = updateSite(s, 'a', { contact: 'new@a', subnets: ['10.1.0.0/17'] }, ctx);
    expect(u.result).toMatchObject({ name: 'a', provider: 'aws', contact: 'new@a', subnets: ['10.1.0.0/17'] });
    refused(s, (x) => updateSite(x, 'a', { subnets: ['10.2.5.0/24'] }, ctx), 409, /network 10: site "b" subnet 10.2.0.0\/16 overlaps site "a" subnet 10.2.5.0\/24/);
    refused(s, (x) => updateSite(x, 'a', { subnets: ['10.1.128.0/17'] }, ctx), 409, /host 10.1.0.5 of network 10 would be outside/);
    refused(s, (x) => updateSite(x, 'zz', { contact: 'x' }, ctx), 404, 'unknown site "zz"');
  });
});

describe('networks', () => {
  it('creates physical and virtual networks (virtual: one block per site)', () => {
    const s = world();
    const n = listNetworks(s)[0];
    expect(n).toMatchObject({ id: 10, name: 'lab', mode: 'physical', auth: 'gmac', overlay: null, sites: ['a', 'b', 'c'], blocks: {}, state: 'active', owners: [] });
    const v = createNetwork(s, { id: 20, name: 'v', mode: 'virtual', auth: 'chacha', overlay: '172.16.0.0/16', sites: ['a', 'b'], owner: 'tok1' }, ctx).result;
    expect(v).toMatchObject({ overlay: '172.16.0.0/16', blockPrefix: 24, blocks: { a: '172.16.0.0/24', b: '172.16.1.0/24' }, owners: ['tok1'] });
    const v6 = createNetwork(s, { id: 21, name: 'v6', mode: 'virtual', overlay: 'fd00:1::/48', sites: ['a', 'b'] }, ctx).result;
    expect(v6.blocks).toEqual({ a: 'fd00:1::/64', b: 'fd00:1:0:1::/64' });
  });

  it('refuses invalid ids, duplicates, unknown sites and overlapping physical subnets (naming both sites)', () => {
    let s = world();
    s = registerSite(s, { name: 'd', provider: 'aws', subnets: ['10.2.128.0/24'] }, ctx).state;
    const n = { name: 'x', sites: ['a'] };
    refused(s, (x) => createNetwork(x, { ...n, id: 0 }, ctx), 400, /network id must be an integer 1..4294967295/);
    refused(s, (x) => createNetwork(x, { ...n, id: -4 }, ctx), 400, /network id must be an integer/);
    refused(s, (x) => createNetwork(x, { ...n, id: 2 ** 32 }, ctx), 400, /network id must be an integer/);
    refused(s, (x) => createNetwork(x, { ...n, id: 10 }, ctx), 409, 'network 10 already exists');
    refused(s, (x) => createNetwork(x, { ...n, id: 11, name: 'lab' }, ctx), 409, 'network name "lab" is already used by network 10');
    refused(s, (x) => createNetwork(x, { ...n, id: 11, sites: [] }, ctx), 400, /at least one site/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, sites: ['a', 'a'] }, ctx), 400, /listed twice/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, sites: ['zz'] }, ctx), 404, 'unknown site "zz"');
    refused(s, (x) => createNetwork(x, { ...n, id: 11, sites: ['a', 'b', 'd'] }, ctx), 409, /site "b" subnet 10.2.0.0\/16 overlaps site "d" subnet 10.2.128.0\/24/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, mode: 'virtual' }, ctx), 400, /overlay is required/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, overlay: '10.0.0.0/8' }, ctx), 400, /only used with mode: virtual/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, mode: 'virtual', overlay: '172.16.0.0/16', blockPrefix: 8 }, ctx), 400, /blockPrefix must be an integer 16..30/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, mode: 'virtual', overlay: '172.16.0.0/24', sites: ['a', 'b'] }, ctx), 409, /no free \/24 block left for site "b"/);
    refused(s, (x) => createNetwork(x, { ...n, id: 11, auth: 'rot13' as never }, ctx), 400, /auth "rot13" is not one of/);
  });

  it('adds a site to a network (physical overlap refused naming both sites; virtual allocates a block)', () => {
    let s = world();
    s = registerSite(s, { name: 'd', provider: 'aws', subnets: ['10.1.7.0/24'] }, ctx).state;
    s = registerSite(s, { name: 'e', provider: 'aws', subnets: ['10.5.0.0/16'] }, ctx).state;
    refused(s, (x) => addSiteToNetwork(x, { network: 10, site: 'd' }, ctx), 409, /site "a" subnet 10.1.0.0\/16 overlaps site "d" subnet 10.1.7.0\/24/);
    refused(s, (x) => addSiteToNetwork(x, { network: 10, site: 'a' }, ctx), 409, /already in network 10/);
    refused(s, (x) => addSiteToNetwork(x, { network: 99, site: 'e' }, ctx), 404, 'unknown network 99');
    expect(addSiteToNetwork(s, { network: 10, site: 'e' }, ctx).result.sites).toEqual(['a', 'b', 'c', 'e']);
    s = createNetwork(s, { id: 20, name: 'v', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['a', 'b'] }, ctx).state;
    expect(addSiteToNetwork(s, { network: 20, site: 'd' }, ctx).result.blocks).toEqual({ a: '172.16.0.0/24', b: '172.16.1.0/24', d: '172.16.2.0/24' });
  });

  it('shuts down (once) and deletes; deleting removes hosts and revokes tokens', () => {
    let s = world();
    s = joinHost(s, { network: 10, address: '10.1.0.5' }, ctx).state;
    s = createTokens(s, { network: 10, expiresIn: 3600, singleUse: true, count: 2 }, ctx).state;
    const down = shutdownNetwork(s, { network: 10 }, ctx).state;
    expect(down.networks[0].state).toBe('shutdown');
    refused(down, (x) => shutdownNetwork(x, { network: 10 }, ctx), 409, /already shut down/);
    refused(down, (x) => joinHost(x, { network: 10, address: '10.1.0.6' }, ctx), 409, /network 10 \(lab\) is shut down/);
    refused(down, (x) => createTokens(x, { network: 10, expiresIn: 3600, singleUse: true, count: 1 }, ctx), 409, /shut down/);
    const del = deleteNetwork(s, { network: 10 }, ctx).state;
    expect(del.networks).toEqual([]);
    expect(del.hosts).toEqual([]);
    expect(del.tokens.map((t) => t.revoked)).toEqual([true, true]);
    refused(del, (x) => deleteNetwork(x, { network: 10 }, ctx), 404, 'unknown network 10');
    refused(del, (x) => shutdownNetwork(x, { network: 0 }, ctx), 400, /network must be an integer/);
  });
});

describe('merge', () => {
  function two(): State {
    let s = world();
    s = registerSite(s, { name: 'd', provider: 'aws', subnets: ['10.4.0.0/16'] }, ctx).state;
    s = registerFullvr(s, { id: 4, endpoint: '198.51.100.4:4789', publicKey: key(4), site: 'd' }, ctx).state;
    s = createNetwork(s, { id: 11, name: 'other', sites: ['d', 'a'], owner: 'tokB' }, ctx).state;
    s = joinHost(s, { network: 10, address: '10.1.0.5' }, ctx).state;
    s = joinHost(s, { network: 11, address: '10.4.0.9' }, ctx).state;
    s = joinHost(s, { network: 11, address: '10.1.0.5' }, ctx).state; // same host in both
    s = createTokens(s, { network: 11, expiresIn: 3600, singleUse: true, count: 1 }, ctx).state;
    return s;
  }

  it("moves b's sites and hosts into a and removes b", () => {
    const r = mergeNetworks(two(), { into: 10, from: 11 }, ctx);
    expect(r.result).toMatchObject({ id: 10, name: 'lab', sites: ['a', 'b', 'c', 'd'], owners: ['tokB'] });
    expect(r.state.networks.map((n) => n.id)).toEqual([10]);
    expect(listHosts(r.state).map((h) => [h.network, h.address])).toEqual([
      [10, '10.1.0.5'],
      [10, '10.4.0.9'],
    ]);
    expect(r.state.tokens.every((t) => t.revoked)).toBe(true);
  });

  it('refuses merging with itself, unknown or shut-down networks, mixed modes and overlaps naming both sites', () => {
    let s = two();
    refused(s, (x) => mergeNetworks(x, { into: 10, from: 10 }, ctx), 400, 'cannot merge network 10 with itself');
    refused(s, (x) => mergeNetworks(x, { into: 10, from: 99 }, ctx), 404, 'unknown network 99');
    refused(s, (x) => mergeNetworks(x, { into: 10, from: 0 }, ctx), 400, /network must be an integer/);
    s = registerSite(s, { name: 'e', provider: 'aws', subnets: ['10.2.3.0/24'] }, ctx).state;
    s = createNetwork(s, { id: 12, name: 'clash', sites: ['e'] }, ctx).state;
    refused(s, (x) => mergeNetworks(x, { into: 10, from: 12 }, ctx), 409, /site "b" subnet 10.2.0.0\/16 overlaps site "e" subnet 10.2.3.0\/24/);
    s = createNetwork(s, { id: 20, name: 'v', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['a'] }, ctx).state;
    refused(s, (x) => mergeNetworks(x, { into: 10, from: 20 }, ctx), 409, /cannot merge virtual network 20 into physical network 10/);
    const down = shutdownNetwork(s, { network: 12 }, ctx).state;
    refused(down, (x) => mergeNetworks(x, { into: 10, from: 12 }, ctx), 409, /network 12 \(clash\) is shut down/);
  });

  it('virtual: refuses block clashes (naming both sites), foreign overlays and shared sites; merges disjoint blocks', () => {
    let s = world();
    s = createNetwork(s, { id: 20, name: 'v1', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['a'] }, ctx).state;
    s = createNetwork(s, { id: 21, name: 'v2', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['b'] }, ctx).state;
    refused(s, (x) => mergeNetworks(x, { into: 20, from: 21 }, ctx), 409, /block 172.16.0.0\/24 of site "b" \(network 21\) overlaps block 172.16.0.0\/24 of site "a" \(network 20\)/);
    s = createNetwork(s, { id: 22, name: 'v3', mode: 'virtual', overlay: '10.99.0.0/16', sites: ['c'] }, ctx).state;
    refused(s, (x) => mergeNetworks(x, { into: 20, from: 22 }, ctx), 409, /overlay 10.99.0.0\/16 is not inside overlay 172.16.0.0\/16/);
    s = createNetwork(s, { id: 23, name: 'v4', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['a'] }, ctx).state;
    refused(s, (x) => mergeNetworks(x, { into: 21, from: 23 }, ctx), 409, /cannot merge network 23 into 21: block .* of site "a"/);
    refused(s, (x) => mergeNetworks(x, { into: 20, from: 23 }, ctx), 409, /site "a" is in both/);
    // a network carved from the upper half merges cleanly, hosts keep their addresses
    s = createNetwork(s, { id: 24, name: 'v5', mode: 'virtual', overlay: '172.16.128.0/17', sites: ['c'] }, ctx).state;
    s = joinHost(s, { network: 24, site: 'c' }, ctx).state;
    const r = mergeNetworks(s, { into: 20, from: 24 }, ctx);
    expect(r.result.blocks).toEqual({ a: '172.16.0.0/24', c: '172.16.128.0/24' });
    expect(listHosts(r.state, { network: 20 }).map((h) => h.address)).toEqual(['172.16.128.1']);
  });
});

describe('split', () => {
  function populated(): State {
    let s = world();
    s = joinHost(s, { network: 10, address: '10.1.0.5' }, ctx).state;
    s = joinHost(s, { network: 10, address: '10.2.0.5' }, ctx).state;
    s = joinHost(s, { network: 10, address: '192.168.2.7' }, ctx).state;
    s = joinHost(s, { network: 10, address: '10.3.0.5' }, ctx).state;
    return s;
  }

  it('moves whole sites and their hosts to a new network', () => {
    const r = splitNetwork(populated(), { network: 10, sites: ['b', 'c'], newId: 30, newName: 'lab-b' }, ctx);
    expect(r.result.network.sites).toEqual(['a']);
    expect(r.result.created).toMatchObject({ id: 30, name: 'lab-b', mode: 'physical', sites: ['b', 'c'], state: 'active' });
    expect(listHosts(r.state, { network: 10 }).map((h) => h.address)).toEqual(['10.1.0.5']);
    expect(listHosts(r.state, { network: 30 }).map((h) => h.address)).toEqual(['10.2.0.5', '192.168.2.7', '10.3.0.5']);
  });

  it('virtual split keeps the moved blocks', () => {
    let s = world();
    s = createNetwork(s, { id: 20, name: 'v', mode: 'virtual', overlay: '172.16.0.0/16', sites: ['a', 'b'] }, ctx).state;
    const r = splitNetwork(s, { network: 20, sites: ['b'], newId: 21, newName: 'v-b' }, ctx).result;
    expect(r.network.blocks).toEqual({ a: '172.16.0.0/24' });
    expect(r.created).toMatchObject({ overlay: '172.16.0.0/16', blockPrefix: 24, blocks: { b: '172.16.1.0/24' } });
  });

  it('refuses empty halves, unknown sites, taken ids/names and hosts of one site in both halves', () => {
    const s = populated();
    const sp = { network: 10, newId: 30, newName: 'lab-b' };
    refused(s, (x) => splitNetwork(x, { ...sp, sites: [] }, ctx), 400, /leave the new network without sites/);
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['a', 'b', 'c'] }, ctx), 409, /would leave it without sites/);
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['zz'] }, ctx), 409, /site "zz" is not in network 10/);
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['b'], newId: 10 }, ctx), 409, 'network 10 already exists');
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['b'], newId: 0 }, ctx), 400, /newId must be an integer/);
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['b'], newName: 'lab' }, ctx), 409, /already used by network 10/);
    refused(s, (x) => splitNetwork(x, { ...sp, network: 99, sites: ['b'] }, ctx), 404, 'unknown network 99');
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['b'], hosts: ['10.2.0.5'] }, ctx), 409, /hosts of site "b" would end in both halves \(192.168.2.7 is not listed\)/);
    refused(s, (x) => splitNetwork(x, { ...sp, sites: ['b'], hosts: ['10.2.0.5', '192.168.2.7', '10.1.0.5'] }, ctx), 409, /its site "a" stays: a site is the unit of split/);
    expect(splitNetwork(s, { ...sp, sites: ['b'], hosts: ['10.2.0.5', '192.168.2.7'] }, ctx).result.created.sites).toEqual(['b']);
  });
});

describe('hosts', () => {
  it('physical: the address picks the site and its FullVR', () => {
    let s = world();
    const r = joinHost(s, { network: 10, address: '192.168.2.7', name: 'db1' }, ctx);
    expect(r.result).toEqual({ address: '192.168.2.7', network: 10, site: 'b', fullvr: 2, name: 'db1', joinedAt: new Date(T0).toISOString() });
    s = r.state;
    refused(s, (x) => joinHost(x, { network: 10, address: '192.168.2.7' }, ctx), 409, '192.168.2.7 is already a member of network 10');
    refused(s, (x) => joinHost(x, { network: 10, address: '8.8.8.8' }, ctx), 409, /8.8.8.8 is not inside a subnet of any site of network 10 \(a, b, c\)/);
    refused(s, (x) => joinHost(x, { network: 10, address: '10.1.0.9', site: 'b' }, ctx), 409, /belongs to site "a", not "b"/);
    refused(s, (x) => joinHost(x, { network: 10 }, ctx), 400, /physical: give the host's own address/);
    refused(s, (x) => joinHost(x, { network: 10, address: '10.1.0.999' }, ctx), 400, /not a valid IP address/);
    refused(s, (x) => joinHost(x, { network: 77, address: '10.1.0.9' }, ctx), 404, 'unknown network 77');
    const left = leaveHost(s, { network: 10, address: '192.168.2.7' }, ctx);
    expect(left.state.hosts).toEqual([]);
    refused(left.state, (x) => leaveHost(x, { network: 10, address: '192.168.2.7' }, ctx), 404, /is not a member of network 10/);
  });

  it('virtual: allocates inside the site block, skipping taken and reserved addresses', () => {
    let s = world();
    s = createNetwork(s, { id: 20, name: 'v', mode: 'virtual', overlay: '172.16.0.0/16', blockPrefix: 30, sites: ['a', 'b'] }, ctx).state;
    refused(s, (x) => joinHost(x, { network: 20 }, ctx), 400, /has several sites \(a, b\); say which one/);
    const h1 = joinHost(s, { network: 20, site: 'b' }, ctx);
    expect(h1.result).toMatchObject({ address: '172.16.0.5', site: 'b', fullvr: 2 });
    s = h1.state;
    s = joinHost(s, { network: 20, site: 'b' }, ctx).state;
    refused(s, (x) => joinHost(x, { network: 20, site: 'b' }, ctx), 409, /block 172.16.0.4\/30 of site "b" in network 20 is full/);
    refused(s, (x) => joinHost(x, { network: 20, address: '172.16.0.3' }, ctx), 409, /not a usable address of block 172.16.0.0\/30/);
    refused(s, (x) => joinHost(x, { network: 20, address: '172.17.0.1' }, ctx), 409, /not inside the block of any site/);
    refused(s, (x) => joinHost(x, { network: 20, site: 'c' }, ctx), 409, /site "c" is not in network 20/);
    expect(joinHost(s, { network: 20, address: '172.16.0.2' }, ctx).result).toMatchObject({ site: 'a', fullvr: 1 });
  });

  it('refuses hosts at a site without a FullVR', () => {
    let s = world();
    s = registerSite(s, { name: 'd', provider: 'aws', subnets: ['10.4.0.0/16'] }, ctx).state;
    s = addSiteToNetwork(s, { network: 10, site: 'd' }, ctx).state;
    refused(s, (x) => joinHost(x, { network: 10, address: '10.4.0.1' }, ctx), 409, /site "d" has no FullVR registered/);
  });
});

describe('tokens and API tokens', () => {
  it('creates, lists and revokes join tokens', () => {
    let s = world();
    const r = createTokens(s, { network: 10, expiresIn: 600, singleUse: true, count: 3, fullvr: 2 }, ctx);
    expect(r.result).toHaveLength(3);
    expect(new Set(r.result.map((t) => t.jti)).size).toBe(3);
    expect(r.result[0]).toMatchObject({ network: 10, fullvr: 2, singleUse: true, revoked: false, count: 1, expires: T0 / 1000 + 600, issuedBy: 'tester' });
    s = r.state;
    const multi = createTokens(s, { network: 10, expiresIn: 600, singleUse: false, count: 1 }, ctx).result[0];
    expect(multi).toMatchObject({ singleUse: false, count: 0, fullvr: null });
    expect(listTokens(s, { network: 10 })).toHaveLength(3);
    const rv = revokeToken(s, { jti: r.result[1].jti }, ctx);
    expect(rv.result.revoked).toBe(true);
    refused(rv.state, (x) => revokeToken(x, { jti: r.result[1].jti }, ctx), 409, /already revoked/);
    refused(s, (x) => revokeToken(x, { jti: 'nosuchtoken' }, ctx), 404, 'unknown token nosuchtoken');
    // expired tokens are dropped at the next change
    const later = createTokens(s, { network: 10, expiresIn: 60, singleUse: true, count: 1 }, { who: 'x', now: T0 + 601_000 }).state;
    expect(later.tokens).toHaveLength(1);
  });

  it('refuses bad token requests', () => {
    const s = world();
    const t = { network: 10, expiresIn: 600, singleUse: true, count: 1 };
    refused(s, (x) => createTokens(x, { ...t, network: 99 }, ctx), 404, 'unknown network 99');
    refused(s, (x) => createTokens(x, { ...t, expiresIn: 5 }, ctx), 400, /expiresIn must be 60..2592000/);
    refused(s, (x) => createTokens(x, { ...t, count: 0 }, ctx), 400, /count must be 1..1000/);
    refused(s, (x) => createTokens(x, { ...t, fullvr: 55 }, ctx), 404, 'unknown FullVR 55');
    const other = createNetwork(registerSite(s, { name: 'z', provider: 'p', subnets: ['10.9.0.0/16'] }, ctx).state, { id: 11, name: 'o', sites: ['z'] }, ctx).state;
    refused(other, (x) => createTokens(x, { ...t, network: 11, fullvr: 1 }, ctx), 409, 'FullVR 1 serves no site of network 11');
    refused(s, (x) => createTokens(x, { ...t, count: 2, issued: [{ jti: 'abcdefgh12', exp: 1, iat: 1 }] }, ctx), 400, /count is 2 but 1 signed/);
  });

  it('creates API tokens with scopes checked', () => {
    const s = world();
    const h = (c: string) => c.repeat(64);
    expect(createApiToken(s, { id: 'ad1', hash: h('a'), role: 'admin' }, ctx).result).toMatchObject({ id: 'ad1', role: 'admin', scope: null });
    expect(createApiToken(s, { id: 'sa', hash: h('b'), role: 'site-admin', scope: 'a' }, ctx).result.scope).toBe('a');
    refused(s, (x) => createApiToken(x, { id: 'sa', hash: h('b'), role: 'site-admin', scope: 'zz' }, ctx), 404, 'unknown site "zz"');
    refused(s, (x) => createApiToken(x, { id: 'u', hash: h('c'), role: 'user' }, ctx), 400, /needs a network id/);
    refused(s, (x) => createApiToken(x, { id: 'u', hash: h('c'), role: 'user', scope: 99 }, ctx), 404, 'unknown network 99');
    refused(s, (x) => createApiToken(x, { id: 'a2', hash: h('c'), role: 'admin', scope: 'a' }, ctx), 400, /admin token has no scope/);
    refused(s, (x) => createApiToken(x, { id: 'a2', hash: 'xyz', role: 'admin' }, ctx), 400, /64 hex/);
    const s2 = createApiToken(s, { id: 'ad1', hash: h('a'), role: 'admin' }, ctx).state;
    refused(s2, (x) => createApiToken(x, { id: 'ad1', hash: h('d'), role: 'admin' }, ctx), 409, /already exists/);
  });

  it('caps the changelog', () => {
    let s = world();
    for (let i = 0; i < CHANGELOG_LIMIT + 5; i++) s = createTokens(s, { network: 10, expiresIn: 600, singleUse: true, count: 1 }, ctx).state;
    expect(s.changelog).toHaveLength(CHANGELOG_LIMIT);
    expect(s.changelog.at(-1)!.version).toBe(s.version);
    expect(s.changelog[0].version).toBe(s.version - CHANGELOG_LIMIT + 1);
  });
});

describe('computeTables', () => {
  function routed(): State {
    let s = world();
    s = createNetwork(s, { id: 20, name: 'v', mode: 'virtual', auth: 'aes-gcm', overlay: '172.16.0.0/16', sites: ['a', 'c'] }, ctx).state;
    s = joinHost(s, { network: 10, address: '10.1.0.5' }, ctx).state;
    s = joinHost(s, { network: 10, address: '10.3.0.5' }, ctx).state;
    s = joinHost(s, { network: 20, site: 'c' }, ctx).state;
    const tk = createTokens(s, { network: 10, expiresIn: 600, singleUse: true, count: 2 }, ctx);
    s = revokeToken(tk.state, { jti: tk.result[0].jti }, ctx).state;
    // a shut-down network is omitted everywhere
    s = registerSite(s, { name: 'z', provider: 'p', subnets: ['10.9.0.0/16'] }, ctx).state;
    s = createNetwork(s, { id: 30, name: 'off', sites: ['a', 'z'] }, ctx).state;
    s = shutdownNetwork(s, { network: 30 }, ctx).state;
    return s;
  }
  const sitesOf = (t: ReturnType<typeof computeTables>, id: number) => t.networks.find((n) => n.id === id)!.sites;

  it('public FullVR: sites behind a limited FullVR route to its queue-VR', () => {
    const s = routed();
    const t = computeTables(s, 2);
    expect(t.version).toBe(s.version);
    expect(t.fullvr).toBe(2);
    expect(t.networks.map((n) => n.id)).toEqual([10]); // FullVR 2 serves no site of 20; 30 is shut down
    expect(sitesOf(t, 10)).toEqual([
      { name: 'a', subnet: '10.1.0.0/16', vr: 1 },
      { name: 'b.1', subnet: '10.2.0.0/16', vr: 2 },
      { name: 'b.2', subnet: '192.168.2.0/24', vr: 2 },
      { name: 'c', subnet: '10.3.0.0/16', vr: 1 }, // limited FullVR 3 -> its queue-VR 1
    ]);
    expect(t.networks[0]).toMatchObject({ name: 'lab', mode: 'physical', auth: 'gmac', lan: [] });
    expect(t.networks[0]).not.toHaveProperty('overlay');
    // 3 is a peer (it opens sessions to us), flagged as limited
    expect(t.peers.map((p) => p.id)).toEqual([1, 3]);
    expect(t.peers[0]).toEqual({ id: 1, endpoint: '198.51.100.1:4789', publicKey: key(1) });
    expect(t.limited).toEqual([{ id: 3, queueVr: 1 }]);
    expect(t.members).toEqual([]);
    expect(t.revokedTokens).toEqual([s.tokens.find((x) => x.revoked)!.jti]);
  });

  it("queue-VR: routes the limited FullVR's sites to it directly", () => {
    const t = computeTables(routed(), 1);
    expect(t.networks.map((n) => n.id)).toEqual([10, 20]);
    expect(sitesOf(t, 10).find((x) => x.name === 'c')).toEqual({ name: 'c', subnet: '10.3.0.0/16', vr: 3 });
    expect(t.networks[1]).toMatchObject({ mode: 'virtual', auth: 'aes-gcm', overlay: '172.16.0.0/16' });
    expect(sitesOf(t, 20)).toEqual([
      { name: 'a', subnet: '172.16.0.0/24', vr: 1 },
      { name: 'c', subnet: '172.16.1.0/24', vr: 3 },
    ]);
    expect(t.peers.map((p) => p.id)).toEqual([2, 3]);
    expect(t.members).toEqual([{ network: 10, address: '10.1.0.5' }]);
  });

  it('limited FullVR: routes its own sites to itself, everything else directly', () => {
    const t = computeTables(routed(), 3);
    expect(t.networks.map((n) => n.id)).toEqual([10, 20]);
    expect(sitesOf(t, 10).map((x) => [x.name, x.vr])).toEqual([
      ['a', 1],
      ['b.1', 2],
      ['b.2', 2],
      ['c', 3],
    ]);
    expect(t.peers.map((p) => p.id)).toEqual([1, 2]);
    expect(t.limited).toEqual([]);
    expect(t.members).toEqual([
      { network: 10, address: '10.3.0.5' },
      { network: 20, address: '172.16.1.1' },
    ]);
  });

  it('two limited FullVRs never peer with each other; each reaches the other through its queue-VR', () => {
    let s = routed();
    s = registerSite(s, { name: 'd', provider: 'lab', subnets: ['10.4.0.0/16'] }, ctx).state;
    s = registerFullvr(s, { id: 4, endpoint: '203.0.113.4:4789', publicKey: key(4), site: 'd', nat: 'limited', queueVr: 2 }, ctx).state;
    s = addSiteToNetwork(s, { network: 10, site: 'd' }, ctx).state;
    const t3 = computeTables(s, 3);
    expect(sitesOf(t3, 10).find((x) => x.name === 'd')!.vr).toBe(2);
    expect(t3.peers.map((p) => p.id)).toEqual([1, 2]);
    const t4 = computeTables(s, 4);
    expect(sitesOf(t4, 10).find((x) => x.name === 'c')!.vr).toBe(1);
    expect(t4.peers.map((p) => p.id)).toEqual([1, 2]);
    const t2 = computeTables(s, 2);
    expect(sitesOf(t2, 10).find((x) => x.name === 'd')!.vr).toBe(4);
    expect(t2.limited).toEqual([{ id: 3, queueVr: 1 }, { id: 4, queueVr: 2 }]);
  });

  it('tables validate as a FullVR config (every vr is self or a peer)', () => {
    const s = routed();
    for (const id of [1, 2, 3]) {
      const t = computeTables(s, id);
      const cfg = { id, privateKey: key(100 + id), peers: t.peers, networks: t.networks };
      expect(() => parseFullvrConfig(cfg, `tables-${id}`)).not.toThrow();
    }
  });

  it('refuses unknown and invalid FullVR ids', () => {
    expect(() => computeTables(routed(), 99)).toThrow('unknown FullVR 99');
    expect(() => computeTables(routed(), 0)).toThrow(/FullVR id must be an integer/);
  });
});
