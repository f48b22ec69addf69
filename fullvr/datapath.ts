// The FullVR's per-packet routing decision (DESIGN.md §5), run over whole batches.
// It reads addresses straight out of the batch buffer and writes the verdict into the
// batch's meta array: no allocation, no promise, no native call per packet.
import { Action, DropReason, HEADROOM, Kind, M, META_FIELDS, SLOT_SIZE, type PacketBatch } from '../shared/packet-engine.js';
import type { RoutingTables } from '../shared/routing-tables.js';

/** What a session index stands for at this FullVR. */
export const enum SessionKind {
  NONE = 0,
  MEMBER = 1, // a TinyVR
  VR = 2, // another FullVR
}

export const ROUTE_DROP_REASONS = [
  'unknown_source', // source not in the LNDT (DESIGN §5: else drop)
  'spoofed_source', // source is an LNDT entry but not the one bound to this session/TUN
  'no_route', // no GNDT entry for the destination in this network
  'wrong_network', // destination is a member of another virtual network (isolation)
  'not_member', // from a VR: destination is not a local member
  'vr_unreachable', // GNDT names a VR we have no session with
  'not_ip', // not an IPv4/IPv6 packet
] as const;
export type RouteDropReason = (typeof ROUTE_DROP_REASONS)[number];

const enum D {
  UNKNOWN_SOURCE = 0,
  SPOOFED_SOURCE,
  NO_ROUTE,
  WRONG_NETWORK,
  NOT_MEMBER,
  VR_UNREACHABLE,
  NOT_IP,
}

/** A Map that reports every change (the verdict cache depends on its contents). */
class WatchedMap<K, V> extends Map<K, V> {
  onChange: () => void = () => {};
  override set(k: K, v: V): this {
    super.set(k, v);
    this.onChange();
    return this;
  }
  override delete(k: K): boolean {
    const r = super.delete(k);
    if (r) this.onChange();
    return r;
  }
  override clear(): void {
    super.clear();
    this.onChange();
  }
}

/** A Set that reports every change. */
class WatchedSet<T> extends Set<T> {
  onChange: () => void = () => {};
  override add(v: T): this {
    super.add(v);
    this.onChange();
    return this;
  }
  override delete(v: T): boolean {
    const r = super.delete(v);
    if (r) this.onChange();
    return r;
  }
  override clear(): void {
    super.clear();
    this.onChange();
  }
}

export class FullvrDatapath {
  // Everything a decision reads is changed only through these methods, the watched
  // collections or the RoutingTables, all of which bump cacheGen: the engine caches
  // verdicts (see routeUdpNative) and trusts them only under the generation they were made in.
  /** Read-only here: write with setSessionKind. */
  readonly sessionKind = new Uint8Array(65536);
  /** For member sessions: the network they joined. Write with setSessionNetwork. */
  readonly sessionNetwork = new Int32Array(65536);
  /** VR id -> session index to send on (the newest established session). */
  readonly vrSession = new WatchedMap<number, number>();
  /** Limited-VRs (behind NAT) this FullVR is the queue-VR for: packets for them are relayed. */
  readonly relayFor = new WatchedSet<number>();
  /** Session index -> VR id, for sessions with peer FullVRs. Write with setSessionVr. */
  readonly sessionVr = new Int32Array(65536);
  /** Told of member-to-member forwarding decided here (direct-path introductions), if set. */
  onMemberPair: ((from: number, to: number) => void) | null = null;
  /** The verdict-cache generation (never 0), shared with the engine. */
  readonly cacheGen = new Int32Array([1]);
  private queueVrId = 0;
  relayed = 0;
  readonly drops = new Float64Array(ROUTE_DROP_REASONS.length);
  /** Indices (into the current batch) of control messages and unknown-session drops. */
  readonly controlSlots: Int32Array;
  controlCount = 0;
  readonly errorSlots: Int32Array;
  errorCount = 0;
  routed = 0;
  // The last forwarding decision of the current batch. Segments of one GRO/TSO burst share
  // session, network and addresses, and so their verdict: an equal key reuses it instead of
  // three trie walks. Only the same key hits, so every segment is still decided on its own.
  private memoValid = false;
  private memoOff = 0;
  private memoSession = 0;
  private memoNet = 0;
  private memoAction = 0;
  private memoOutnet = 0;
  private memoRelayed = false;

  constructor(
    private tables: RoutingTables,
    private selfId: number,
    capacity: number,
  ) {
    this.controlSlots = new Int32Array(capacity);
    this.errorSlots = new Int32Array(capacity);
    const bump = () => this.invalidate();
    this.vrSession.onChange = bump;
    this.relayFor.onChange = bump;
    tables.onChange = bump;
  }

  /** Cached verdicts are void from now on. */
  invalidate(): void {
    this.cacheGen[0] = ((this.cacheGen[0] + 1) | 0) || 1;
  }

  /** Set on a limited-VR: VRs it has no session with are reached through this queue-VR. */
  get queueVr(): number {
    return this.queueVrId;
  }
  set queueVr(id: number) {
    this.queueVrId = id;
    this.invalidate();
  }

  setSessionKind(index: number, kind: SessionKind): void {
    this.sessionKind[index] = kind;
    this.invalidate();
  }

  setSessionNetwork(index: number, network: number): void {
    this.sessionNetwork[index] = network;
    this.invalidate();
  }

  setSessionVr(index: number, vr: number): void {
    this.sessionVr[index] = vr;
    this.invalidate();
  }

  dropCounters(): Record<string, number> {
    const o: Record<string, number> = {};
    ROUTE_DROP_REASONS.forEach((r, i) => (o[r] = this.drops[i]));
    return o;
  }

  // Per slot of the batch being decided, for the engine's verdict cache: 1 = routed,
  // 2 = relayed, 0 = do not cache (drops: they are counted here, per reason).
  private flags: Uint8Array | null = null;

  /** Decide for a batch read from the UDP socket (members and peer VRs); flags: see above. */
  decideUdp(batch: PacketBatch, n: number, flags: Uint8Array | null = null): void {
    const meta = batch.meta;
    this.flags = flags;
    if (flags) flags.fill(0, 0, n);
    this.controlCount = 0;
    this.errorCount = 0;
    this.memoValid = false;
    for (let i = 0; i < n; i++) {
      const b = i * META_FIELDS;
      const kind = meta[b + M.KIND];
      if (kind === Kind.DATA) {
        this.decideOne(batch, i, meta[b + M.SESSION]);
        continue;
      }
      meta[b + M.ACTION] = Action.DROP;
      if (kind === Kind.CONTROL) this.controlSlots[this.controlCount++] = i;
      else if (kind === -DropReason.UNKNOWN_SESSION) this.errorSlots[this.errorCount++] = i;
      // KEEPALIVE: the engine already refreshed the session's last-rx time.
      else if (kind === Kind.KEEPALIVE) this.controlSlots[this.controlCount++] = i;
    }
  }

  /** Decide for a batch read from the TUN (LAN hosts behind this FullVR). */
  decideTun(batch: PacketBatch, n: number, flags: Uint8Array | null = null): void {
    this.flags = flags;
    if (flags) flags.fill(0, 0, n);
    this.memoValid = false;
    for (let i = 0; i < n; i++) this.decideOne(batch, i, -1);
  }

  /** Same IP version, source and destination as the memoized slot (v4: bytes 12..19, v6: 8..39). */
  private sameAddrs(buf: Buffer, off: number, v: number): boolean {
    const m = this.memoOff;
    if (buf[m] >> 4 !== v) return false;
    const from = v === 4 ? 12 : 8;
    const to = v === 4 ? 20 : 40;
    for (let k = from; k < to; k++) if (buf[off + k] !== buf[m + k]) return false;
    return true;
  }

  private forward(meta: Int32Array, b: number, off: number, session: number, action: number, net: number, relayed: boolean): void {
    meta[b + M.ACTION] = action;
    meta[b + M.OUTNET] = net;
    if (this.flags) this.flags[b / META_FIELDS] = relayed ? 2 : 1;
    if (relayed) this.relayed++;
    else this.routed++;
    this.memoValid = true;
    this.memoOff = off;
    this.memoSession = session;
    this.memoNet = meta[b + M.NETWORK];
    this.memoAction = action;
    this.memoOutnet = net;
    this.memoRelayed = relayed;
  }

  private drop(meta: Int32Array, b: number, reason: D): void {
    meta[b + M.ACTION] = Action.DROP;
    this.drops[reason]++;
  }

  private decideOne(batch: PacketBatch, i: number, session: number): void {
    const meta = batch.meta;
    const b = i * META_FIELDS;
    const buf = batch.buf;
    const off = i * SLOT_SIZE + (session === -1 ? HEADROOM : meta[b + M.OFF]);
    const v = buf[off] >> 4;
    if ((v !== 4 && v !== 6) || meta[b + M.LEN] < (v === 4 ? 20 : 40)) return this.drop(meta, b, D.NOT_IP);
    if (this.memoValid && session === this.memoSession && meta[b + M.NETWORK] === this.memoNet && this.sameAddrs(buf, off, v)) {
      meta[b + M.ACTION] = this.memoAction;
      meta[b + M.OUTNET] = this.memoOutnet;
      if (this.flags) this.flags[i] = this.memoRelayed ? 2 : 1;
      if (this.memoRelayed) this.relayed++;
      else this.routed++;
      return;
    }
    const t = this.tables;
    const kind = session === -1 ? SessionKind.MEMBER : this.sessionKind[session];
    let net: number;
    if (kind === SessionKind.VR) {
      net = meta[b + M.NETWORK];
    } else if (kind === SessionKind.MEMBER) {
      // From a TinyVR or a LAN host: the source must be an LNDT entry bound to where it came from.
      const se = t.lndtLookupSrc(buf, off);
      if (se < 0) return this.drop(meta, b, D.UNKNOWN_SOURCE);
      if (t.lndtSession[se] !== (session === -1 ? 0 : session)) return this.drop(meta, b, D.SPOOFED_SOURCE);
      net = t.lndtNetwork[se];
    } else {
      return this.drop(meta, b, D.UNKNOWN_SOURCE);
    }
    const de = t.lndtLookupDst(buf, off);
    if (de >= 0) {
      if (t.lndtNetwork[de] !== net) return this.drop(meta, b, D.WRONG_NETWORK);
      const to = t.lndtSession[de];
      if (to > 0 && session > 0 && this.onMemberPair) this.onMemberPair(session, to);
      return this.forward(meta, b, off, session, t.lndtSession[de], net, false); // 0 = TUN (LAN), >0 = member session
    }
    const vr = t.gndtLookupDst(net, buf, off);
    if (kind === SessionKind.VR) {
      // From a VR a packet must end here (≤ 2 VRs), unless we are the queue-VR of a
      // limited-VR on either end: then one more hop, to it or on its behalf.
      if (vr < 0 || vr === this.selfId || (!this.relayFor.has(vr) && !this.relayFor.has(this.sessionVr[session]))) {
        return this.drop(meta, b, D.NOT_MEMBER);
      }
      const s = this.vrSession.get(vr);
      if (s === undefined) return this.drop(meta, b, D.VR_UNREACHABLE);
      return this.forward(meta, b, off, session, s, net, true);
    }
    if (vr < 0) return this.drop(meta, b, D.NO_ROUTE);
    if (vr === this.selfId) return this.drop(meta, b, D.NOT_MEMBER);
    // A limited-VR without a direct session to that VR sends through its queue-VR.
    const s = this.vrSession.get(vr) ?? (this.queueVr ? this.vrSession.get(this.queueVr) : undefined);
    if (s === undefined) return this.drop(meta, b, D.VR_UNREACHABLE);
    this.forward(meta, b, off, session, s, net, false);
  }
}
