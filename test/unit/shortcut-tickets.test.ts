// Shortcut tickets (FullVR A vouches to peer B for one of its members) and B's admission of
// such a member. The lab test (overlay suite) runs real shortcuts end to end.
import { describe, expect, it } from 'vitest';
import { generateKeyPair, loadPrivateKey, loadPublicKey } from '../../shared/handshake.js';
import { RoutingTables } from '../../shared/routing-tables.js';
import { SHORTCUT_TTL_MS, ShortcutTickets } from '../../fullvr/shortcut-tickets.js';
import { Members } from '../../fullvr/members.js';
import { MemberTickets } from '../../fullvr/tickets.js';
import type { FullvrNetworkConfig } from '../../fullvr/config.js';
import type { TokenVerifier } from '../../fullvr/tokens.js';

const keys = { 1: generateKeyPair(), 2: generateKeyPair(), 3: generateKeyPair() } as Record<number, { publicKey: string; privateKey: string }>;
/** VR `id`'s ticket book; it knows every other VR of `keys` as a peer. */
const book = (id: number, peers = [1, 2, 3]) =>
  new ShortcutTickets(loadPrivateKey(keys[id].privateKey), id, (p) => (peers.includes(p) ? loadPublicKey(keys[p].publicKey) : undefined));

const NET: FullvrNetworkConfig = {
  id: 7,
  name: 'blue',
  mode: 'physical',
  auth: 'gmac',
  lan: [],
  sites: [
    { name: 'a', subnet: '10.1.0.0/24', vr: 1 },
    { name: 'b', subnet: '10.2.0.0/24', vr: 2 },
    { name: 'c', subnet: '10.3.0.0/24', vr: 3 },
  ],
};
const noTokens: TokenVerifier = { verify: () => ({ error: 'no tokens here', reason: 'bad_token' }), consume: () => {} };

function membersOf(id: number, shortcuts: ShortcutTickets | null, nets = [NET]): { members: Members; tables: RoutingTables } {
  const tables = new RoutingTables();
  const members = new Members(id, new Map(nets.map((n) => [n.id, n])), tables, noTokens, 1432, new MemberTickets(keys[id].privateKey, id), shortcuts);
  return { members, tables };
}

describe('shortcut tickets', () => {
  it('a ticket A issues for B verifies at B with what A said, and nowhere else', () => {
    const t = book(1).issue(2, 7, ['10.1.0.11'], 1_000)!;
    expect(book(2).verify(t, 2_000)).toEqual({ net: 7, addrs: ['10.1.0.11'], home: 1, to: 2, exp: 1_000 + SHORTCUT_TTL_MS });
    // C shares a different key with A: the MAC does not check out there.
    expect(book(3).verify(t, 2_000)).toEqual({ error: 'shortcut ticket has a bad MAC' });
    // B no longer knows A as a peer.
    expect(book(2, [3]).verify(t, 2_000)).toEqual({ error: 'shortcut ticket from VR 1, which is not a peer of this FullVR' });
  });

  it('expired, tampered and malformed tickets are refused with a reason', () => {
    const t = book(1).issue(2, 7, ['10.1.0.11'], 1_000)!;
    expect(book(2).verify(t, 1_000 + SHORTCUT_TTL_MS)).toEqual({ error: 'shortcut ticket expired' });
    const [body, mac] = t.split('.');
    const claim = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forged = Buffer.from(JSON.stringify({ ...claim, addrs: ['10.1.0.99'] })).toString('base64url');
    expect(book(2).verify(`${forged}.${mac}`, 2_000)).toEqual({ error: 'shortcut ticket has a bad MAC' });
    for (const bad of ['', 'x', 'a.b.c', `${body}.`, 'bm90IGpzb24.abc', 'x'.repeat(3000) + '.y']) {
      expect(book(2).verify(bad, 2_000)).toEqual({ error: 'malformed shortcut ticket' });
    }
  });

  it('no ticket for ourselves or for an unknown VR', () => {
    expect(book(1).issue(1, 7, ['10.1.0.11'])).toBeNull();
    expect(book(1, [2]).issue(3, 7, ['10.1.0.11'])).toBeNull();
  });
});

describe('shortcut admission (FullVR B)', () => {
  it("admits A's member with exactly the ticket's addresses; its routes are B's sites; no token needed", () => {
    const { members, tables } = membersOf(2, book(2));
    const t = book(1).issue(2, 7, ['10.1.0.11'])!;
    const adm = members.admit({ shortcut: t, addrs: ['10.9.9.9'], want: '10.2.0.50' });
    if ('error' in adm) throw new Error(adm.error);
    expect(adm.shortcut).toBe(true);
    expect(adm.answer).toMatchObject({ network: 7, mode: 'physical', address: '10.1.0.11', addresses: ['10.1.0.11'], routes: ['10.2.0.0/24'], prefixlen: 24 });
    members.commit(5, adm.answer, adm.physical, '198.51.100.1:4000', adm.grant, adm.shortcut);
    expect(members.get(5)?.shortcut).toBe(true);
    // B's LNDT now sends 10.1.0.11 straight to that session.
    expect(tables.describe().lndt).toContainEqual({ prefix: '10.1.0.11/32', kind: 'member', network: 7, session: 5 });
  });

  it('refuses addresses outside the issuer’s sites, networks B does not serve, and shortcuts when off', () => {
    const { members } = membersOf(2, book(2));
    // A vouching for an address of C's site (a buggy or hostile issuer) gets nowhere.
    expect(members.admit({ shortcut: book(1).issue(2, 7, ['10.3.0.5'])! })).toMatchObject({ reason: 'bad_shortcut' });
    expect(members.admit({ shortcut: book(1).issue(2, 8, ['10.1.0.11'])! })).toMatchObject({ reason: 'wrong_network' });
    expect(members.admit({ shortcut: 42 })).toMatchObject({ reason: 'bad_shortcut' });
    const off = membersOf(2, null).members;
    expect(off.admit({ shortcut: book(1).issue(2, 7, ['10.1.0.11'])! })).toMatchObject({ reason: 'shortcut_off' });
    // A network where B serves no site: nothing to offer a shortcut for.
    const notMine = membersOf(2, book(2), [{ ...NET, sites: NET.sites.filter((s) => s.vr !== 2) }]).members;
    expect(notMine.admit({ shortcut: book(1).issue(2, 7, ['10.1.0.11'])! })).toMatchObject({ reason: 'bad_shortcut' });
  });

  it('a member that failed over to B is not displaced by a shortcut of the same address', () => {
    const { members } = membersOf(2, book(2));
    members.commit(
      9,
      { network: 7, networkName: 'blue', mode: 'physical', address: '10.1.0.11', addresses: ['10.1.0.11'], prefixlen: 24, routes: [], mtu: 1432 },
      '10.1.0.11',
      '198.51.100.1:4000',
      { network: 7 },
    );
    expect(members.admit({ shortcut: book(1).issue(2, 7, ['10.1.0.11'])! })).toMatchObject({ reason: 'already_member' });
  });

  it('an operator-removed host gets no shortcut either', () => {
    const { members } = membersOf(2, book(2));
    members.left.add('7|10.1.0.11');
    expect(members.admit({ shortcut: book(1).issue(2, 7, ['10.1.0.11'])! })).toMatchObject({ reason: 'host_left' });
  });
});
