// The FullVR's per-segment routing decision over whole batches: every slot gets its own
// verdict, also when consecutive slots look alike (the decision is memoized per batch only
// for an equal session, network, source and destination).
import { describe, expect, it } from 'vitest';
import { ipToBytes } from '../../shared/cidr.js';
import { Action, HEADROOM, Kind, M, META_FIELDS, PacketBatch, SLOT_SIZE } from '../../shared/packet-engine.js';
import { RoutingTables } from '../../shared/routing-tables.js';
import { FullvrDatapath, SessionKind } from '../../fullvr/datapath.js';

const SELF = 1;
const PEER = 2;
const PEER_SESSION = 77;
const M_A = 5; // member 10.1.0.11 (network 1)
const M_B = 6; // member 10.1.0.12 (network 1)
const M_C = 8; // member 10.1.0.13 (network 2)

function setup() {
  const t = new RoutingTables();
  t.addMember('10.1.0.11', 1, M_A);
  t.addMember('10.1.0.12', 1, M_B);
  t.addMember('10.1.0.13', 2, M_C);
  t.addMember('fd00:1::11', 1, M_A + 100);
  t.setGndt(1, [
    { subnet: '10.1.0.0/24', vr: SELF },
    { subnet: '10.2.0.0/24', vr: PEER },
    { subnet: 'fd00:1::/64', vr: SELF },
    { subnet: 'fd00:2::/64', vr: PEER },
  ]);
  t.setGndt(2, [{ subnet: '10.2.0.0/24', vr: PEER }]);
  const d = new FullvrDatapath(t, SELF, 16);
  for (const [s, net] of [[M_A, 1], [M_B, 1], [M_C, 2], [M_A + 100, 1]] as const) {
    d.sessionKind[s] = SessionKind.MEMBER;
    d.sessionNetwork[s] = net;
  }
  d.sessionKind[PEER_SESSION] = SessionKind.VR;
  d.sessionVr[PEER_SESSION] = PEER;
  d.vrSession.set(PEER, PEER_SESSION);
  return Object.assign(d, { testTables: t });
}

/** Fills slot i as a DATA datagram received on `session` carrying an IP packet src -> dst. */
function put(batch: PacketBatch, i: number, session: number, src: string, dst: string, network = 0): void {
  const s = ipToBytes(src);
  const dd = ipToBytes(dst);
  const off = i * SLOT_SIZE + HEADROOM;
  const len = s.length === 4 ? 60 : 80;
  batch.buf.fill(0, off, off + len);
  if (s.length === 4) {
    batch.buf[off] = 0x45;
    batch.buf.set(s, off + 12);
    batch.buf.set(dd, off + 16);
  } else {
    batch.buf[off] = 0x60;
    batch.buf.set(s, off + 8);
    batch.buf.set(dd, off + 24);
  }
  const b = i * META_FIELDS;
  batch.meta.fill(0, b, b + META_FIELDS);
  batch.meta[b + M.LEN] = len;
  batch.meta[b + M.KIND] = Kind.DATA;
  batch.meta[b + M.SESSION] = session;
  batch.meta[b + M.NETWORK] = network;
  batch.meta[b + M.OFF] = HEADROOM;
}

const actions = (batch: PacketBatch, n: number) => Array.from({ length: n }, (_, i) => batch.meta[i * META_FIELDS + M.ACTION]);

describe('FullvrDatapath', () => {
  it('decides every segment of a batch on its own, also between look-alike neighbours', () => {
    const d = setup();
    const batch = new PacketBatch(16);
    put(batch, 0, M_A, '10.1.0.11', '10.2.0.11'); // -> peer VR
    put(batch, 1, M_A, '10.1.0.11', '10.2.0.11');
    put(batch, 2, M_A, '10.1.0.11', '10.1.0.12'); // -> local member B
    put(batch, 3, M_A, '10.1.0.11', '10.2.0.11');
    put(batch, 4, M_B, '10.1.0.11', '10.2.0.11'); // same addresses, other session: spoofed
    put(batch, 5, M_A, '10.1.0.11', '10.2.0.99'); // another host of the peer site
    put(batch, 6, M_A, '10.1.0.11', '10.9.0.1'); // no route
    put(batch, 7, M_A, '10.1.0.11', '10.1.0.13'); // member of network 2: isolated
    put(batch, 8, M_A + 100, 'fd00:1::11', 'fd00:2::5');
    put(batch, 9, M_A + 100, 'fd00:1::11', 'fd00:2::5');
    put(batch, 10, M_A + 100, 'fd00:1::11', 'fd00:2::6');
    d.decideUdp(batch, 11);
    const D = Action.DROP;
    expect(actions(batch, 11)).toEqual([PEER_SESSION, PEER_SESSION, M_B, PEER_SESSION, D, PEER_SESSION, D, D, PEER_SESSION, PEER_SESSION, PEER_SESSION]);
    expect(d.routed).toBe(8);
    expect(d.dropCounters()).toMatchObject({ spoofed_source: 1, no_route: 1, wrong_network: 1 });
  });

  it('keys the reuse on the network a peer VR names, and forgets it between batches', () => {
    const d = setup();
    const batch = new PacketBatch(16);
    put(batch, 0, PEER_SESSION, '10.2.0.11', '10.1.0.11', 1); // -> member A
    put(batch, 1, PEER_SESSION, '10.2.0.11', '10.1.0.11', 1);
    put(batch, 2, PEER_SESSION, '10.2.0.11', '10.1.0.11', 2); // A is not in network 2
    put(batch, 3, PEER_SESSION, '10.2.0.11', '10.1.0.12', 1); // -> member B
    d.decideUdp(batch, 4);
    expect(actions(batch, 4)).toEqual([M_A, M_A, Action.DROP, M_B]);
    expect(d.dropCounters().wrong_network).toBe(1);

    // Next batch: slot 0 now holds another packet; the previous verdict must not leak into it.
    put(batch, 0, PEER_SESSION, '10.2.0.11', '10.1.0.13', 1); // network 1 packet for a network-2 member
    put(batch, 1, PEER_SESSION, '10.2.0.11', '10.1.0.13', 1);
    d.decideUdp(batch, 2);
    expect(actions(batch, 2)).toEqual([Action.DROP, Action.DROP]);
    expect(d.dropCounters().wrong_network).toBe(3);
  });

  it('sees a table change made between two batches', () => {
    const d = setup();
    const batch = new PacketBatch(4);
    put(batch, 0, M_A, '10.1.0.11', '10.1.0.12');
    d.decideUdp(batch, 1);
    expect(actions(batch, 1)).toEqual([M_B]);
    d.testTables.removeMember('10.1.0.12');
    d.decideUdp(batch, 1);
    // 10.1.0.12 is no longer a member here; the GNDT says the subnet is ours: not a member.
    expect(actions(batch, 1)).toEqual([Action.DROP]);
    expect(d.dropCounters().not_member).toBe(1);
  });

  it('flags each verdict for the engine cache: 1 routed, 2 relayed, 0 for drops', () => {
    const d = setup();
    d.relayFor.add(3); // we are the queue-VR of limited VR 3
    d.testTables.setGndt(1, [
      { subnet: '10.1.0.0/24', vr: SELF },
      { subnet: '10.2.0.0/24', vr: PEER },
      { subnet: '10.3.0.0/24', vr: 3 },
    ]);
    d.vrSession.set(3, 90);
    const batch = new PacketBatch(8);
    const flags = new Uint8Array(8).fill(9); // stale bytes from an earlier batch must not survive
    put(batch, 0, M_A, '10.1.0.11', '10.2.0.11'); // routed
    put(batch, 1, M_A, '10.1.0.11', '10.2.0.11'); // routed (memoized)
    put(batch, 2, M_A, '10.1.0.11', '10.9.0.1'); // no route: drop
    put(batch, 3, PEER_SESSION, '10.2.0.11', '10.3.0.5', 1); // relayed to limited VR 3
    put(batch, 4, PEER_SESSION, '10.2.0.11', '10.3.0.5', 1); // relayed (memoized)
    batch.meta[5 * META_FIELDS + M.KIND] = Kind.CONTROL;
    d.decideUdp(batch, 6, flags);
    expect(actions(batch, 5)).toEqual([PEER_SESSION, PEER_SESSION, Action.DROP, 90, 90]);
    expect(Array.from(flags)).toEqual([1, 1, 0, 2, 2, 0, 9, 9]);
  });

  it('every change a verdict depends on bumps the cache generation', () => {
    const d = setup();
    const changes: Array<[string, () => unknown]> = [
      ['addMember', () => d.testTables.addMember('10.1.0.20', 1, 30)],
      ['removeMember', () => d.testTables.removeMember('10.1.0.20')],
      ['addLanPrefix', () => d.testTables.addLanPrefix('192.168.5.0/24', 1)],
      ['removeLanPrefix', () => d.testTables.removeLanPrefix('192.168.5.0/24')],
      ['setGndt', () => d.testTables.setGndt(3, [{ subnet: '10.7.0.0/24', vr: PEER }])],
      ['removeNetwork', () => d.testTables.removeNetwork(3)],
      ['vrSession.set', () => d.vrSession.set(PEER, 78)],
      ['vrSession.delete', () => d.vrSession.delete(PEER)],
      ['vrSession.clear', () => d.vrSession.clear()],
      ['relayFor.add', () => d.relayFor.add(4)],
      ['relayFor.delete', () => d.relayFor.delete(4)],
      ['relayFor.clear', () => d.relayFor.clear()],
      ['queueVr', () => (d.queueVr = PEER)],
      ['setSessionKind', () => d.setSessionKind(40, SessionKind.MEMBER)],
      ['setSessionNetwork', () => d.setSessionNetwork(40, 1)],
      ['setSessionVr', () => d.setSessionVr(41, PEER)],
    ];
    for (const [what, change] of changes) {
      const before = d.cacheGen[0];
      change();
      expect({ what, bumped: d.cacheGen[0] !== before && d.cacheGen[0] !== 0 }).toEqual({ what, bumped: true });
    }
    // A wrap-around skips 0 (0 marks an empty cache entry).
    d.cacheGen[0] = -1;
    d.invalidate();
    expect(d.cacheGen[0]).toBe(1);
  });
});
