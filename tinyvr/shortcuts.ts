// Shortcuts: besides its session with its own FullVR, a TinyVR opens a session straight to
// a peer FullVR its FullVR offered (join answer `shortcuts`) once it has traffic for that
// peer's sites, and sends that traffic there: one FullVR fewer on the path, in both
// directions (the peer delivers its sites' replies to us over the same session). Whatever
// is not up goes the ordinary way, through our own FullVR: a shortcut is an optimisation,
// never a dependency. On demand, because each open shortcut costs a keepalive per second
// both ways and a session at the peer: a VM talks to a few sites, not to every one. A
// shortcut without a packet either way for `idleMs` is closed again.
//
// The native TUN pump picks the session per packet from the route entries written into the
// shared pump configuration (pumps.c, "Shortcut routes") and counts the packets per entry,
// open or not; this module maintains the entries (with those of the direct paths,
// tinyvr/direct-paths.ts, first) and reads the counts once a second.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ipToBytes, parseCidr, parseEndpoint } from '../shared/cidr.js';
import { loadPublicKey } from '../shared/handshake.js';
import { Initiator, type Established } from '../shared/initiator.js';
import { log } from '../shared/log.js';
import { monotonicMs, type PacketEngine } from '../shared/packet-engine.js';
import type { SessionIndexAllocator } from '../shared/session-index.js';
import { SHORTCUT_KEEPALIVE_MS, SHORTCUT_SILENCE_MS, type ShortcutOffer } from '../shared/shortcut-offer.js';
import { authModeOf, type AuthName } from '../shared/auth-mode.js';
import type { SessionControl } from '../shared/session-control.js';

/** Layout of the route entries in the pump configuration (shared/native/pumps.c: TV_SC_*). */
export const SC_COUNT = 4;
export const SC_BASE = 8;
export const SC_FIELDS = 9;
export const SC_HITS = 7;
export const SC_FLAGS = 8;
export const SC_MAX = 32;
/** Entry flags: another member's session (its DATA must come from the entry's prefix)... */
export const SC_DIRECT = 1;
/** ...still receiving while it closes, but no longer sent to. */
export const SC_RXONLY = 2;

/** A route entry another module (direct paths) puts in the pump configuration. */
export interface ExtraRoute {
  /** 0: not open (sent the default way, but counted) */
  session: number;
  cidr: string;
  flags: number;
  /** the entry's hits moved since the last tick */
  onUse: (now: number) => void;
}
export const PUMP_CFG_LEN = SC_BASE + SC_FIELDS * SC_MAX;

/** A handshake without an answer backs off to this. */
const RETRY_MS = 30_000;
/** A refusal is deliberate (the peer's config or policy): ask again only this much later. */
const REFUSED_RETRY_MS = 300_000;
/**
 * A closed shortcut's session still receives this long: the peer stops sending on it once
 * it forgets us, SHORTCUT_SILENCE_MS + one expiry round after our last keepalive.
 */
const DRAIN_MS = SHORTCUT_SILENCE_MS + 3 * SHORTCUT_KEEPALIVE_MS;

// idle: offered, not in use (no session); closing: closed for being idle, its session still
// receives while the peer forgets us.
type State = 'idle' | 'resolving' | 'connecting' | 'up' | 'closing' | 'refused' | 'down';

interface Link {
  offer: ShortcutOffer;
  key: Buffer;
  /** as offered (a name is resolved again on a retry) */
  name: string;
  host: string;
  port: number;
  initiator: Initiator | null;
  state: State;
  session: number;
  remoteIndex: number;
  /** Routes in use: the offer's routes the peer confirmed serving. */
  routes: string[];
  upAt: number;
  retryAt: number;
  reason?: string;
  /** Last time a packet to its sites left (counted by the pump) or DATA arrived on its session. */
  usedAt: number;
  /** When it last became idle (or was created): used after this means wanted. */
  idleAt: number;
  /** When it started closing. */
  closingAt: number;
  /** DATA datagrams received on its session when last read, and when that count last moved. */
  rxData: number;
  rxAt: number;
  /** Its session's last receive time (keepalive answers too), as read by the last tick. */
  lastRxMs: number;
}

export interface ShortcutOptions {
  engine: PacketEngine;
  indices: SessionIndexAllocator;
  /** The pump configuration shared with the native TUN pump (PUMP_CFG_LEN entries). */
  pumpCfg: Int32Array;
  /** Close a shortcut after this long without a packet either way (0: never). */
  idleMs: number;
  /** Control messages on the shortcut sessions (direct-path introductions from peer FullVRs). */
  control?: SessionControl;
  /** Our key for direct paths, announced in the join (the peer FullVR may introduce us). */
  directKey?: string;
  /** Entries placed before the shortcuts' (direct paths: host routes, longest prefix anyway). */
  extraRoutes?: () => ExtraRoute[];
}

export class Shortcuts {
  private links = new Map<number, Link>();
  /** Who hears of each route entry's use in pumpCfg, and the entry's hits when last read. */
  private entries: Array<{ use: (now: number) => void; hits: number }> = [];
  readonly counters = { shortcuts_up: 0, shortcuts_dropped: 0, shortcuts_refused: 0, shortcuts_closed_idle: 0 };

  constructor(private o: ShortcutOptions) {}

  /** Use these offers from now on (every (re)join); links to the same peer and endpoint are kept. */
  apply(offers: ShortcutOffer[]): void {
    const keep = new Set<number>();
    for (const offer of offers.slice(0, SC_MAX)) {
      const old = this.links.get(offer.vr);
      if (old && old.offer.endpoint === offer.endpoint && old.offer.publicKey === offer.publicKey && sameList(old.offer.routes, offer.routes)) {
        old.offer = offer; // a fresh ticket for the next handshake
        keep.add(offer.vr);
        continue;
      }
      if (old) this.close(old);
      let key: Buffer;
      let ep: { host: string; port: number };
      try {
        key = loadPublicKey(offer.publicKey);
        ep = parseEndpoint(offer.endpoint);
        offer.routes.forEach((r) => parseCidr(r));
      } catch (e) {
        log.warn('shortcut offer ignored', { vr: offer.vr, error: (e as Error).message });
        continue;
      }
      const now = monotonicMs();
      const link: Link = { offer, key, name: ep.host, host: ep.host, port: ep.port, initiator: null, state: 'idle', session: 0, remoteIndex: 0, routes: [], upAt: 0, retryAt: 0, usedAt: 0, idleAt: now, closingAt: 0, rxData: 0, rxAt: 0, lastRxMs: 0 };
      this.links.set(offer.vr, link);
      keep.add(offer.vr);
    }
    for (const [vr, link] of this.links) if (!keep.has(vr)) this.close(link);
    this.refreshRoutes();
  }

  /** Our sessions with other FullVRs (open or closing shortcuts). */
  sessions(): number[] {
    return [...this.links.keys()].map((vr) => this.sessionOf(vr)).filter((s) => s > 0);
  }

  /** Our session with FullVR `vr` over a shortcut (open or closing), 0 if none. */
  sessionOf(vr: number): number {
    const l = this.links.get(vr);
    return l && (l.state === 'up' || l.state === 'closing') ? l.session : 0;
  }

  /**
   * Count these FullVRs' shortcuts as used now: one introduced a direct path we hold, and must
   * keep us as a member to vouch for its peer (renewals, revocations). Opens them if closed.
   */
  keep(vrs: Iterable<number>): void {
    const now = monotonicMs();
    for (const vr of vrs) {
      const l = this.links.get(vr);
      if (l) l.usedAt = now;
    }
  }

  /** A handshake answer (RESP) for one of our initiators? */
  handleResp(remoteSenderIndex: number, msg: Buffer): boolean {
    for (const l of this.links.values()) if (l.initiator?.handleResp(remoteSenderIndex, msg)) return true;
    return false;
  }

  /** An ERROR "unknown session" from FullVR `vr`: that shortcut is gone (restarted?); redo it now. */
  handleError(vr: number, receiverIndex: number): boolean {
    const l = this.links.get(vr);
    if (!l || l.state !== 'up' || l.remoteIndex !== receiverIndex) return false;
    this.redo(l, 'the FullVR lost the session');
    return true;
  }

  /**
   * Every SHORTCUT_KEEPALIVE_MS: open the shortcuts that got traffic, close those idle for
   * idleMs, keepalives on live ones, drop silent ones, retry refused or unresolved ones when
   * due (while wanted).
   */
  tick(): void {
    const now = monotonicMs();
    this.readUse(now);
    for (const l of this.links.values()) {
      const wanted = l.usedAt > l.idleAt && (this.o.idleMs === 0 || now - l.usedAt <= this.o.idleMs);
      if (l.state === 'idle') {
        if (wanted) this.open(l);
      } else if (l.state === 'up') {
        if (!wanted) {
          this.beginClose(l, now);
          continue;
        }
        this.o.engine.sendKeepalive(l.session);
        const last = Math.max(l.lastRxMs, l.upAt);
        if (now - last > SHORTCUT_SILENCE_MS) this.redo(l, `silent for ${Math.round(now - last)} ms`);
      } else if (l.state === 'closing') {
        if (now - Math.max(l.closingAt, l.rxAt) >= DRAIN_MS) this.finishClose(l, now);
      } else if (l.state === 'refused') {
        // A refusal holds for REFUSED_RETRY_MS; then ask again only if still wanted.
        if (now < l.retryAt) continue;
        if (wanted) this.open(l);
        else this.toIdle(l, now);
      } else if (!wanted) {
        // Connecting to (or waiting to retry) a peer nobody needs any more: stop asking.
        this.toIdle(l, now);
      } else if (l.state === 'down' && !l.initiator && now >= l.retryAt) {
        l.state = 'resolving'; // its name did not resolve: try again
        void this.resolve(l);
      }
    }
  }

  stop(): void {
    for (const l of this.links.values()) this.close(l, 'the TinyVR is stopping');
    this.refreshRoutes();
  }

  status(): Array<Record<string, unknown>> {
    const now = monotonicMs();
    return [...this.links.values()].map((l) => ({
      vr: l.offer.vr,
      endpoint: l.offer.endpoint,
      state: l.state,
      session: l.session || undefined,
      routes: l.routes,
      reason: l.reason,
      // seconds since its last packet either way (null: never used)
      idleSeconds: l.usedAt > 0 ? Math.floor((now - l.usedAt) / 1000) : null,
    }));
  }

  /** Traffic since the last tick: packets the pump sent (or would have sent) to each link's sites, DATA received on its session. */
  private readUse(now: number): void {
    const cfg = this.o.pumpCfg;
    this.entries.forEach((x, i) => {
      const hits = cfg[SC_BASE + i * SC_FIELDS + SC_HITS]!;
      if (hits !== x.hits) x.use(now);
      x.hits = hits;
    });
    for (const l of this.links.values()) {
      if (l.state !== 'up' && l.state !== 'closing') continue;
      const info = this.o.engine.sessionInfo(l.session);
      if (!info) continue;
      if (info.rxDataPackets !== l.rxData) l.usedAt = l.rxAt = now;
      l.rxData = info.rxDataPackets;
      l.lastRxMs = info.lastRxMs;
    }
  }

  /** Wanted: handshake (resolving the name first where it is one). */
  private open(link: Link): void {
    link.reason = undefined;
    if (link.initiator) {
      link.state = 'connecting';
      link.initiator.start();
    } else {
      link.state = 'resolving';
      void this.resolve(link);
    }
  }

  /**
   * Idle: its sites' traffic goes through our FullVR again and keepalives stop, so the peer
   * forgets us; the session keeps receiving until the peer has stopped using it (DRAIN_MS
   * after the last DATA on it), so nothing in flight towards us is lost. Traffic meanwhile
   * opens it again afterwards, with a new session.
   */
  private beginClose(link: Link, now: number): void {
    link.state = 'closing';
    link.closingAt = now;
    link.routes = [];
    link.reason = `idle for ${Math.round((now - link.usedAt) / 1000)} s`;
    this.refreshRoutes();
    this.counters.shortcuts_closed_idle++;
    log.info('shortcut closed (idle), using our FullVR', { vr: link.offer.vr, reason: link.reason });
  }

  private finishClose(link: Link, now: number, reopen = true): void {
    const session = link.session;
    link.session = 0;
    this.deleteSession(session);
    this.toIdle(link, now);
    // Used while closing: open again at once (a new session; the peer forgot the old one).
    if (reopen && link.usedAt > link.closingAt) {
      link.idleAt = link.closingAt;
      this.open(link);
    }
  }

  private toIdle(link: Link, now: number): void {
    link.initiator?.stop();
    link.state = 'idle';
    link.idleAt = now;
  }

  private async resolve(link: Link): Promise<void> {
    if (!isIP(link.name)) {
      try {
        link.host = (await lookup(link.name)).address;
      } catch {
        if (this.links.get(link.offer.vr) !== link) return;
        link.state = 'down';
        link.reason = `cannot resolve ${link.name}`;
        link.retryAt = monotonicMs() + RETRY_MS;
        return;
      }
    }
    if (this.links.get(link.offer.vr) !== link || link.state !== 'resolving') return; // replaced, closed or idle meanwhile
    link.initiator = new Initiator({
      engine: this.o.engine,
      indices: this.o.indices,
      responderPublic: link.key,
      senderId: 0,
      host: link.host,
      port: link.port,
      payload: () => ({ kind: 'tinyvr', shortcut: link.offer.ticket, direct: this.o.directKey }),
      onEstablished: (s) => this.up(link, s),
      onRefused: (reason) => {
        this.counters.shortcuts_refused++;
        link.initiator?.stop();
        link.state = 'refused';
        link.reason = reason;
        link.retryAt = monotonicMs() + REFUSED_RETRY_MS;
        log.info('shortcut refused', { vr: link.offer.vr, endpoint: link.offer.endpoint, reason });
      },
      // A peer we cannot reach costs a handshake now and then, never more.
      maxRetryMs: RETRY_MS,
    });
    link.state = 'connecting';
    link.initiator.start();
  }

  private up(link: Link, s: Established): void {
    const p = s.payload as { memberId?: unknown; auth?: unknown; routes?: unknown };
    // Only what our own FullVR offered, and only what the peer says it serves.
    const served = Array.isArray(p.routes) ? p.routes.filter((r): r is string => typeof r === 'string') : [];
    const routes = link.offer.routes.filter((r) => served.includes(r));
    if (this.links.get(link.offer.vr) !== link || link.state !== 'connecting') {
      this.o.indices.release(s.index); // closed or gone idle meanwhile
      return;
    }
    if (!routes.length) {
      this.o.indices.release(s.index);
      link.initiator?.stop();
      link.state = 'refused';
      link.reason = 'the FullVR serves none of the offered routes';
      link.retryAt = monotonicMs() + REFUSED_RETRY_MS;
      return;
    }
    const old = link.session;
    try {
      this.o.engine.setSession(s.index, {
        peerHost: link.host,
        peerPort: link.port,
        remoteIndex: s.remoteIndex,
        senderId: Number(p.memberId) || 0,
        mode: authModeOf(p.auth as AuthName),
        txKey: s.txKey,
        rxKey: s.rxKey,
      });
    } catch (e) {
      this.o.indices.release(s.index);
      log.warn('shortcut not installed', { vr: link.offer.vr, error: (e as Error).message });
      return;
    }
    link.session = s.index;
    this.o.control?.register(s.index, { txKey: s.txKey, rxKey: s.rxKey, remoteIndex: s.remoteIndex, vr: link.offer.vr });
    link.rxData = 0; // a new session counts from 0
    link.remoteIndex = s.remoteIndex;
    link.routes = routes;
    link.state = 'up';
    link.reason = undefined;
    link.upAt = monotonicMs();
    link.initiator?.stop();
    this.refreshRoutes();
    if (old && old !== s.index) this.deleteSession(old);
    this.counters.shortcuts_up++;
    log.info('shortcut up', { vr: link.offer.vr, endpoint: link.offer.endpoint, routes: routes.join(','), session: s.index });
  }

  /** Take a live shortcut out of use: its routes first, so no packet is sent on a deleted session. */
  private drop(link: Link, why: string, expected = false): void {
    if (link.state !== 'up') return;
    const session = link.session;
    link.state = 'down';
    link.session = 0;
    link.routes = [];
    link.reason = why;
    this.refreshRoutes();
    this.deleteSession(session);
    this.counters.shortcuts_dropped++;
    const fields = { vr: link.offer.vr, why };
    if (expected) log.info('shortcut dropped, using our FullVR', fields);
    else log.warn('shortcut dropped, using our FullVR', fields);
  }

  private deleteSession(session: number): void {
    this.o.engine.deleteSession(session);
    this.o.indices.release(session);
    this.o.control?.unregister(session);
  }

  /** Drop a live shortcut and handshake again at once (backing off by itself while the path stays dead). */
  private redo(link: Link, why: string): void {
    this.drop(link, why);
    link.state = 'connecting';
    link.initiator?.start();
  }

  private close(link: Link, why = 'no longer offered'): void {
    link.initiator?.stop();
    if (link.state === 'up') this.drop(link, why, true);
    if (link.state === 'closing') this.finishClose(link, monotonicMs(), false);
    this.links.delete(link.offer.vr);
  }

  /**
   * Rewrite the route entries for the native pump: the direct paths' (extraRoutes), then a
   * live shortcut's confirmed routes with its session, any other's offered routes with
   * session 0 (sent through our FullVR, but counted: that is the demand that opens it). The
   * count last, so the pump never reads a half-written entry; hits restart at 0 (a rewrite is
   * not a use).
   */
  refreshRoutes(): void {
    const cfg = this.o.pumpCfg;
    cfg[SC_COUNT] = 0;
    const entries: Array<{ use: (now: number) => void; hits: number }> = [];
    const put = (session: number, cidr: string, flags: number, use: (now: number) => void) => {
      if (entries.length === SC_MAX) return;
      const c = parseCidr(cidr);
      const at = SC_BASE + entries.length * SC_FIELDS;
      const addr = new Uint8Array(16);
      addr.set(ipToBytes(c.network));
      cfg[at] = session;
      cfg[at + 1] = c.family;
      cfg[at + 2] = c.bits;
      new Uint8Array(cfg.buffer, cfg.byteOffset + (at + 3) * 4, 16).set(addr);
      cfg[at + SC_HITS] = 0;
      cfg[at + SC_FLAGS] = flags;
      entries.push({ use, hits: 0 });
    };
    for (const x of this.o.extraRoutes?.() ?? []) put(x.session, x.cidr, x.flags, x.onUse);
    for (const l of this.links.values()) {
      const use = (now: number) => (l.usedAt = now);
      for (const r of l.state === 'up' ? l.routes : l.offer.routes) put(l.state === 'up' ? l.session : 0, r, 0, use);
    }
    this.entries = entries;
    cfg[SC_COUNT] = entries.length;
  }
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
