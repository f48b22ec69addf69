import { describe, expect, it } from 'vitest';
import {
  bytesToIp,
  cidrContains,
  cidrsOverlap,
  ipToBytes,
  parseCidr,
  parseEndpoint,
  formatEndpoint,
  parseIp,
  parsePrefix,
} from '../../shared/cidr.js';
import { RoutingTables } from '../../shared/routing-tables.js';

const KEY_A = Buffer.alloc(32, 1).toString('base64');
const KEY_B = Buffer.alloc(32, 2).toString('base64');

function pkt(src: string, dst: string): Uint8Array {
  const s = ipToBytes(src);
  const d = ipToBytes(dst);
  if (s.length === 4) {
    const b = new Uint8Array(20);
    b[0] = 0x45;
    b.set(s, 12);
    b.set(d, 16);
    return b;
  }
  const b = new Uint8Array(40);
  b[0] = 0x60;
  b.set(s, 8);
  b.set(d, 24);
  return b;
}

describe('cidr helpers (used to build the tables)', () => {
  it('parses and canonicalizes CIDRs', () => {
    expect(parseCidr('10.1.0.5/24')).toEqual({ family: 4, address: '10.1.0.5', bits: 24, network: '10.1.0.0' });
    expect(parseCidr('FD00:0:0::1/64')).toEqual({ family: 6, address: 'fd00::1', bits: 64, network: 'fd00::' });
    expect(parsePrefix('0.0.0.0/0').network).toBe('0.0.0.0');
    for (const bad of ['10.1.0.0/33', '10.1.0.0', '10.1.0/24', '01.1.0.0/24', '10.1.0.0/024', 'fd00::/129', 'fe80::%eth0/64', ' 10.0.0.0/8']) {
      expect(() => parseCidr(bad)).toThrow(`${JSON.stringify(bad)} is not a valid CIDR`);
    }
  });

  it('converts addresses to bytes and back (RFC 5952 text)', () => {
    expect([...ipToBytes('1.2.3.4')]).toEqual([1, 2, 3, 4]);
    expect(bytesToIp(ipToBytes('2001:0db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(bytesToIp(ipToBytes('::'))).toBe('::');
    expect(bytesToIp(ipToBytes('1:0:2:3:4:5:6:7'))).toBe('1:0:2:3:4:5:6:7');
    expect(bytesToIp(ipToBytes('::ffff:10.0.0.1'))).toBe('::ffff:10.0.0.1');
    expect(parseIp('FD00::0001')).toEqual({ family: 6, address: 'fd00::1' });
    expect(() => parseIp('1.2.3.256')).toThrow('"1.2.3.256" is not a valid IP address');
  });

  it('formats endpoints so that parseEndpoint reads them back (IPv6 in brackets, IPv4-mapped as IPv4)', () => {
    for (const [host, port, want] of [
      ['198.51.100.2', 40001, '198.51.100.2:40001'],
      ['2001:db8::2', 4789, '[2001:db8::2]:4789'],
      ['::ffff:203.0.113.2', 5, '203.0.113.2:5'],
    ] as const) {
      expect(formatEndpoint(host, port)).toBe(want);
      expect(parseEndpoint(want)).toMatchObject({ port });
    }
  });

  it('parses endpoints', () => {
    expect(parseEndpoint('203.0.113.3:4789')).toEqual({ host: '203.0.113.3', port: 4789, family: 4 });
    expect(parseEndpoint('[2001:DB8::1]:53')).toEqual({ host: '2001:db8::1', port: 53, family: 6 });
    expect(parseEndpoint('vr1.example.com:4789')).toEqual({ host: 'vr1.example.com', port: 4789, family: 0 });
    for (const bad of ['1.2.3.4', '1.2.3.4:0', '1.2.3.4:65536', '2001:db8::1:53', '[1.2.3.4]:5', '1.2.3.999:5', 'a b:5', ':5']) {
      expect(() => parseEndpoint(bad)).toThrow(`${JSON.stringify(bad)} is not a valid endpoint`);
    }
  });

  it('containment and overlap', () => {
    expect(cidrContains('10.1.0.0/16', '10.1.200.3')).toBe(true);
    expect(cidrContains('10.1.0.0/16', '10.2.0.1')).toBe(false);
    expect(cidrContains('10.1.0.0/16', 'fd00::1')).toBe(false);
    expect(cidrContains('::/0', 'fd00::1')).toBe(true);
    expect(cidrsOverlap('10.1.0.0/16', '10.1.5.0/24')).toBe(true);
    expect(cidrsOverlap('10.1.5.0/24', '10.1.0.0/16')).toBe(true);
    expect(cidrsOverlap('10.1.0.0/24', '10.1.1.0/24')).toBe(false);
    expect(cidrsOverlap('0.0.0.0/0', '::/0')).toBe(false);
  });
});

describe('RoutingTables LNDT', () => {
  it('maps members and LAN prefixes to network and delivery, longest match first', () => {
    const t = new RoutingTables();
    t.addLanPrefix('10.3.0.0/24', 1);
    const m = t.addMember('10.3.0.7', 1, 12); // a member inside the LAN prefix wins for its /32
    t.addMember('fd00:1::5', 2, 13);

    const p = pkt('10.3.0.9', '10.3.0.7');
    const dst = t.lndtLookupDst(p, 0);
    expect(dst).toBe(m);
    expect(t.lndtNetwork[dst]).toBe(1);
    expect(t.lndtSession[dst]).toBe(12);
    const src = t.lndtLookupSrc(p, 0);
    expect(t.lndtNetwork[src]).toBe(1);
    expect(t.lndtSession[src]).toBe(0); // TUN

    const p6 = pkt('fd00:9::1', 'fd00:1::5');
    const d6 = t.lndtLookupDst(p6, 0);
    expect(t.lndtNetwork[d6]).toBe(2);
    expect(t.lndtSession[d6]).toBe(13);
    expect(t.lndtLookupSrc(p6, 0)).toBe(-1);
    expect(t.lndtLookup('10.4.0.1')).toBe(-1);
  });

  it('removeMember falls back to the LAN prefix; re-adding moves the member in place', () => {
    const t = new RoutingTables();
    t.addLanPrefix('10.3.0.0/24', 1);
    const a = t.addMember('10.3.0.7', 1, 12);
    const b = t.addMember('10.3.0.7', 1, 40); // rejoin on a new session
    expect(b).toBe(a);
    expect(t.lndtSession[t.lndtLookup('10.3.0.7')]).toBe(40);
    expect(t.removeMember('10.3.0.7')).toBe(true);
    expect(t.removeMember('10.3.0.7')).toBe(false);
    expect(t.lndtSession[t.lndtLookup('10.3.0.7')]).toBe(0);
    expect(t.removeLanPrefix('10.3.0.0/24')).toBe(true);
    expect(t.lndtLookup('10.3.0.7')).toBe(-1);
    // freed entry indexes are reused
    expect(t.addMember('10.9.9.9', 1, 1)).toBeLessThanOrEqual(1);
  });

  it('grows its entry arrays (re-read them after control-plane changes)', () => {
    const t = new RoutingTables(2);
    for (let i = 1; i <= 300; i++) t.addMember(`10.0.${i >> 8}.${i & 255}`, 7, i);
    for (let i = 1; i <= 300; i++) {
      const e = t.lndtLookup(`10.0.${i >> 8}.${i & 255}`);
      expect(t.lndtSession[e]).toBe(i);
      expect(t.lndtNetwork[e]).toBe(7);
    }
  });

  it('validates its input', () => {
    const t = new RoutingTables();
    expect(() => t.addMember('10.0.0.1', 1, 0)).toThrow(/session/);
    expect(() => t.addMember('10.0.0.1', 1, 65536)).toThrow(/session/);
    expect(() => t.addMember('10.0.0.1', 0, 1)).toThrow(/network/);
    expect(() => t.addMember('10.0.0.1/32', 1, 1)).toThrow(/not a valid IP address/);
    expect(() => t.addLanPrefix('10.3.0.1/24', 1)).toThrow('10.3.0.1/24 has host bits set; did you mean 10.3.0.0/24?');
    t.addLanPrefix('10.5.0.1/32', 1);
    expect(() => t.addMember('10.5.0.1', 1, 3)).toThrow(/already a lan entry/);
    expect(t.removeMember('10.5.0.1')).toBe(false); // a LAN /32 is not a member
  });

  it('stores network ids >= 2^31 as int32, like the packet meta', () => {
    const t = new RoutingTables();
    const e = t.addMember('10.0.0.1', 0xfffffffe, 5);
    expect(t.lndtNetwork[e]).toBe(0xfffffffe | 0);
    expect(t.describe().lndt[0].network).toBe(0xfffffffe);
  });
});

describe('RoutingTables GNDT', () => {
  it('routes by longest prefix per network', () => {
    const t = new RoutingTables();
    t.setGndt(1, [
      { subnet: '10.200.0.0/16', vr: 1 },
      { subnet: '10.200.5.0/24', vr: 3 },
      { subnet: 'fd00:5::/32', vr: 4 },
    ]);
    t.setGndt(2, [{ subnet: '10.200.0.0/16', vr: 9 }]);
    expect(t.gndtLookupDst(1, pkt('10.1.1.1', '10.200.5.9'), 0)).toBe(3);
    expect(t.gndtLookupDst(1, pkt('10.1.1.1', '10.200.6.9'), 0)).toBe(1);
    expect(t.gndtLookupDst(2, pkt('10.1.1.1', '10.200.5.9'), 0)).toBe(9);
    expect(t.gndtLookupDst(1, pkt('fd00:1::1', 'fd00:5::1'), 0)).toBe(4);
    expect(t.gndtLookupDst(1, pkt('10.1.1.1', '10.201.0.1'), 0)).toBe(-1);
    expect(t.gndtLookupDst(3, pkt('10.1.1.1', '10.200.5.9'), 0)).toBe(-1);
    expect(t.gndtLookup(1, '10.200.5.1')).toBe(3);
    expect(t.networks()).toEqual([1, 2]);
  });

  it('replaces a GNDT atomically and keeps the old one when the new one is invalid', () => {
    const t = new RoutingTables();
    t.setGndt(1, [{ subnet: '10.1.0.0/24', vr: 1 }]);
    t.setGndt(1, [{ subnet: '10.2.0.0/24', vr: 2 }]);
    expect(t.gndtLookup(1, '10.1.0.1')).toBe(-1);
    expect(t.gndtLookup(1, '10.2.0.1')).toBe(2);
    expect(() => t.setGndt(1, [{ subnet: '10.3.0.0/24', vr: 3 }, { subnet: '10.4.0.1/24', vr: 4 }])).toThrow(/host bits/);
    expect(() => t.setGndt(1, [{ subnet: '10.3.0.0/24', vr: 3 }, { subnet: '10.3.0.0/24', vr: 4 }])).toThrow(/duplicate subnet/);
    expect(() => t.setGndt(1, [{ subnet: '10.3.0.0/24', vr: 0 }])).toThrow(/vr/);
    expect(t.gndtLookup(1, '10.2.0.1')).toBe(2);
    expect(t.gndtLookup(1, '10.3.0.1')).toBe(-1);
  });

  it('returns VR ids up to 2^32-1', () => {
    const t = new RoutingTables();
    t.setGndt(0xffffffff, [{ subnet: '0.0.0.0/0', vr: 0xffffffff }]);
    expect(t.gndtLookupDst(0xffffffff, pkt('1.1.1.1', '2.2.2.2'), 0)).toBe(0xffffffff);
    expect(t.gndtLookupDst(-1, pkt('1.1.1.1', '2.2.2.2'), 0)).toBe(0xffffffff); // int32 form from packet meta
    expect(t.networks()).toEqual([0xffffffff]);
  });

  it('removeNetwork drops the GNDT and the LNDT entries of that network', () => {
    const t = new RoutingTables();
    t.setGndt(1, [{ subnet: '10.1.0.0/24', vr: 1 }]);
    t.setGndt(2, [{ subnet: '10.2.0.0/24', vr: 1 }]);
    t.addMember('10.1.0.5', 1, 3);
    t.addLanPrefix('10.1.0.128/25', 1);
    t.addMember('10.2.0.5', 2, 4);
    expect(t.removeNetwork(1)).toBe(true);
    expect(t.removeNetwork(1)).toBe(false);
    expect(t.networks()).toEqual([2]);
    expect(t.lndtLookup('10.1.0.5')).toBe(-1);
    expect(t.lndtLookup('10.1.0.200')).toBe(-1);
    expect(t.lndtSession[t.lndtLookup('10.2.0.5')]).toBe(4);
  });
});

describe('RoutingTables NSKT and describe()', () => {
  it('stores peers by VR id', () => {
    const t = new RoutingTables();
    t.setPeer(3, { host: '203.0.113.3', port: 4789, publicKey: KEY_A });
    t.setPeer(2, { host: '2001:db8::2', port: 4789, publicKey: KEY_B });
    expect(t.peer(3)).toEqual({ host: '203.0.113.3', port: 4789, publicKey: KEY_A });
    expect(t.peer(9)).toBeUndefined();
    expect(t.peers().map((p) => p.id)).toEqual([2, 3]);
    t.setPeer(3, { host: 'vr3.example.net', port: 5000, publicKey: KEY_A }); // replace
    expect(t.peer(3)!.port).toBe(5000);
    expect(t.removePeer(3)).toBe(true);
    expect(t.peers().map((p) => p.id)).toEqual([2]);
  });

  it('rejects bad peers', () => {
    const t = new RoutingTables();
    expect(() => t.setPeer(0, { host: '1.2.3.4', port: 1, publicKey: KEY_A })).toThrow(/VR id/);
    expect(() => t.setPeer(2, { host: '1.2.3.4', port: 0, publicKey: KEY_A })).toThrow(/port/);
    expect(() => t.setPeer(2, { host: '1.2.3.4', port: 1, publicKey: 'abc' })).toThrow(/32 bytes/);
  });

  it('describes everything as plain JSON', () => {
    const t = new RoutingTables();
    t.addLanPrefix('10.3.0.0/24', 1);
    t.addMember('10.3.0.7', 1, 12);
    t.setGndt(1, [{ subnet: 'FD00::/16', vr: 2 }, { subnet: '10.3.0.0/24', vr: 1 }]);
    t.setPeer(2, { host: '203.0.113.2', port: 4789, publicKey: KEY_B });
    const d = t.describe();
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
    expect(d).toEqual({
      lndt: [
        { prefix: '10.3.0.0/24', kind: 'lan', network: 1, session: 0 },
        { prefix: '10.3.0.7/32', kind: 'member', network: 1, session: 12 },
      ],
      gndt: [{ network: 1, entries: [{ subnet: 'fd00::/16', vr: 2 }, { subnet: '10.3.0.0/24', vr: 1 }] }],
      nskt: [{ id: 2, host: '203.0.113.2', port: 4789, publicKey: KEY_B }],
    });
  });
});
