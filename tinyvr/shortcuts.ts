// Shortcuts: besides its session with its own FullVR, a TinyVR opens a session straight to
// each peer FullVR its FullVR offered (join answer `shortcuts`), and sends the traffic for
// that peer's sites there: one FullVR fewer on the path, in both directions (the peer
// delivers its sites' replies to us over the same session). Whatever is not up goes the
// ordinary way, through our own FullVR: a shortcut is an optimisation, never a dependency.
//
// The native TUN pump picks the session per packet from the route entries written into the
// shared pump configuration (engine.c, "Shortcut routes"); this module only maintains them.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ipToBytes, parseCidr, parseEndpoint } from '../shared/cidr.js';
import { loadPublicKey } from '../shared/handshake.js';
import { Initiator, type Established } from '../shared/initiator.js';
import { log } from '../shared/log.js';
import { monotonicMs, type PacketEngine } from '../shared/packet-engine.js';
import type { SessionIndexAllocator } from '../shared/session-index.js';
import { SHORTCUT_SILENCE_MS, type ShortcutOffer } from '../shared/shortcut-offer.js';
import { authModeOf, type AuthName } from '../shared/auth-mode.js';

/** Layout of the route entries in the pump configuration (engine.c: TV_SC_*). */
export const SC_COUNT = 4;
const SC_BASE = 8;
const SC_FIELDS = 7;
export const SC_MAX = 16;
export const PUMP_CFG_LEN = SC_BASE + SC_FIELDS * SC_MAX;

/** A handshake without an answer backs off to this. */
const RETRY_MS = 30_000;
/** A refusal is deliberate (the peer's config or policy): ask again only this much later. */
const REFUSED_RETRY_MS = 300_000;

type State = 'resolving' | 'connecting' | 'up' | 'refused' | 'down';

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
}

export interface ShortcutOptions {
  engine: PacketEngine;
  indices: SessionIndexAllocator;
  /** The pump configuration shared with the native TUN pump (PUMP_CFG_LEN entries). */
  pumpCfg: Int32Array;
}

export class Shortcuts {
  private links = new Map<number, Link>();
  readonly counters = { shortcuts_up: 0, shortcuts_dropped: 0, shortcuts_refused: 0 };

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
      const link: Link = { offer, key, name: ep.host, host: ep.host, port: ep.port, initiator: null, state: 'resolving', session: 0, remoteIndex: 0, routes: [], upAt: 0, retryAt: 0 };
      this.links.set(offer.vr, link);
      keep.add(offer.vr);
      void this.resolve(link);
    }
    for (const [vr, link] of this.links) if (!keep.has(vr)) this.close(link);
    this.writeRoutes();
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

  /** Every SHORTCUT_KEEPALIVE_MS: keepalives on live shortcuts, drop silent ones, retry refused ones when due. */
  tick(): void {
    const now = monotonicMs();
    for (const l of this.links.values()) {
      if (l.state === 'up') {
        this.o.engine.sendKeepalive(l.session);
        const last = Math.max(this.o.engine.sessionInfo(l.session)?.lastRxMs ?? 0, l.upAt);
        if (now - last > SHORTCUT_SILENCE_MS) this.redo(l, `silent for ${Math.round(now - last)} ms`);
      } else if (l.state === 'down' && !l.initiator && now >= l.retryAt) {
        l.state = 'resolving'; // its name did not resolve: try again
        void this.resolve(l);
      } else if (l.state === 'refused' && l.initiator && now >= l.retryAt) {
        l.state = 'connecting';
        l.initiator.start();
      }
    }
  }

  stop(): void {
    for (const l of this.links.values()) this.close(l);
    this.writeRoutes();
  }

  status(): Array<Record<string, unknown>> {
    return [...this.links.values()].map((l) => ({
      vr: l.offer.vr,
      endpoint: l.offer.endpoint,
      state: l.state,
      session: l.session || undefined,
      routes: l.routes,
      reason: l.reason,
    }));
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
    if (this.links.get(link.offer.vr) !== link) return; // replaced or closed meanwhile
    link.initiator = new Initiator({
      engine: this.o.engine,
      indices: this.o.indices,
      responderPublic: link.key,
      senderId: 0,
      host: link.host,
      port: link.port,
      payload: () => ({ kind: 'tinyvr', shortcut: link.offer.ticket }),
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
    if (this.links.get(link.offer.vr) !== link || !routes.length) {
      this.o.indices.release(s.index);
      if (this.links.get(link.offer.vr) === link) {
        link.initiator?.stop();
        link.state = 'refused';
        link.reason = 'the FullVR serves none of the offered routes';
      }
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
    link.remoteIndex = s.remoteIndex;
    link.routes = routes;
    link.state = 'up';
    link.reason = undefined;
    link.upAt = monotonicMs();
    link.initiator?.stop();
    this.writeRoutes();
    if (old && old !== s.index) {
      this.o.engine.deleteSession(old);
      this.o.indices.release(old);
    }
    this.counters.shortcuts_up++;
    log.info('shortcut up', { vr: link.offer.vr, endpoint: link.offer.endpoint, routes: routes.join(','), session: s.index });
  }

  /** Take a live shortcut out of use: its routes first, so no packet is sent on a deleted session. */
  private drop(link: Link, why: string): void {
    if (link.state !== 'up') return;
    const session = link.session;
    link.state = 'down';
    link.session = 0;
    link.routes = [];
    link.reason = why;
    this.writeRoutes();
    this.o.engine.deleteSession(session);
    this.o.indices.release(session);
    this.counters.shortcuts_dropped++;
    log.warn('shortcut dropped, using our FullVR', { vr: link.offer.vr, why });
  }

  /** Drop a live shortcut and handshake again at once (backing off by itself while the path stays dead). */
  private redo(link: Link, why: string): void {
    this.drop(link, why);
    link.state = 'connecting';
    link.initiator?.start();
  }

  private close(link: Link): void {
    link.initiator?.stop();
    if (link.state === 'up') this.drop(link, 'no longer offered');
    this.links.delete(link.offer.vr);
  }

  /** Rewrite the route entries for the native pump; the count last, so it never reads a half-written entry. */
  private writeRoutes(): void {
    const cfg = this.o.pumpCfg;
    cfg[SC_COUNT] = 0;
    let n = 0;
    for (const l of this.links.values()) {
      if (l.state !== 'up') continue;
      for (const r of l.routes) {
        if (n === SC_MAX) break;
        const c = parseCidr(r);
        const at = SC_BASE + n * SC_FIELDS;
        const addr = new Uint8Array(16);
        addr.set(ipToBytes(c.network));
        cfg[at] = l.session;
        cfg[at + 1] = c.family;
        cfg[at + 2] = c.bits;
        new Uint8Array(cfg.buffer, cfg.byteOffset + (at + 3) * 4, 16).set(addr);
        n++;
      }
    }
    cfg[SC_COUNT] = n;
  }
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
