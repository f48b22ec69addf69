// FullVR routing state: LNDT, one GNDT per virtual network, NSKT.
//
// Hot-path methods (lndtLookupDst/Src, gndtLookupDst) only read tries and typed arrays, so a
// packet costs O(address length) and allocates nothing. Everything else is control plane.
//
// Network ids are uint32 on the wire but the packet engine's meta is an Int32Array, so the
// typed arrays here store them the same way: `id | 0` (ids >= 2^31 read back negative; use
// `>>> 0` to print them). Methods taking a network id accept either form.
import { parseEndpoint, parseIp, parsePrefix, prefixString } from './cidr.js';
import { PrefixTrie } from './lpm-trie.js';

export interface PeerInfo {
  host: string;
  port: number;
  /** Static X25519 public key, base64 (32 bytes). */
  publicKey: string;
}

export type LndtKind = 'member' | 'lan';

interface Gndt {
  trie: PrefixTrie; // subnet -> index into vrs
  vrs: Float64Array; // VR ids are uint32 (1..2^32-1), more than an Int32Array can hold
  entries: Array<{ subnet: string; vr: number }>;
}

const MAX_ID = 0xffffffff;

function checkId(what: string, id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > MAX_ID) throw new RangeError(`${what} must be an integer 1..${MAX_ID}, got ${id}`);
}

/** Normalise a network id given as uint32 or as its int32 reinterpretation (validated). */
function netKey(network: number): number {
  if (!Number.isInteger(network) || network === 0 || network < -0x80000000 || network > MAX_ID) {
    throw new RangeError(`network must be an integer 1..${MAX_ID}, got ${network}`);
  }
  return network | 0;
}

export class RoutingTables {
  // ----- LNDT: address/prefix -> entry index; per-entry data in typed arrays.
  private readonly lndt = new PrefixTrie();
  /** Network id (as `id | 0`) of each LNDT entry. Re-read the property after control-plane changes: it is replaced when it grows. */
  lndtNetwork: Int32Array;
  /** Delivery of each LNDT entry: a TinyVR session index (> 0), or 0 = this FullVR's TUN. */
  lndtSession: Int32Array;
  private readonly lndtByPrefix = new Map<string, { index: number; kind: LndtKind }>();
  private readonly lndtFree: number[] = [];
  private lndtUsed = 0;

  // ----- GNDT per network.
  private readonly gndt = new Map<number, Gndt>();

  // ----- NSKT.
  private readonly nskt = new Map<number, PeerInfo>();

  /** Called after every change of the LNDT or a GNDT (a cache of routing verdicts must drop them). */
  onChange: (() => void) | null = null;

  constructor(initialEntries = 256) {
    this.lndtNetwork = new Int32Array(Math.max(1, initialEntries));
    this.lndtSession = new Int32Array(Math.max(1, initialEntries));
  }

  // ============================================================== LNDT

  /** A TinyVR member: a /32 or /128 delivering to `session` (1..65535). Re-adding an address moves it. */
  addMember(addr: string, network: number, session: number): number {
    if (!Number.isInteger(session) || session < 1 || session > 65535) {
      throw new RangeError(`session must be an integer 1..65535, got ${session}`);
    }
    const ip = parseIp(addr);
    return this.setLndt(`${ip.address}/${ip.family === 4 ? 32 : 128}`, network, session, 'member');
  }

  /** A LAN prefix behind this FullVR's TUN (hosts without TinyViNe software): session 0. */
  addLanPrefix(prefix: string, network: number): number {
    return this.setLndt(prefixString(parsePrefix(prefix)), network, 0, 'lan');
  }

  removeMember(addr: string): boolean {
    const ip = parseIp(addr);
    return this.removeLndt(`${ip.address}/${ip.family === 4 ? 32 : 128}`, 'member');
  }

  removeLanPrefix(prefix: string): boolean {
    return this.removeLndt(prefixString(parsePrefix(prefix)), 'lan');
  }

  /** LNDT entry index for the destination of the IP packet at buf[off], or -1. */
  lndtLookupDst(buf: Uint8Array, off: number): number {
    return this.lndt.lookupPacketDst(buf, off);
  }

  /** LNDT entry index for the source of the IP packet at buf[off], or -1. */
  lndtLookupSrc(buf: Uint8Array, off: number): number {
    return this.lndt.lookupPacketSrc(buf, off);
  }

  /** Control-plane longest match for an address string: entry index or -1. */
  lndtLookup(addr: string): number {
    return this.lndt.lookup(addr);
  }

  private setLndt(prefix: string, network: number, session: number, kind: LndtKind): number {
    const net = netKey(network);
    const existing = this.lndtByPrefix.get(prefix);
    if (existing && existing.kind !== kind) {
      throw new Error(`LNDT: ${prefix} is already a ${existing.kind} entry`);
    }
    let index: number;
    if (existing) {
      index = existing.index; // same entry index: the trie already points here
    } else {
      index = this.lndtFree.pop() ?? this.lndtUsed++;
      if (index >= this.lndtNetwork.length) this.growLndt();
    }
    // Fill the entry before the trie can return it.
    this.lndtNetwork[index] = net;
    this.lndtSession[index] = session;
    if (!existing) {
      this.lndt.insert(prefix, index);
      this.lndtByPrefix.set(prefix, { index, kind });
    }
    this.onChange?.();
    return index;
  }

  private removeLndt(prefix: string, kind: LndtKind): boolean {
    const e = this.lndtByPrefix.get(prefix);
    if (!e || e.kind !== kind) return false;
    this.lndt.remove(prefix);
    this.lndtByPrefix.delete(prefix);
    this.lndtNetwork[e.index] = 0;
    this.lndtSession[e.index] = -1;
    this.lndtFree.push(e.index);
    this.onChange?.();
    return true;
  }

  private growLndt(): void {
    const n = this.lndtNetwork.length * 2;
    const net = new Int32Array(n);
    net.set(this.lndtNetwork);
    const ses = new Int32Array(n);
    ses.set(this.lndtSession);
    this.lndtNetwork = net;
    this.lndtSession = ses;
  }

  // ============================================================== GNDT

  /** Replace the whole GNDT of a network. Validated and built aside, then swapped in. */
  setGndt(network: number, entries: Array<{ subnet: string; vr: number }>): void {
    const key = netKey(network);
    const trie = new PrefixTrie();
    const vrIndex = new Map<number, number>();
    const canonical: Array<{ subnet: string; vr: number }> = [];
    for (const { subnet, vr } of entries) {
      checkId('vr', vr);
      const net = prefixString(parsePrefix(subnet));
      if (trie.get(net) >= 0) throw new Error(`GNDT for network ${network >>> 0}: duplicate subnet ${net}`);
      let i = vrIndex.get(vr);
      if (i === undefined) {
        i = vrIndex.size;
        vrIndex.set(vr, i);
      }
      trie.insert(net, i);
      canonical.push({ subnet: net, vr });
    }
    this.gndt.set(key, { trie, vrs: Float64Array.from(vrIndex.keys()), entries: canonical });
    this.onChange?.();
  }

  /** Destination VR id for the IP packet at buf[off] in `network`, or -1. */
  gndtLookupDst(network: number, buf: Uint8Array, off: number): number {
    const g = this.gndt.get(network | 0); // no validation here: hot path
    if (g === undefined) return -1;
    const i = g.trie.lookupPacketDst(buf, off);
    return i < 0 ? -1 : g.vrs[i];
  }

  /** Control-plane variant of gndtLookupDst for an address string. */
  gndtLookup(network: number, addr: string): number {
    const g = this.gndt.get(netKey(network));
    if (g === undefined) return -1;
    const i = g.trie.lookup(addr);
    return i < 0 ? -1 : g.vrs[i];
  }

  /** Drop a network's GNDT and every LNDT entry belonging to it. */
  removeNetwork(network: number): boolean {
    const key = netKey(network);
    let found = this.gndt.delete(key);
    if (found) this.onChange?.();
    for (const [prefix, e] of [...this.lndtByPrefix]) {
      if (this.lndtNetwork[e.index] === key) {
        this.removeLndt(prefix, e.kind);
        found = true;
      }
    }
    return found;
  }

  /** Network ids that have a GNDT (as positive uint32). */
  networks(): number[] {
    return [...this.gndt.keys()].map((k) => k >>> 0).sort((a, b) => a - b);
  }

  // ============================================================== NSKT

  setPeer(vrId: number, info: PeerInfo): void {
    checkId('VR id', vrId);
    // Reuse the endpoint parser so host and port get the same checks as in config files.
    const ep = parseEndpoint(`${info.host.includes(':') ? `[${info.host}]` : info.host}:${info.port}`);
    const key = Buffer.from(info.publicKey, 'base64');
    if (key.length !== 32 || key.toString('base64') !== info.publicKey) {
      throw new Error(`NSKT: public key of VR ${vrId} must be 32 bytes in base64`);
    }
    this.nskt.set(vrId, { host: ep.host, port: ep.port, publicKey: info.publicKey });
  }

  peer(vrId: number): PeerInfo | undefined {
    return this.nskt.get(vrId);
  }

  removePeer(vrId: number): boolean {
    return this.nskt.delete(vrId);
  }

  peers(): Array<{ id: number } & PeerInfo> {
    return [...this.nskt].map(([id, p]) => ({ id, ...p })).sort((a, b) => a.id - b.id);
  }

  // ============================================================== status

  /** Plain JSON for status/debug output. */
  describe(): {
    lndt: Array<{ prefix: string; kind: LndtKind; network: number; session: number }>;
    gndt: Array<{ network: number; entries: Array<{ subnet: string; vr: number }> }>;
    nskt: Array<{ id: number } & PeerInfo>;
  } {
    return {
      lndt: this.lndt.entries().map(({ prefix, value }) => ({
        prefix,
        kind: this.lndtByPrefix.get(prefix)!.kind,
        network: this.lndtNetwork[value] >>> 0,
        session: this.lndtSession[value],
      })),
      gndt: this.networks().map((network) => ({
        network,
        entries: this.gndt.get(netKey(network))!.entries.map((e) => ({ ...e })),
      })),
      nskt: this.peers(),
    };
  }
}
