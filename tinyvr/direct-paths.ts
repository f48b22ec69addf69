// Direct paths: a session straight to another member's TinyVR, so the traffic between two VMs
// crosses no FullVR at all (the shortest path a VM-to-VM packet can take, as the kernel's).
//
// A FullVR that forwards between two members it holds sessions with (its own, or a shortcut
// member) and that allows it (`directPaths: true`) introduces them: a CTRL "direct" on each
// member's session names the other's overlay addresses, its X25519 key (made per run, sent
// in the join) and its endpoint as the FullVR sees it, i.e. its NAT mapping. One side is
// told to initiate; the other first sends a few punch datagrams towards it, so its own NAT
// holds a mapping for the pair and lets the handshake in. Then the route entries for the
// peer's addresses (/32, /128; the longest prefix wins over a shortcut's site) point at the
// session, and DATA arriving on it must come from those addresses (checked natively: no
// FullVR checked that member's sources).
//
// Anything that fails leaves the traffic where it was, on the FullVR path: a direct path is
// an optimisation, never a dependency. A path idle for `idleMs` closes (it still receives
// while the peer notices); a silent one is dropped. Traffic to a peer we knew later asks the
// FullVR that introduced it for a new introduction (its NAT mapping has expired meanwhile).
//
// A path holds only while the FullVR that introduced it still vouches for the peer: it tells
// us at once when the peer leaves (CTRL "direct-revoke"), and because such a message can be
// lost, or go to a session we just replaced, an open path is also renewed every RENEW_MS (we
// ask again; the FullVR answers with a new introduction, or with a revocation when the peer
// with that key is no longer a member of our network there). That FullVR is named by its id,
// not by a session: our session with it changes when we rejoin.
import { isIP } from 'node:net';
import { consumeInit, generateKeyPair, HandshakeError, InitReplayGuard, loadPrivateKey, loadPublicKey, publicKeyOf, type StaticKey } from '../shared/handshake.js';
import { Initiator, type Established } from '../shared/initiator.js';
import { log } from '../shared/log.js';
import { monotonicMs, type PacketEngine } from '../shared/packet-engine.js';
import type { SessionIndexAllocator } from '../shared/session-index.js';
import type { SessionControl } from '../shared/session-control.js';
import { SHORTCUT_KEEPALIVE_MS, SHORTCUT_SILENCE_MS } from '../shared/shortcut-offer.js';
import { formatEndpoint, parseEndpoint } from '../shared/cidr.js';
import { encodeHeader, MsgType } from '../shared/wire.js';
import type { AuthMode } from '../shared/packet-engine.js';
import { SC_DIRECT, SC_RXONLY, type ExtraRoute } from './shortcuts.js';

/** An initiator without an answer this long gives up (the NATs in between do not allow it). */
const CONNECT_MS = 6000;
/** A responder accepts the introduced peer's handshake this long after the introduction. */
const EXPECT_MS = 10_000;
/** The responder's punches: this many, this far apart (the first at once). */
const PUNCHES = 8;
const PUNCH_EVERY_MS = 250;
/** A closing path keeps receiving this long after the peer last sent on it (it notices our silence first). */
const DRAIN_MS = SHORTCUT_SILENCE_MS + 3 * SHORTCUT_KEEPALIVE_MS;
/** Ask for a new introduction at most this often per peer; after failures from FAILED_ASK_MS, doubling up to MAX_ASK_MS. */
const ASK_MS = 10_000;
/** An open path asks its introducer to vouch for the peer again this often (the bound on a lost revocation). */
export const RENEW_MS = 10_000;
const FAILED_ASK_MS = 15_000;
const MAX_ASK_MS = 300_000;
/** A peer not used for this long is forgotten (its entries leave the pump table). */
const FORGET_MS = 10 * 60_000;
/**
 * At most this many INITs a second are worked on (each costs X25519 operations before its
 * sender is known): our UDP port is public, and a flood of forged INITs must not cost a core.
 */
const INITS_PER_S = 50;
/** At most this many peers (each takes one or two of the pump's route entries). */
export const MAX_PEERS = 12;

type State = 'punching' | 'connecting' | 'up' | 'closing' | 'idle' | 'failed';

interface Peer {
  keyB64: string;
  key: Buffer;
  addrs: string[];
  host: string;
  port: number;
  /** the FullVR that introduced it (renewals and new introductions are asked there) */
  viaVr: number;
  state: State;
  session: number;
  initiator: Initiator | null;
  since: number;
  upAt: number;
  usedAt: number;
  idleAt: number;
  rxData: number;
  rxAt: number;
  lastRxMs: number;
  askedAt: number;
  /** attempts that failed in a row (asks back off) */
  failures: number;
  /** told to initiate (else: respond) by the last introduction */
  initiate: boolean;
  reason?: string;
  punchTimer: NodeJS.Timeout | null;
}

export interface DirectPathOptions {
  engine: PacketEngine;
  indices: SessionIndexAllocator;
  /** CTRL on our sessions with FullVRs (introductions in, requests for them out). */
  control: SessionControl;
  /** The auth mode of our network (both members are in it). */
  mode: () => AuthMode;
  /** Close a path after this long without a packet either way (0: never). */
  idleMs: number;
  /** The route entries changed: rewrite the pump table. */
  onRoutes: () => void;
  /** Our current session with FullVR `vr` (home or shortcut), 0 if none. */
  sessionOfVr: (vr: number) => number;
}

export class DirectPaths {
  /** Our key for direct paths: made per run, so nothing secret is ever stored. */
  readonly key: StaticKey;
  readonly publicKey: string;
  private peers = new Map<string, Peer>();
  private guard = new InitReplayGuard();
  private initBudget = INITS_PER_S;
  private initBudgetAt = 0;
  readonly counters = { direct_up: 0, direct_failed: 0, direct_dropped: 0, direct_closed_idle: 0, direct_intros: 0, direct_asks: 0, direct_revoked: 0, direct_inits_dropped: 0 };

  constructor(private o: DirectPathOptions) {
    this.key = loadPrivateKey(generateKeyPair().privateKey);
    this.publicKey = publicKeyOf(this.key);
  }

  /** A CTRL "direct" from FullVR `viaVr`: start (or redo) the path to that member; for an open path, its renewal. */
  handleIntro(viaVr: number, p: Record<string, unknown>): void {
    const addrs = Array.isArray(p.addrs) ? p.addrs.filter((a): a is string => typeof a === 'string' && isIP(a) !== 0).slice(0, 2) : [];
    let key: Buffer;
    let ep: { host: string; port: number };
    try {
      if (!addrs.length || typeof p.key !== 'string' || typeof p.endpoint !== 'string') throw new Error('incomplete introduction');
      key = loadPublicKey(p.key);
      ep = parseEndpoint(p.endpoint);
      if (!isIP(ep.host)) throw new Error('endpoint is no address');
      if (p.key === this.publicKey) throw new Error('introduced to ourselves');
    } catch (e) {
      log.warn('direct path introduction ignored', { error: (e as Error).message });
      return;
    }
    this.counters.direct_intros++;
    const keyB64 = p.key as string;
    let peer = this.peers.get(keyB64);
    // Another key for the same addresses (the member restarted): the old one is void.
    for (const x of this.peers.values()) if (x !== peer && x.addrs.some((a) => addrs.includes(a))) this.forget(x);
    const initiate = p.initiate === true;
    // Already there, or already trying as told (the FullVRs at both ends may both introduce us).
    const same = peer && peer.host === ep.host && peer.port === ep.port;
    // (A closing path we send to again is redone: its session is going away.)
    const renewal = same && (peer!.state === 'up' || (peer!.state === 'closing' && peer!.usedAt <= peer!.since));
    if (renewal || (same && (peer!.state === 'connecting' || peer!.state === 'punching') && peer!.initiate === initiate)) {
      peer!.viaVr = viaVr;
      return;
    }
    if (!peer) {
      if (this.peers.size >= MAX_PEERS) {
        const oldest = [...this.peers.values()].filter((x) => x.state !== 'up').sort((a, b) => a.usedAt - b.usedAt)[0];
        if (!oldest) return;
        this.forget(oldest);
      }
      const now = monotonicMs();
      peer = { keyB64, key, addrs, host: ep.host, port: ep.port, viaVr, state: 'idle', session: 0, initiator: null, since: now, upAt: 0, usedAt: now, idleAt: 0, rxData: 0, rxAt: 0, lastRxMs: 0, askedAt: now, failures: 0, initiate, punchTimer: null };
      this.peers.set(keyB64, peer);
    }
    this.teardown(peer);
    Object.assign(peer, { addrs, host: ep.host, port: ep.port, viaVr, since: monotonicMs(), reason: undefined, initiate });
    if (initiate) this.connect(peer);
    else this.punch(peer);
    this.o.onRoutes();
  }

  /**
   * A CTRL "direct-revoke" from a FullVR: the member with that key left the network (or moved
   * to another): drop the path at once, and forget it (no new introduction is asked for).
   */
  handleRevoke(p: Record<string, unknown>): void {
    const peer = typeof p.key === 'string' ? this.peers.get(p.key) : undefined;
    if (!peer) return;
    this.counters.direct_revoked++;
    log.info('direct path revoked by a FullVR', { peer: peer.addrs.join(','), state: peer.state });
    this.forget(peer);
    this.o.onRoutes();
  }

  /** Our network changed (rejoin): no path of the old one may stay. */
  reset(): void {
    if (!this.peers.size) return;
    this.stop();
    this.o.onRoutes();
  }

  /** An INIT on our UDP port: a member we were introduced to, handshaking. */
  handleInit(msg: Buffer, host: string, port: number): boolean {
    // Only while a peer may handshake with us (introduced: punching; up: it may redo it), and
    // within the budget: everything else is dropped before any cryptography.
    let expecting = false;
    for (const p of this.peers.values()) if ((expecting = p.state === 'punching' || p.state === 'up')) break;
    if (!expecting) return false;
    const now = monotonicMs();
    if (now - this.initBudgetAt >= 1000) {
      this.initBudgetAt = now;
      this.initBudget = INITS_PER_S;
    }
    if (this.initBudget <= 0) {
      this.counters.direct_inits_dropped++;
      return false;
    }
    this.initBudget--;
    let init;
    try {
      init = consumeInit({
        responder: this.key,
        message: msg,
        isKnownInitiator: (k) => this.peers.get(k)?.state === 'punching' || this.peers.get(k)?.state === 'up',
        guard: this.guard,
      });
    } catch (e) {
      if (!(e instanceof HandshakeError)) throw e;
      log.debug('direct handshake rejected', { from: `${host}:${port}`, reason: e.message });
      return false;
    }
    const peer = init.initiatorStatic ? this.peers.get(init.initiatorStatic) : undefined;
    if (!peer || init.payload.kind !== 'direct') return false;
    const index = this.o.indices.allocate();
    const r = init.respond({ index, senderId: 0, payload: { kind: 'direct' } });
    if (!this.install(peer, { index, remoteIndex: init.remoteIndex, remoteSenderId: init.senderId, txKey: r.txKey, rxKey: r.rxKey, payload: init.payload }, host, port)) return true;
    this.o.engine.sendRaw(host, port, r.message);
    this.o.onRoutes();
    return true;
  }

  /** A RESP to one of our initiators? */
  handleResp(receiverIndex: number, msg: Buffer): boolean {
    for (const p of this.peers.values()) if (p.initiator?.handleResp(receiverIndex, msg)) return true;
    return false;
  }

  /** Every SHORTCUT_KEEPALIVE_MS (after the pump's hits were read: usedAt is current). */
  tick(): void {
    const now = monotonicMs();
    let changed = false;
    for (const p of this.peers.values()) {
      if (p.state === 'up' || p.state === 'closing') {
        const info = this.o.engine.sessionInfo(p.session);
        if (info) {
          if (info.rxDataPackets !== p.rxData) p.usedAt = p.rxAt = now;
          p.rxData = info.rxDataPackets;
          p.lastRxMs = info.lastRxMs;
        }
      }
      switch (p.state) {
        case 'connecting':
          if (now - p.since > CONNECT_MS) changed = this.fail(p, `no answer from ${p.host}:${p.port} in ${CONNECT_MS / 1000} s`) || changed;
          break;
        case 'punching':
          if (now - p.since > EXPECT_MS) changed = this.fail(p, 'the peer never handshook') || changed;
          break;
        case 'up': {
          if (this.o.idleMs > 0 && now - p.usedAt > this.o.idleMs) {
            p.state = 'closing';
            p.since = now;
            p.reason = `idle for ${Math.round((now - p.usedAt) / 1000)} s`;
            this.counters.direct_closed_idle++;
            log.info('direct path closed (idle)', { peer: p.addrs.join(','), reason: p.reason });
            changed = true;
            break;
          }
          this.o.engine.sendKeepalive(p.session);
          if (now - p.askedAt >= RENEW_MS) this.ask(p, now);
          const last = Math.max(p.lastRxMs, p.upAt);
          if (now - last > SHORTCUT_SILENCE_MS) {
            this.counters.direct_dropped++;
            log.warn('direct path dropped, using the FullVR path', { peer: p.addrs.join(','), silentMs: Math.round(now - last) });
            this.teardown(p);
            p.state = 'idle';
            p.idleAt = now;
            p.reason = `silent for ${Math.round(now - last)} ms`;
            changed = true;
          }
          break;
        }
        case 'closing':
          if (now - p.askedAt >= RENEW_MS) this.ask(p, now);
          if (now - Math.max(p.since, p.rxAt) >= DRAIN_MS) {
            this.teardown(p);
            p.state = 'idle';
            p.idleAt = now;
            changed = true;
          }
          break;
        case 'idle':
        case 'failed':
          if (now - p.usedAt > FORGET_MS) {
            this.forget(p);
            changed = true;
          } else if (p.usedAt > p.idleAt && now - p.askedAt >= this.askEvery(p)) this.ask(p, now);
          break;
      }
    }
    if (changed) this.o.onRoutes();
  }

  /** Route entries for the pump: an open path's addresses to its session, a closed one's counted. */
  routes(): ExtraRoute[] {
    const out: ExtraRoute[] = [];
    for (const p of this.peers.values()) {
      const live = p.state === 'up' || p.state === 'closing';
      const flags = live ? SC_DIRECT | (p.state === 'closing' ? SC_RXONLY : 0) : 0;
      const onUse = (now: number) => (p.usedAt = now);
      for (const a of p.addrs) out.push({ session: live ? p.session : 0, cidr: `${a}/${a.includes(':') ? 128 : 32}`, flags, onUse });
    }
    return out;
  }

  stop(): void {
    for (const p of [...this.peers.values()]) this.forget(p);
  }

  /** The FullVRs that introduced our open paths: a shortcut to one of them is kept while they are (it vouches for the peer). */
  introducers(): Set<number> {
    return new Set([...this.peers.values()].filter((p) => p.state === 'up' || p.state === 'closing').map((p) => p.viaVr));
  }

  status(): Array<Record<string, unknown>> {
    const now = monotonicMs();
    return [...this.peers.values()].map((p) => ({
      peer: p.addrs,
      endpoint: formatEndpoint(p.host, p.port),
      state: p.state,
      session: p.session || undefined,
      reason: p.reason,
      idleSeconds: Math.floor((now - p.usedAt) / 1000),
    }));
  }

  private askEvery(p: Peer): number {
    return p.failures ? Math.min(MAX_ASK_MS, FAILED_ASK_MS * 2 ** (p.failures - 1)) : ASK_MS;
  }

  private connect(p: Peer): void {
    p.state = 'connecting';
    p.initiator = new Initiator({
      engine: this.o.engine,
      indices: this.o.indices,
      responderPublic: p.key,
      initiatorStatic: this.key,
      senderId: 0,
      host: p.host,
      port: p.port,
      payload: () => ({ kind: 'direct' }),
      onEstablished: (s) => this.install(p, s, p.host, p.port) && this.o.onRoutes(),
      onRefused: (reason) => this.fail(p, reason) && this.o.onRoutes(),
      // The first tries may meet a NAT that has no mapping for us yet: retry soon, briefly.
      firstRetryMs: 250,
      maxRetryMs: 1000,
    });
    p.initiator.start();
  }

  /** Open our NAT towards the initiator: it lets its handshake in (and drops these, having no session 0). */
  private punch(p: Peer): void {
    p.state = 'punching';
    const probe = encodeHeader({ type: MsgType.KEEPALIVE, mode: 0, hops: 0, receiverIndex: 0, senderId: 0, networkId: 0, counter: 0n });
    let left = PUNCHES;
    const send = () => {
      p.punchTimer = null;
      if (p.state !== 'punching' || left-- <= 0) return;
      try {
        this.o.engine.sendRaw(p.host, p.port, probe);
      } catch {
        /* unreachable: the FullVR path stays */
      }
      p.punchTimer = setTimeout(send, PUNCH_EVERY_MS);
      p.punchTimer.unref();
    };
    send();
  }

  /** A handshake finished (either side): the session carries the peer's addresses from now on. */
  private install(p: Peer, s: Established, host: string, port: number): boolean {
    if (this.peers.get(p.keyB64) !== p || (p.state !== 'connecting' && p.state !== 'punching' && p.state !== 'up')) {
      this.o.indices.release(s.index);
      return false;
    }
    try {
      this.o.engine.setSession(s.index, { peerHost: host, peerPort: port, remoteIndex: s.remoteIndex, senderId: 0, mode: this.o.mode(), txKey: s.txKey, rxKey: s.rxKey });
    } catch (e) {
      this.o.indices.release(s.index);
      log.warn('direct path not installed', { peer: p.addrs.join(','), error: (e as Error).message });
      return false;
    }
    const old = p.session;
    this.stopTrying(p);
    p.session = s.index;
    p.host = host;
    p.port = port;
    p.state = 'up';
    p.upAt = monotonicMs();
    p.usedAt = p.upAt;
    p.rxData = 0;
    p.failures = 0;
    p.reason = undefined;
    if (old && old !== s.index) this.deleteSession(old);
    this.counters.direct_up++;
    log.info('direct path up', { peer: p.addrs.join(','), endpoint: `${host}:${port}`, session: s.index, rttMs: s.rttMs });
    return true;
  }

  private fail(p: Peer, why: string): boolean {
    if (p.state !== 'connecting' && p.state !== 'punching') return false;
    this.stopTrying(p);
    p.state = 'failed';
    p.idleAt = monotonicMs();
    p.reason = why;
    p.failures++;
    this.counters.direct_failed++;
    log.info('direct path failed, using the FullVR path', { peer: p.addrs.join(','), endpoint: `${p.host}:${p.port}`, why });
    return true;
  }

  /**
   * Ask the FullVR that introduced the peer to introduce us again: our traffic to it resumed,
   * or the path is open and due for renewal (the key lets the FullVR refuse a peer that is no
   * longer the member it introduced).
   */
  private ask(p: Peer, now: number): void {
    p.askedAt = now;
    // Not sent (no session with that FullVR now, or unreachable): retried at the next turn, and
    // the FullVR introduces us again anyway when it next forwards between us.
    const session = this.o.sessionOfVr(p.viaVr);
    if (session && this.o.control.send(this.o.engine, session, { op: 'direct', addr: p.addrs[0], key: p.keyB64 })) this.counters.direct_asks++;
  }

  private stopTrying(p: Peer): void {
    p.initiator?.stop();
    p.initiator = null;
    if (p.punchTimer) clearTimeout(p.punchTimer);
    p.punchTimer = null;
  }

  private teardown(p: Peer): void {
    this.stopTrying(p);
    if (p.session) this.deleteSession(p.session);
    p.session = 0;
  }

  private forget(p: Peer): void {
    this.teardown(p);
    this.peers.delete(p.keyB64);
  }

  private deleteSession(session: number): void {
    this.o.engine.deleteSession(session);
    this.o.indices.release(session);
  }
}
