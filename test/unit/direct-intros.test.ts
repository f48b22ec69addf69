// Direct-path introductions at the FullVR (fullvr/direct-intros.ts): who is introduced to
// whom, with which role, and how often. The lab test (test/lab/direct.test.ts) proves the
// whole path on real packets; this pins the rules.
import { describe, expect, it, vi } from 'vitest';
import { DirectIntros, INTRO_EVERY_MS, REVOKE_AT_MS, REVOKED_KEEP_MS } from '../../fullvr/direct-intros.js';
import type { Member, Members } from '../../fullvr/members.js';

function setup() {
  const list: Member[] = [
    { session: 5, network: 1, address: '10.1.0.11', addresses: ['10.1.0.11'], physical: '10.1.0.11', endpoint: '198.51.100.2:40001', joinedAt: 0, directKey: 'B'.repeat(43) + '=' },
    { session: 9, network: 1, address: '10.2.0.11', addresses: ['10.2.0.11', 'fd00:2::11'], physical: '10.2.0.11', endpoint: '203.0.113.2:40002', joinedAt: 0, directKey: 'A'.repeat(43) + '=' },
    { session: 12, network: 2, address: '10.2.0.12', addresses: ['10.2.0.12'], physical: '10.2.0.12', endpoint: '203.0.113.2:40003', joinedAt: 0, directKey: 'C'.repeat(43) + '=' },
    { session: 14, network: 1, address: '10.2.0.13', addresses: ['10.2.0.13'], physical: '10.2.0.13', endpoint: '203.0.113.2:40004', joinedAt: 0 }, // --no-direct
  ];
  const members = {
    get: (s: number) => list.find((m) => m.session === s),
    byAddr: (n: number, a: string) => list.find((m) => m.network === n && m.addresses.includes(a)),
    hasLeft: (n: number, a: string) => left.has(`${n}|${a}`),
  } as unknown as Members;
  const left = new Set<string>();
  const sent: Array<[number, Record<string, unknown>]> = [];
  let now = 1_000_000;
  const intros = new DirectIntros({ members, send: (s, p) => (sent.push([s, p]), true), now: () => now });
  /** 5 and 9 introduced to each other (what that sent is cleared). */
  const introduce59 = () => {
    intros.forwarded(5, 9);
    intros.flush();
    sent.length = 0;
  };
  return { intros, sent, list, left, introduce59, tick: (ms: number) => (now += ms) };
}

describe('direct-path introductions', () => {
  it('introduces two members of one network to each other: responder first, roles by key, the peer as we see it', () => {
    const { intros, sent } = setup();
    intros.forwarded(5, 9);
    intros.flush();
    // session 9's key sorts first: it initiates, whichever of the two sent the packet.
    expect(sent).toEqual([
      [5, { op: 'direct', net: 1, addrs: ['10.2.0.11', 'fd00:2::11'], endpoint: '203.0.113.2:40002', key: 'A'.repeat(43) + '=', initiate: false }],
      [9, { op: 'direct', net: 1, addrs: ['10.1.0.11'], endpoint: '198.51.100.2:40001', key: 'B'.repeat(43) + '=', initiate: true }],
    ]);
    expect(intros.intros).toBe(1);
  });

  it('once per pair per INTRO_EVERY_MS, either direction, forwarded or asked', () => {
    const { intros, sent, list, tick } = setup();
    const m9 = list[1]!;
    intros.forwarded(5, 9);
    intros.forwarded(9, 5);
    intros.flush();
    intros.asked(5, '10.2.0.11');
    expect(sent).toHaveLength(2);
    tick(INTRO_EVERY_MS);
    intros.asked(5, 'fd00:2::11'); // by any of its addresses
    expect(sent).toHaveLength(4);
    list.splice(1, 1); // 9 left: its peers are told, and a member that joins later is introduced at once
    intros.revoke(9);
    expect(sent.slice(4)).toEqual([[5, { op: 'direct-revoke', key: 'A'.repeat(43) + '=' }]]);
    list.push({ ...m9, session: 10 });
    intros.asked(5, '10.2.0.11');
    expect(sent).toHaveLength(7);
  });

  it('a revocation only for a member that is gone: the same TinyVR rejoining on a new session keeps its paths', () => {
    const { intros, sent, list, introduce59 } = setup();
    introduce59();
    list[1] = { ...list[1]!, session: 11 }; // 9 rejoined as 11, same key and network
    intros.revoke(9);
    expect(sent).toEqual([]);
    list[1] = { ...list[1]!, directKey: 'D'.repeat(43) + '=' }; // 11 replaced by a restarted TinyVR (new key)
    intros.revoke(11);
    expect(sent).toEqual([[5, { op: 'direct-revoke', key: 'A'.repeat(43) + '=' }]]);
    expect(intros.revocations).toBe(1);
  });

  it('never across networks, never a member without a key, never a member to itself or to an unknown address', () => {
    const { intros, sent } = setup();
    intros.forwarded(9, 12); // network 1 and network 2
    intros.forwarded(5, 14); // 14 takes no direct paths
    intros.forwarded(5, 5);
    intros.forwarded(5, 77); // no such session
    intros.flush();
    intros.asked(5, '10.2.0.12'); // network 2's address, asked from network 1
    intros.asked(5, '10.9.9.9');
    intros.asked(5, 42);
    expect(sent).toEqual([]);
  });

  it('a revocation is sent again at REVOKE_AT_MS, each time to the session the member holds then (it may be rejoining)', () => {
    vi.useFakeTimers();
    try {
      const { intros, sent, list, introduce59 } = setup();
      introduce59();
      list.splice(1, 1); // 9 removed
      intros.revoke(9);
      const revoke = { op: 'direct-revoke', key: 'A'.repeat(43) + '=' };
      expect(sent).toEqual([[5, revoke]]);
      list[0] = { ...list[0]!, session: 6 }; // 5 rejoined as 6 (same key): later sends go there
      vi.advanceTimersByTime(REVOKE_AT_MS[1]!);
      expect(sent).toEqual([[5, revoke], [6, revoke]]);
      list[0] = { ...list[0]!, directKey: 'E'.repeat(43) + '=' }; // 6 is now another TinyVR: it never knew 9
      vi.advanceTimersByTime(REVOKE_AT_MS.at(-1)!);
      expect(sent).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a renewal (ask with the peer key) is answered with an introduction while the peer is a member, with a revocation once we revoked that key', () => {
    const { intros, sent, list, tick } = setup();
    const keyA = 'A'.repeat(43) + '=';
    const keyF = 'F'.repeat(43) + '=';
    intros.asked(5, '10.2.0.11', keyA);
    expect(sent.map(([s, p]) => [s, p.op])).toEqual([[5, 'direct'], [9, 'direct']]);
    sent.length = 0;
    tick(INTRO_EVERY_MS);
    // 10.2.0.11 restarted elsewhere (another key; we never revoked A): introduced anew, the new
    // introduction replaces the old path at the asker. (Roles by key: 'B…' < 'F…', 9 is told first.)
    list[1] = { ...list[1]!, directKey: keyF };
    intros.asked(5, '10.2.0.11', keyA);
    expect(sent.map(([s, p]) => [s, p.op, p.key])).toEqual([[9, 'direct', 'B'.repeat(43) + '='], [5, 'direct', keyF]]);
    sent.length = 0;
    // 10.2.0.11 removed here: revoked at once, and a renewal of a path to it later (the
    // revocation may have been lost) is answered with a revocation too, and nothing else.
    list.splice(1, 1);
    intros.revoke(9);
    expect(sent).toEqual([[5, { op: 'direct-revoke', key: keyF }]]);
    sent.length = 0;
    tick(60_000);
    intros.asked(5, '10.2.0.11', keyF);
    expect(sent).toEqual([[5, { op: 'direct-revoke', key: keyF }]]);
    tick(REVOKED_KEEP_MS);
    intros.asked(5, '10.2.0.11', keyF); // long forgotten: no answer
    intros.asked(77, '10.2.0.11', keyF); // not a member: no answer at all
    expect(sent).toHaveLength(1);
  });

  it("a peer's member whose shortcut went idle here is forgotten, not revoked: its paths stand, renewals get no revocation", () => {
    const { intros, sent, list, introduce59 } = setup();
    introduce59();
    list.splice(1, 1); // 9 (a shortcut member) expired here
    intros.forget(9);
    intros.asked(5, '10.2.0.11', 'A'.repeat(43) + '=');
    expect(sent).toEqual([]);
    expect(intros.revocations).toBe(0);
  });

  it('a renewal of a path to a host the authority lists as removed is answered with a revocation, even by a FullVR that no longer held it', () => {
    const { intros, sent, list, left } = setup();
    list.splice(1, 1); // 10.2.0.11 is not (or no longer) a member here
    left.add('1|10.2.0.11');
    intros.asked(5, '10.2.0.11', 'A'.repeat(43) + '=');
    expect(sent).toEqual([[5, { op: 'direct-revoke', key: 'A'.repeat(43) + '=' }]]);
    intros.asked(12, '10.2.0.11', 'A'.repeat(43) + '='); // asked from network 2: removed from 1 only
    expect(sent).toHaveLength(1);
  });
});
