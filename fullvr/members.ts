// TinyVR members of this FullVR: admission (token + address), the LNDT entries that
// bind each member's address to its session, overlay address allocation (virtual mode)
// and expiry of members that went silent.
import { cidrContains, parseCidr } from '../shared/cidr.js';
import type { RoutingTables } from '../shared/routing-tables.js';
import type { FullvrConfig } from './config.js';
import type { TokenGrant, TokenVerifier } from './tokens.js';
import type { MemberTickets } from './tickets.js';
import type { ShortcutTickets } from './shortcut-tickets.js';

type NetworkCfg = FullvrConfig['networks'][number];

export interface Member {
  session: number;
  network: number;
  address: string;
  /** Every overlay identity of the member (physical mode: its IPv4 and IPv6 addresses in this site). */
  addresses: string[];
  /** Physical address the TinyVR reported (its identity across rejoins). */
  physical: string;
  endpoint: string;
  joinedAt: number;
  /** Another FullVR's member with a direct session here (a shortcut): never announced, never offered shortcuts. */
  shortcut?: boolean;
  /** Its TinyVR's X25519 key for direct paths (base64), if it takes them. */
  directKey?: string;
}

export interface JoinRequest {
  /** A TinyVR whose primary FullVR stopped answering: it keeps its address (another site's). */
  failover?: unknown;
  token?: unknown;
  ticket?: unknown;
  /** A shortcut ticket from the member's own FullVR (a peer of ours): admits it with the addresses it names. */
  shortcut?: unknown;
  addrs?: unknown;
  want?: unknown;
}

export interface JoinAnswer {
  network: number;
  networkName: string;
  mode: 'physical' | 'virtual';
  address: string;
  /** All addresses the member is known by (address first); others are e.g. its IPv6 address. */
  addresses: string[];
  prefixlen: number;
  routes: string[];
  mtu: number;
  /** Credential for rejoining without the (possibly single-use) token. */
  ticket?: string;
}

export class Members {
  private bySession = new Map<number, Member>();
  private byAddress = new Map<string, Member>();
  /** Authority placement (managed FullVRs): address -> network, and addresses an operator removed. */
  assigned = new Map<string, number>();
  left = new Set<string>();

  constructor(
    private selfId: number,
    private networks: Map<number, NetworkCfg>,
    private tables: RoutingTables,
    private tokens: TokenVerifier,
    private mtu: number,
    private tickets: MemberTickets,
    /** null: this FullVR takes no shortcut members (config `shortcuts: false`). */
    private shortcuts: ShortcutTickets | null = null,
  ) {}

  get size(): number {
    return this.bySession.size;
  }

  list(): Member[] {
    return [...this.bySession.values()];
  }

  get(session: number): Member | undefined {
    return this.bySession.get(session);
  }

  /** The member holding overlay address `address` in `network`. */
  byAddr(network: number, address: string): Member | undefined {
    return this.byAddress.get(key(network, address));
  }

  /** An operator removed `address` from `network` (the authority's tables say so). */
  hasLeft(network: number, address: string): boolean {
    return this.left.has(key(network, address));
  }

  /**
   * Decide whether a join is admitted and with which address. Pure check: nothing is
   * recorded until commit(), so a refused join changes no state.
   */
  admit(req: JoinRequest): { answer: JoinAnswer; physical: string; grant: TokenGrant; shortcut?: boolean } | { error: string; reason: string } {
    if (req.shortcut !== undefined) return this.admitShortcut(req.shortcut);
    const addrs = Array.isArray(req.addrs) ? req.addrs.filter((a): a is string => typeof a === 'string') : [];
    // A valid ticket for one of the member's own addresses re-admits it without the token.
    const ticket = typeof req.ticket === 'string' ? this.tickets.verify(req.ticket) : null;
    let grant: TokenGrant;
    if (ticket && addrs.includes(ticket.addr)) {
      // The authority may have moved the host since (merge/split) or removed it.
      if (this.left.has(key(this.assigned.get(ticket.addr) ?? ticket.net, ticket.addr))) {
        return { error: `host ${ticket.addr} was removed from network ${ticket.net} by an operator`, reason: 'host_left' };
      }
      grant = { network: this.assigned.get(ticket.addr) ?? ticket.net };
    } else {
      if (typeof req.token !== 'string' || !req.token) return { error: 'join request carries no token', reason: 'no_token' };
      const g = this.tokens.verify(req.token);
      if ('error' in g) return g;
      grant = g;
    }
    const r = this.place(grant.network, addrs, req.want, req.failover === true);
    if ('error' in r) return r;
    r.answer.ticket = this.tickets.issue(r.answer.network, r.physical);
    return { ...r, grant };
  }

  /**
   * A peer's member opening a shortcut: the peer's ticket names its network and addresses,
   * which must be the peer's own (a site of that network the peer serves); we must serve
   * the network too. Its answer carries our sites of the network as `routes`: the traffic
   * the member may send here directly.
   */
  private admitShortcut(ticket: unknown): { answer: JoinAnswer; physical: string; grant: TokenGrant; shortcut: boolean } | { error: string; reason: string } {
    if (!this.shortcuts) return { error: 'this FullVR takes no shortcuts (shortcuts: false)', reason: 'shortcut_off' };
    const claim = typeof ticket === 'string' ? this.shortcuts.verify(ticket) : { error: 'malformed shortcut ticket' };
    if ('error' in claim) return { error: claim.error, reason: 'bad_shortcut' };
    const net = this.networks.get(claim.net);
    if (!net) return { error: `network ${claim.net} is not served by this FullVR`, reason: 'wrong_network' };
    const home = net.sites.filter((s) => s.vr === claim.home);
    const mine = net.sites.filter((s) => s.vr === this.selfId);
    const outside = claim.addrs.find((a) => !home.some((s) => safeContains(s.subnet, a)));
    if (outside !== undefined || !mine.length) {
      return { error: `shortcut ticket names ${outside ?? 'a member'} outside VR ${claim.home}'s sites of network ${net.id}`, reason: 'bad_shortcut' };
    }
    const cur = this.byAddress.get(key(net.id, claim.addrs[0]));
    if (cur && !cur.shortcut) {
      // It failed over to us: its full membership here already carries everything.
      return { error: `${claim.addrs[0]} is already a member of this FullVR`, reason: 'already_member' };
    }
    if (claim.addrs.some((a) => this.left.has(key(net.id, a)))) {
      return { error: `host ${claim.addrs[0]} was removed from network ${net.id} by an operator`, reason: 'host_left' };
    }
    const site = home.find((s) => safeContains(s.subnet, claim.addrs[0]))!;
    return {
      physical: claim.addrs[0],
      grant: { network: net.id },
      shortcut: true,
      answer: {
        network: net.id,
        networkName: net.name ?? String(net.id),
        mode: net.mode,
        address: claim.addrs[0],
        addresses: claim.addrs,
        prefixlen: net.mode === 'virtual' ? parseCidr(net.overlay!).bits : parseCidr(site.subnet).bits,
        routes: mine.map((s) => s.subnet),
        mtu: this.mtu,
      },
    };
  }

  private place(
    network: number,
    addrs: string[],
    want: unknown,
    failover = false,
  ): { answer: JoinAnswer; physical: string } | { error: string; reason: string } {
    const grant = { network };
    const net = this.networks.get(grant.network);
    if (!net) return { error: `network ${grant.network} is not served by this FullVR`, reason: 'wrong_network' };
    const mine = net.sites.filter((s) => s.vr === this.selfId);
    // Failover (physical mode): we stand in for the member's own FullVR, so the member keeps its
    // address from that site; it gets routes to every other site of the network, ours included.
    if (failover && net.mode === 'physical' && !addrs.some((a) => mine.some((s) => safeContains(s.subnet, a)))) {
      const home = net.sites.filter((s) => addrs.some((a) => safeContains(s.subnet, a)));
      if (home.length) return this.physicalAnswer(net, addrs, home, net.sites.filter((s) => !home.includes(s)));
    }
    // Physical mode: the member's own address is its overlay identity, so it must lie in a
    // subnet this VR serves. Virtual mode: any address; it only keys the sticky allocation.
    const physical =
      net.mode === 'physical' ? addrs.find((a) => mine.some((s) => safeContains(s.subnet, a))) : (addrs[0] ?? 'unknown');
    if (!physical) {
      return {
        error: `none of the member's addresses (${addrs.join(', ') || 'none'}) is in a subnet this FullVR serves for network ${net.id} (${mine.map((s) => s.subnet).join(', ') || 'none'})`,
        reason: 'address_not_served',
      };
    }
    if (net.mode === 'physical') return this.physicalAnswer(net, addrs, mine, net.sites.filter((s) => s.vr !== this.selfId));
    // Virtual mode: an overlay address from this VR's block, stable across rejoins.
    const overlay = parseCidr(net.overlay!);
    const address = this.allocateVirtual(net, physical, typeof want === 'string' ? want : undefined);
    if (!address) return { error: `no free overlay address left in this FullVR's blocks of network ${net.id}`, reason: 'pool_exhausted' };
    return {
      physical,
      answer: {
        network: net.id,
        networkName: net.name ?? String(net.id),
        mode: 'virtual',
        address,
        addresses: [address],
        prefixlen: overlay.bits,
        routes: [overlay.network + '/' + overlay.bits],
        mtu: this.mtu,
      },
    };
  }

  /** Record an admitted member; replaces an older session of the same address. Returns the replaced session. */
  commit(session: number, answer: JoinAnswer, physical: string, endpoint: string, grant: TokenGrant, shortcut = false): number | null {
    this.tokens.consume(grant);
    const old = this.byAddress.get(key(answer.network, answer.address));
    const m: Member = { session, network: answer.network, address: answer.address, addresses: answer.addresses, physical, endpoint, joinedAt: Date.now() };
    if (shortcut) m.shortcut = true;
    if (old) this.forget(old.session);
    for (const a of m.addresses) {
      const other = this.byAddress.get(key(m.network, a));
      if (other && other.session !== session) this.forget(other.session);
    }
    this.bySession.set(session, m);
    for (const a of m.addresses) {
      this.byAddress.set(key(m.network, a), m);
      this.tables.addMember(a, m.network, session);
    }
    return old ? old.session : null;
  }

  /** Move a member to another network (authority merge/split); its session stays. */
  relabel(session: number, network: number): Member | undefined {
    const m = this.bySession.get(session);
    if (!m || m.network === network) return undefined;
    for (const a of m.addresses) {
      this.byAddress.delete(key(m.network, a));
      this.byAddress.set(key(network, a), m);
      this.tables.addMember(a, network, session);
    }
    m.network = network;
    return m;
  }

  /** Remove a member (leave, expiry or replacement). Returns it if it existed. */
  forget(session: number): Member | undefined {
    const m = this.bySession.get(session);
    if (!m) return undefined;
    this.bySession.delete(session);
    for (const a of m.addresses) {
      if (this.byAddress.get(key(m.network, a))?.session === session) {
        this.byAddress.delete(key(m.network, a));
        this.tables.removeMember(a);
      }
    }
    return m;
  }

  /** Physical mode: the member is known by its own addresses inside `home` sites; `routes` go to the TUN. */
  private physicalAnswer(net: NetworkCfg, addrs: string[], home: NetworkCfg['sites'], routes: NetworkCfg['sites']): { answer: JoinAnswer; physical: string } {
    const inHome = (a: string) => home.some((s) => safeContains(s.subnet, a));
    const physical = addrs.find(inHome)!;
    return {
      physical,
      answer: {
        network: net.id,
        networkName: net.name ?? String(net.id),
        mode: 'physical',
        address: physical,
        addresses: [physical, ...addrs.filter((a) => a !== physical && inHome(a))],
        prefixlen: parseCidr(home.find((s) => safeContains(s.subnet, physical))!.subnet).bits,
        routes: routes.map((s) => s.subnet),
        mtu: this.mtu,
      },
    };
  }

  private allocateVirtual(net: NetworkCfg, physical: string, want: string | undefined): string | null {
    const blocks = net.sites.filter((s) => s.vr === this.selfId).map((s) => parseCidr(s.subnet));
    const taken = (a: string): boolean => {
      const m = this.byAddress.get(key(net.id, a));
      return !!m && m.physical !== physical;
    };
    // The same VM (same physical address) gets its previous address back.
    for (const m of this.bySession.values()) if (m.network === net.id && m.physical === physical) return m.address;
    if (want && blocks.some((b) => safeContains(`${b.network}/${b.bits}`, want)) && !taken(want) && isHostAddress(want, blocks)) return want;
    for (const b of blocks) {
      if (b.family !== 4) continue; // virtual-mode allocation is IPv4 for now
      const base = v4ToInt(b.network);
      const size = 2 ** (32 - b.bits);
      for (let i = 1; i < size - 1; i++) {
        const a = intToV4(base + i);
        if (!taken(a) && !this.byAddress.has(key(net.id, a))) return a;
      }
    }
    return null;
  }
}

export function key(network: number, address: string): string {
  return `${network}|${address}`;
}

function safeContains(cidr: string, ip: string): boolean {
  try {
    return cidrContains(cidr, ip);
  } catch {
    return false;
  }
}

function isHostAddress(a: string, blocks: Array<{ network: string; bits: number; family: number }>): boolean {
  for (const b of blocks) {
    if (b.family !== 4 || !safeContains(`${b.network}/${b.bits}`, a)) continue;
    const off = v4ToInt(a) - v4ToInt(b.network);
    return off > 0 && off < 2 ** (32 - b.bits) - 1;
  }
  return false;
}

function v4ToInt(a: string): number {
  return a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
