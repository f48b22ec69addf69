// Longest-prefix-match table for IPv4 and IPv6, built for the per-packet hot path.
//
// Structure: a multibit trie with stride 4 (16 slots per node) and controlled prefix
// expansion. A prefix of length L lives in the node at depth d = ceil(L/4) - 1 (the root for
// L = 0) and is expanded over the 2^(4 - r) slots it covers there, r = L - 4d. Each slot keeps
// the value of the longest prefix covering it within that node (plus that prefix's relative
// length r, needed only by insert/remove), and a pointer to the child node for the next 4 bits.
// A lookup therefore reads one slot per 4 address bits: at most 8 slots for IPv4, 32 for IPv6,
// whatever the number of prefixes, and remembers the last value seen on the way down.
//
// Nodes live in typed-array pools (struct-of-arrays indexed by node * 16 + nibble) that double
// when full; freed nodes go on a free list. Node 0 is the IPv4 root and node 1 the IPv6 root, so
// a child pointer of 0 can mean "no child". Lookups read typed arrays only: no allocation.
//
// Memory: 16 * (4 + 4 + 1) = 144 bytes per node. 100k random /24s need ~150k nodes (~22 MB);
// a /32 member entry costs at most 8 nodes, most of them shared with its neighbours.
import { bytesToIp, ipToBytes, maskBytes, parsePrefix, parsePrefixBytes, prefixString } from './cidr.js';

const FAN = 16; // slots per node (stride 4 bits)
const V4_ROOT = 0;
const V6_ROOT = 1;
const MAX_NODES = 1 << 26; // keeps node * FAN well inside int32
const MAX_VALUE = 0x7fffffff; // values live in an Int32Array; -1 means "no value"

interface Stored {
  prefix: string; // canonical, e.g. "10.1.0.0/24"
  value: number;
  bytes: Uint8Array; // network bytes (host bits clear)
  bits: number;
}

export class PrefixTrie {
  private child: Int32Array; // node index of the child for this slot, 0 = none
  private val: Int32Array; // value of the longest prefix covering this slot in this node, -1 = none
  private rlen: Uint8Array; // relative length (0..4) of the prefix that set val
  private capacity: number; // nodes
  private used = 2; // both roots always exist
  private readonly free: number[] = [];
  private readonly stored = new Map<string, Stored>(); // control-plane copy of every prefix

  /**
   * Number of trie slots the most recent lookupV4/lookupV6 read (diagnostics and tests: it is
   * bounded by address length, 8 or 32, never by table size). One int store per lookup.
   */
  lastVisits = 0;

  constructor(initialNodes = 64) {
    this.capacity = Math.max(2, initialNodes | 0);
    this.child = new Int32Array(this.capacity * FAN);
    this.val = new Int32Array(this.capacity * FAN).fill(-1);
    this.rlen = new Uint8Array(this.capacity * FAN);
  }

  /** Number of prefixes stored. */
  get size(): number {
    return this.stored.size;
  }

  /** Nodes in use (including the two roots); for memory diagnostics. */
  get nodeCount(): number {
    return this.used - this.free.length;
  }

  // ---------------------------------------------------------------- hot path

  /** Value of the longest prefix matching the IPv4 address in buf[off..off+3], or -1. */
  lookupV4(buf: Uint8Array, off: number): number {
    return this.walk(V4_ROOT, 8, buf, off);
  }

  /** Value of the longest prefix matching the IPv6 address in buf[off..off+15], or -1. */
  lookupV6(buf: Uint8Array, off: number): number {
    return this.walk(V6_ROOT, 32, buf, off);
  }

  /** Walks `nibbles` 4-bit steps of the address at buf[off] from `root`, keeping the last value seen. */
  private walk(root: number, nibbles: number, buf: Uint8Array, off: number): number {
    const child = this.child;
    const val = this.val;
    let node = root;
    let best = -1;
    let i = 0;
    while (i < nibbles) {
      const b = buf[off + (i >> 1)];
      const s = node * FAN + ((i & 1) === 0 ? b >> 4 : b & 15);
      const v = val[s];
      if (v >= 0) best = v;
      i++;
      node = child[s];
      if (node === 0) break;
    }
    this.lastVisits = i;
    return best;
  }

  /**
   * Look up the destination address of the IP packet at buf[off]: IPv4 dst at off+16, IPv6 dst
   * at off+24. -1 for other versions. The caller guarantees a full IP header is present.
   */
  lookupPacketDst(buf: Uint8Array, off: number): number {
    const ver = buf[off] >> 4;
    if (ver === 4) return this.lookupV4(buf, off + 16);
    if (ver === 6) return this.lookupV6(buf, off + 24);
    return -1;
  }

  /** Same for the source address: IPv4 src at off+12, IPv6 src at off+8. */
  lookupPacketSrc(buf: Uint8Array, off: number): number {
    const ver = buf[off] >> 4;
    if (ver === 4) return this.lookupV4(buf, off + 12);
    if (ver === 6) return this.lookupV6(buf, off + 8);
    return -1;
  }

  // ------------------------------------------------------------- control plane

  /** Control-plane convenience: longest match for an address string (allocates). */
  lookup(addr: string): number {
    const b = ipToBytes(addr);
    return b.length === 4 ? this.lookupV4(b, 0) : this.lookupV6(b, 0);
  }

  /** Add a prefix, or replace the value of an identical prefix. value: integer 0..2^31-1. */
  insert(prefix: string, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > MAX_VALUE) {
      throw new RangeError(`PrefixTrie value must be an integer 0..${MAX_VALUE}, got ${value}`);
    }
    const { cidr: p, bytes } = parsePrefixBytes(prefix);
    const { depth, rel } = place(p.bits);

    // Walk/create the path down to the node that holds this prefix.
    let node = bytes.length === 4 ? V4_ROOT : V6_ROOT;
    for (let i = 0; i < depth; i++) {
      const s = node * FAN + nibble(bytes, i);
      let c = this.child[s];
      if (c === 0) {
        c = this.allocNode(); // may replace the pools: index them again afterwards
        this.child[s] = c;
      }
      node = c;
    }

    const key = prefixString(p);
    this.stored.set(key, { prefix: key, value, bytes, bits: p.bits });
    const [first, count] = span(bytes, depth, rel);
    for (let k = 0; k < count; k++) {
      const s = node * FAN + first + k;
      // A slot keeps the longest covering prefix; an equal length means this same prefix.
      if (this.val[s] < 0 || this.rlen[s] <= rel) {
        this.val[s] = value;
        this.rlen[s] = rel;
      }
    }
  }

  /** Remove an exact prefix. Returns false if it was not present. */
  remove(prefix: string): boolean {
    const key = prefixString(parsePrefix(prefix));
    const entry = this.stored.get(key);
    if (!entry) return false;
    this.stored.delete(key);
    const { bytes, bits } = entry;
    const { depth, rel } = place(bits);

    const path: number[] = []; // slot index in the parent, per level
    let node = bytes.length === 4 ? V4_ROOT : V6_ROOT;
    for (let i = 0; i < depth; i++) {
      const s = node * FAN + nibble(bytes, i);
      path.push(s);
      node = this.child[s];
      if (node === 0) throw new Error(`PrefixTrie corrupt: path for ${entry.prefix} missing`);
    }

    // Slots this prefix won (rlen === rel) fall back to the next shorter prefix stored in the
    // same node. All of them share it: it is this prefix cut to 4*depth + r bits, r < rel.
    // (A prefix of exactly 4*depth bits lives in the parent and is found there by lookups.)
    let fallback = -1;
    let fallbackRel = 0;
    for (let r = rel - 1; r >= (depth === 0 ? 0 : 1); r--) {
      const len = depth * 4 + r;
      const shorter = this.stored.get(`${bytesToIp(maskBytes(bytes, len))}/${len}`);
      if (shorter) {
        fallback = shorter.value;
        fallbackRel = r;
        break;
      }
    }
    const [first, count] = span(bytes, depth, rel);
    for (let k = 0; k < count; k++) {
      const s = node * FAN + first + k;
      if (this.val[s] >= 0 && this.rlen[s] === rel) {
        this.val[s] = fallback;
        this.rlen[s] = fallback >= 0 ? fallbackRel : 0;
      }
    }

    // Free nodes left empty, bottom-up (roots are never freed).
    for (let i = depth - 1; i >= 0 && this.isEmpty(node); i--) {
      this.free.push(node);
      const parentSlot = path[i];
      this.child[parentSlot] = 0;
      node = Math.floor(parentSlot / FAN);
    }
    return true;
  }

  /** All prefixes, IPv4 first, then by address and length (stable output for status/debug). */
  entries(): Array<{ prefix: string; value: number }> {
    const all = [...this.stored.values()];
    all.sort((a, b) => {
      if (a.bytes.length !== b.bytes.length) return a.bytes.length - b.bytes.length;
      for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return a.bytes[i] - b.bytes[i];
      return a.bits - b.bits;
    });
    return all.map((e) => ({ prefix: e.prefix, value: e.value }));
  }

  /** Value stored for exactly this prefix (not a longest match), or -1. */
  get(prefix: string): number {
    return this.stored.get(prefixString(parsePrefix(prefix)))?.value ?? -1;
  }

  // ----------------------------------------------------------------- internals

  private isEmpty(node: number): boolean {
    const base = node * FAN;
    for (let k = 0; k < FAN; k++) if (this.val[base + k] >= 0 || this.child[base + k] !== 0) return false;
    return true;
  }

  private allocNode(): number {
    const reused = this.free.pop();
    if (reused !== undefined) return reused; // freed nodes were left cleared
    if (this.used === this.capacity) this.grow();
    return this.used++;
  }

  private grow(): void {
    const cap = this.capacity * 2;
    if (cap > MAX_NODES) throw new Error(`PrefixTrie: more than ${MAX_NODES} nodes`);
    const child = new Int32Array(cap * FAN);
    child.set(this.child);
    const val = new Int32Array(cap * FAN).fill(-1);
    val.set(this.val);
    const rlen = new Uint8Array(cap * FAN);
    rlen.set(this.rlen);
    this.child = child;
    this.val = val;
    this.rlen = rlen;
    this.capacity = cap;
  }
}

/** Node depth holding a prefix of `bits`, and its length relative to that node (0..4). */
function place(bits: number): { depth: number; rel: number } {
  const depth = bits === 0 ? 0 : (bits - 1) >> 2;
  return { depth, rel: bits - depth * 4 };
}

/** The i-th 4-bit group of an address. */
function nibble(b: Uint8Array, i: number): number {
  const x = b[i >> 1];
  return (i & 1) === 0 ? x >> 4 : x & 15;
}

/** First slot and slot count covered in its node by a prefix placed at (depth, rel). */
function span(bytes: Uint8Array, depth: number, rel: number): [number, number] {
  if (rel === 0) return [0, FAN];
  const shift = 4 - rel;
  return [(nibble(bytes, depth) >> shift) << shift, 1 << shift];
}
