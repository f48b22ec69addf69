import { PerformanceObserver } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { bytesToIp, ipToBytes, maskBytes } from '../../shared/cidr.js';
import { PrefixTrie } from '../../shared/lpm-trie.js';

/** Small deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** IPv4 header (20 bytes) with src/dst at `at` in a larger buffer. */
function v4Packet(src: string, dst: string, at = 0): Uint8Array {
  const b = new Uint8Array(at + 20);
  b[at] = 0x45;
  b.set(ipToBytes(src), at + 12);
  b.set(ipToBytes(dst), at + 16);
  return b;
}

/** IPv6 header (40 bytes). */
function v6Packet(src: string, dst: string, at = 0): Uint8Array {
  const b = new Uint8Array(at + 40);
  b[at] = 0x60;
  b.set(ipToBytes(src), at + 8);
  b.set(ipToBytes(dst), at + 24);
  return b;
}

describe('PrefixTrie basics', () => {
  it('longest prefix wins (IPv4), including /0 and /32', () => {
    const t = new PrefixTrie();
    t.insert('0.0.0.0/0', 1);
    t.insert('10.0.0.0/8', 2);
    t.insert('10.1.0.0/16', 3);
    t.insert('10.1.2.0/24', 4);
    t.insert('10.1.2.3/32', 5);
    t.insert('10.1.2.128/25', 6);
    t.insert('10.1.4.0/23', 7); // not a multiple of the stride
    expect(t.lookup('192.168.1.1')).toBe(1);
    expect(t.lookup('10.200.0.1')).toBe(2);
    expect(t.lookup('10.1.200.1')).toBe(3);
    expect(t.lookup('10.1.2.4')).toBe(4);
    expect(t.lookup('10.1.2.3')).toBe(5);
    expect(t.lookup('10.1.2.200')).toBe(6);
    expect(t.lookup('10.1.2.127')).toBe(4);
    expect(t.lookup('10.1.5.9')).toBe(7);
    expect(t.lookup('10.1.6.9')).toBe(3);
    expect(t.size).toBe(7);
  });

  it('odd prefix lengths split nibbles correctly', () => {
    const t = new PrefixTrie();
    t.insert('128.0.0.0/1', 1);
    t.insert('192.0.0.0/3', 2);
    t.insert('10.0.0.0/7', 3);
    t.insert('10.0.0.0/9', 4);
    t.insert('10.0.0.0/31', 5);
    expect(t.lookup('130.0.0.0')).toBe(1);
    expect(t.lookup('200.0.0.0')).toBe(2);
    expect(t.lookup('224.0.0.0')).toBe(1); // 111... is outside 110.../3
    expect(t.lookup('11.0.0.1')).toBe(3);
    expect(t.lookup('10.127.0.0')).toBe(4);
    expect(t.lookup('10.128.0.0')).toBe(3);
    expect(t.lookup('10.0.0.1')).toBe(5);
    expect(t.lookup('10.0.0.2')).toBe(4);
    expect(t.lookup('9.0.0.0')).toBe(-1);
    expect(t.lookup('0.0.0.0')).toBe(-1);
  });

  it('longest prefix wins (IPv6), including /0 and /128; families are separate', () => {
    const t = new PrefixTrie();
    t.insert('::/0', 1);
    t.insert('fd00::/8', 2);
    t.insert('fd00:1::/32', 3);
    t.insert('fd00:1:2:3::/64', 4);
    t.insert('fd00:1:2:3::1/128', 5);
    t.insert('fd00:1:2:3:8000::/65', 6);
    expect(t.lookup('2001:db8::1')).toBe(1);
    expect(t.lookup('fd99::1')).toBe(2);
    expect(t.lookup('fd00:1:ffff::1')).toBe(3);
    expect(t.lookup('fd00:1:2:3::2')).toBe(4);
    expect(t.lookup('fd00:1:2:3::1')).toBe(5);
    expect(t.lookup('fd00:1:2:3:ffff::')).toBe(6);
    expect(t.lookup('10.0.0.1')).toBe(-1); // ::/0 is IPv6 only
    t.insert('0.0.0.0/0', 9);
    expect(t.lookup('10.0.0.1')).toBe(9);
    expect(t.lookup('::1')).toBe(1);
  });

  it('reads addresses at an offset and from IP packet headers', () => {
    const t = new PrefixTrie();
    t.insert('10.1.0.0/16', 1);
    t.insert('10.2.0.0/16', 2);
    t.insert('fd00:a::/32', 3);
    t.insert('fd00:b::/32', 4);
    const buf = new Uint8Array(64);
    buf.set(ipToBytes('10.2.3.4'), 37);
    expect(t.lookupV4(buf, 37)).toBe(2);
    buf.set(ipToBytes('fd00:a::9'), 5);
    expect(t.lookupV6(buf, 5)).toBe(3);

    const p4 = v4Packet('10.1.0.5', '10.2.0.7', 64);
    expect(t.lookupPacketSrc(p4, 64)).toBe(1);
    expect(t.lookupPacketDst(p4, 64)).toBe(2);
    const p6 = v6Packet('fd00:a::1', 'fd00:b::1', 10);
    expect(t.lookupPacketSrc(p6, 10)).toBe(3);
    expect(t.lookupPacketDst(p6, 10)).toBe(4);
    p6[10] = 0x50; // version 5: neither
    expect(t.lookupPacketDst(p6, 10)).toBe(-1);
    expect(t.lookupPacketSrc(new Uint8Array(40), 0)).toBe(-1);
  });

  it('replaces the value of an identical prefix', () => {
    const t = new PrefixTrie();
    t.insert('10.1.0.0/16', 1);
    t.insert('10.1.0.0/24', 2);
    t.insert('10.1.0.0/16', 7);
    expect(t.size).toBe(2);
    expect(t.lookup('10.1.9.9')).toBe(7);
    expect(t.lookup('10.1.0.9')).toBe(2);
    // different spellings of the same prefix are the same entry
    t.insert('FD00:0::/16', 3);
    t.insert('fd00::/16', 4);
    expect(t.size).toBe(3);
    expect(t.lookup('fd00::1')).toBe(4);
  });

  it('remove falls back to the next shorter prefix and frees nodes', () => {
    const t = new PrefixTrie();
    const base = t.nodeCount;
    t.insert('0.0.0.0/0', 1);
    t.insert('10.0.0.0/8', 2);
    t.insert('10.0.0.0/14', 3);
    t.insert('10.0.0.0/15', 4);
    t.insert('10.1.2.3/32', 5);
    expect(t.lookup('10.1.2.3')).toBe(5);
    expect(t.remove('10.1.2.3/32')).toBe(true);
    expect(t.lookup('10.1.2.3')).toBe(4);
    expect(t.remove('10.0.0.0/15')).toBe(true);
    expect(t.lookup('10.1.2.3')).toBe(3); // /14 in the same node takes the slots back
    expect(t.lookup('10.3.0.0')).toBe(3);
    expect(t.remove('10.0.0.0/14')).toBe(true);
    expect(t.lookup('10.1.2.3')).toBe(2); // /8 lives in a parent node
    expect(t.remove('10.0.0.0/14')).toBe(false);
    expect(t.remove('10.9.0.0/16')).toBe(false);
    expect(t.remove('10.0.0.0/8')).toBe(true);
    expect(t.lookup('10.1.2.3')).toBe(1);
    expect(t.remove('0.0.0.0/0')).toBe(true);
    expect(t.lookup('10.1.2.3')).toBe(-1);
    expect(t.size).toBe(0);
    expect(t.nodeCount).toBe(base);
    expect(t.entries()).toEqual([]);
  });

  it('removing a shorter prefix keeps longer ones', () => {
    const t = new PrefixTrie();
    t.insert('10.1.0.0/16', 1);
    t.insert('10.1.2.0/24', 2);
    t.insert('fd00::/8', 3);
    t.insert('fd00::1/128', 4);
    expect(t.remove('10.1.0.0/16')).toBe(true);
    expect(t.lookup('10.1.2.9')).toBe(2);
    expect(t.lookup('10.1.3.9')).toBe(-1);
    expect(t.remove('fd00::/8')).toBe(true);
    expect(t.lookup('fd00::1')).toBe(4);
    expect(t.lookup('fd00::2')).toBe(-1);
  });

  it('rejects host bits with a helpful message, and other bad input', () => {
    const t = new PrefixTrie();
    expect(() => t.insert('10.1.0.5/24', 1)).toThrow('10.1.0.5/24 has host bits set; did you mean 10.1.0.0/24?');
    expect(() => t.insert('fd00::1/64', 1)).toThrow('fd00::1/64 has host bits set; did you mean fd00::/64?');
    expect(() => t.remove('10.1.0.5/24')).toThrow(/host bits/);
    expect(() => t.insert('10.1.0.0/33', 1)).toThrow('"10.1.0.0/33" is not a valid CIDR');
    expect(() => t.insert('10.1.0.0', 1)).toThrow(/not a valid CIDR/);
    expect(() => t.insert('fe80::/64%eth0', 1)).toThrow(/not a valid CIDR/);
    expect(() => t.insert('10.0.0.0/8', -1)).toThrow(RangeError);
    expect(() => t.insert('10.0.0.0/8', 1.5)).toThrow(RangeError);
    expect(() => t.lookup('10.0.0.300')).toThrow(/not a valid IP address/);
    expect(t.size).toBe(0);
  });

  it('entries() lists canonical prefixes, IPv4 first, sorted', () => {
    const t = new PrefixTrie();
    t.insert('FD00::/8', 3);
    t.insert('10.1.0.0/16', 2);
    t.insert('10.0.0.0/8', 1);
    t.insert('0.0.0.0/0', 0);
    expect(t.entries()).toEqual([
      { prefix: '0.0.0.0/0', value: 0 },
      { prefix: '10.0.0.0/8', value: 1 },
      { prefix: '10.1.0.0/16', value: 2 },
      { prefix: 'fd00::/8', value: 3 },
    ]);
    expect(t.get('10.1.0.0/16')).toBe(2);
    expect(t.get('10.1.0.0/17')).toBe(-1);
  });

  it('grows its pools by doubling without losing entries', () => {
    const t = new PrefixTrie(2);
    for (let i = 0; i < 500; i++) t.insert(`10.${i >> 8}.${i & 255}.0/24`, i);
    for (let i = 0; i < 500; i++) expect(t.lookup(`10.${i >> 8}.${i & 255}.77`)).toBe(i);
  });
});

// ---------------------------------------------------------------- randomized

interface Ref {
  bytes: Uint8Array;
  bits: number;
  value: number;
}

function matches(addr: Uint8Array, p: Ref): boolean {
  if (addr.length !== p.bytes.length) return false;
  const m = maskBytes(addr, p.bits);
  for (let i = 0; i < m.length; i++) if (m[i] !== p.bytes[i]) return false;
  return true;
}

function bruteForce(refs: Iterable<Ref>, addr: Uint8Array): number {
  let best = -1;
  let bestBits = -1;
  for (const p of refs) {
    if (p.bits > bestBits && matches(addr, p)) {
      best = p.value;
      bestBits = p.bits;
    }
  }
  return best;
}

describe('PrefixTrie randomized against a brute-force scan', () => {
  it('agrees on 2000 random prefixes and 5000 lookups, before and after removals', () => {
    const rand = rng(12345);
    const int = (n: number) => Math.floor(rand() * n);
    // A few base addresses per family so prefixes nest and share long paths.
    const bases = [...Array(24)].map((_, i) => {
      const b = new Uint8Array(i % 2 === 0 ? 4 : 16);
      for (let k = 0; k < b.length; k++) b[k] = int(256);
      return b;
    });
    const randomNear = (): Uint8Array => {
      const base = bases[int(bases.length)];
      const out = new Uint8Array(base);
      const keep = int(base.length * 8 + 1); // randomize every bit after `keep`
      for (let bit = keep; bit < out.length * 8; bit++) {
        if (rand() < 0.5) out[bit >> 3] ^= 0x80 >> (bit & 7);
      }
      return out;
    };

    const t = new PrefixTrie();
    const ref = new Map<string, Ref>();
    while (ref.size < 2000) {
      const a = randomNear();
      const bits = rand() < 0.1 ? int(a.length * 8 + 1) : a.length * 8 - int(a.length === 4 ? 16 : 64);
      const bytes = maskBytes(a, bits);
      const prefix = `${bytesToIp(bytes)}/${bits}`;
      const value = int(1_000_000);
      t.insert(prefix, value);
      ref.set(prefix, { bytes, bits, value });
    }
    expect(t.size).toBe(2000);

    const check = (n: number) => {
      const refs = [...ref.values()];
      let hits = 0;
      for (let i = 0; i < n; i++) {
        let addr: Uint8Array;
        const r = rand();
        if (r < 0.6) {
          // inside a stored prefix, random host bits
          const p = refs[int(refs.length)];
          addr = new Uint8Array(p.bytes);
          for (let bit = p.bits; bit < addr.length * 8; bit++) if (rand() < 0.5) addr[bit >> 3] ^= 0x80 >> (bit & 7);
        } else if (r < 0.9) {
          addr = randomNear();
        } else {
          addr = new Uint8Array(rand() < 0.5 ? 4 : 16).map(() => int(256));
        }
        const want = bruteForce(refs, addr);
        const got = addr.length === 4 ? t.lookupV4(addr, 0) : t.lookupV6(addr, 0);
        if (got !== want) throw new Error(`lookup ${bytesToIp(addr)}: trie ${got}, brute force ${want}`);
        if (want >= 0) hits++;
      }
      expect(hits).toBeGreaterThan(n / 2); // the test exercises matches, not only misses
    };
    check(5000);

    // Replace some values, remove half the prefixes, check again.
    const keys = [...ref.keys()];
    for (const k of keys.slice(0, 200)) {
      const v = int(1_000_000);
      t.insert(k, v);
      ref.get(k)!.value = v;
    }
    for (let i = 0; i < keys.length; i += 2) {
      expect(t.remove(keys[i])).toBe(true);
      ref.delete(keys[i]);
    }
    expect(t.size).toBe(ref.size);
    check(5000);
    expect(new Set(t.entries().map((e) => e.prefix))).toEqual(new Set(ref.keys()));
  });
});

// ---------------------------------------------------------------- cost

describe('PrefixTrie lookup cost', () => {
  // The same 10 probe /24s in a small and in a large table; the large table adds up to 100000
  // other prefixes no longer than /24, so the probes' own paths are identical in both.
  const probes = [...Array(10)].map((_, i) => `172.${16 + i}.${i * 7}.0/24`);
  const build = (extra: number): PrefixTrie => {
    const t = new PrefixTrie();
    probes.forEach((p, i) => t.insert(p, i));
    const rand = rng(7);
    let n = probes.length;
    while (t.size < extra) {
      const bits = 8 + Math.floor(rand() * 17); // /8../24
      const a = new Uint8Array(4).map(() => Math.floor(rand() * 256));
      a[0] = 1 + Math.floor(rand() * 170); // keep clear of the probes' 172.x
      t.insert(`${bytesToIp(maskBytes(a, bits))}/${bits}`, n++);
    }
    return t;
  };
  const small = build(10);
  const large = build(100_000);
  const addrs = probes.map((p) => ipToBytes(p.replace(/0\/24$/, '99')));
  const addrs6 = new Uint8Array(16);

  it('visits at most one slot per 4 address bits, the same count whatever the table size', () => {
    expect(small.size).toBe(10);
    expect(large.size).toBe(100_000);
    for (const [i, a] of addrs.entries()) {
      expect(small.lookupV4(a, 0)).toBe(i);
      const vs = small.lastVisits;
      expect(large.lookupV4(a, 0)).toBe(i);
      expect(large.lastVisits).toBe(vs);
      expect(vs).toBeLessThanOrEqual(8);
    }
    large.insert('::/0', 1);
    large.insert('fd00::1/128', 2);
    addrs6.set(ipToBytes('fd00::1'));
    expect(large.lookupV6(addrs6, 0)).toBe(2);
    expect(large.lastVisits).toBe(32);
    for (let i = 0; i < 1000; i++) {
      const a = new Uint8Array(4).map(() => (i * 2654435761) >>> (i % 24));
      large.lookupV4(a, 0);
      expect(large.lastVisits).toBeLessThanOrEqual(8);
    }
  });

  it('1e5 lookups take about as long on 10 as on 100000 prefixes', () => {
    const time = (t: PrefixTrie): number => {
      let best = Infinity;
      let sink = 0;
      for (let round = 0; round < 7; round++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < 100_000; i++) sink += t.lookupV4(addrs[i % 10], 0);
        best = Math.min(best, Number(process.hrtime.bigint() - t0));
      }
      expect(sink).toBeGreaterThan(0);
      return best;
    };
    time(small); // warm up the JIT on both
    time(large);
    const ratio = time(large) / time(small);
    expect(ratio).toBeLessThan(3);
  });

  it('does not allocate: 2e6 lookups trigger no garbage collection', async () => {
    large.insert('::/0', 1);
    large.insert('fd00::1/128', 2);
    const p4 = v4Packet('172.16.0.1', '172.17.7.99');
    const p6 = v6Packet('fd00::2', 'fd00::1');
    const run = () => {
      let s = 0;
      for (let i = 0; i < 1_000_000; i++) s += large.lookupPacketDst(p4, 0) + large.lookupPacketSrc(p6, 0);
      return s;
    };
    run(); // optimize first
    await new Promise((r) => setTimeout(r, 50));
    let gcs = 0;
    const obs = new PerformanceObserver((list) => {
      gcs += list.getEntries().length;
    });
    obs.observe({ entryTypes: ['gc'] });
    const s = run();
    await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
    obs.disconnect();
    expect(s).toBe(1_000_000 * (1 + 1));
    // Allocating even 16 bytes per lookup would be 32 MB here: several scavenges.
    expect(gcs).toBeLessThanOrEqual(1);
  });
});
