// Sessions with other FullVRs (the NSKT's peers). Each peer has at most two live
// sessions: the newest (used to send) and two older ones (still accepted), so two
// routers that handshake at the same moment, or a rekey, never drop traffic in flight.
import type { StaticKey } from '../shared/handshake.js';
import { Initiator, type Established } from '../shared/initiator.js';
import { monotonicMs, type AuthMode, type PacketEngine } from '../shared/packet-engine.js';
import type { SessionIndexAllocator } from '../shared/session-index.js';
import { log } from '../shared/log.js';
import { SessionKind, type FullvrDatapath } from './datapath.js';
import type { SessionControl } from '../shared/session-control.js';

export interface PeerConfig {
  id: number;
  /** Behind NAT: it opens the session; we never initiate (host/port may be empty). */
  limited?: boolean;
  host: string;
  port: number;
  publicKey: Buffer;
  publicKeyB64: string;
}

interface PeerState {
  cfg: PeerConfig;
  initiator: Initiator;
  current: number; // session index or 0
  previous: number;
  /** The one before previous: two routers initiating at once can briefly make three sessions. */
  oldest: number;
  /** Responder-side session not yet confirmed by the initiator (received on, not sent on). */
  pending: number;
  remoteIndex: Map<number, number>; // our session -> their index (to match ERROR messages)
  upSince: number;
  installedMono: number;
  /** Handshake round trip (ms), measured when we initiated. */
  rttMs: number | null;
  /** Byte counters at the last metrics() call, for throughput. */
  lastBytes: { at: number; rx: number; tx: number } | null;
  lastRehandshake: number;
}

export class Peers {
  private peers = new Map<number, PeerState>();
  private sessionPeer = new Map<number, number>(); // session -> peer id

  constructor(
    private selfId: number,
    private staticKey: StaticKey,
    private engine: PacketEngine,
    private indices: SessionIndexAllocator,
    private datapath: FullvrDatapath,
    private mode: AuthMode,
    private keepaliveMs: number,
    peers: PeerConfig[],
    private control?: SessionControl,
  ) {
    for (const cfg of peers) this.addPeer(cfg);
  }

  /** Replace the peer list (authority tables): new peers handshake, removed ones are dropped. */
  setPeers(list: PeerConfig[], mode: AuthMode): void {
    const modeChanged = mode !== this.mode;
    this.mode = mode;
    const want = new Map(list.map((p) => [p.id, p]));
    for (const [id, st] of this.peers) {
      const w = want.get(id);
      if (!w || w.publicKeyB64 !== st.cfg.publicKeyB64 || w.host !== st.cfg.host || w.port !== st.cfg.port || modeChanged) {
        st.initiator.stop();
        if (st.current) this.dropSession(st, st.current);
        if (st.previous) this.dropSession(st, st.previous);
        if (st.oldest) this.dropSession(st, st.oldest);
        if (st.pending) this.dropSession(st, st.pending);
        this.peers.delete(id);
        this.datapath.vrSession.delete(id);
      }
    }
    for (const p of list) {
      if (this.peers.has(p.id)) continue;
      const st = this.addPeer(p);
      if (!p.limited) st.initiator.start();
    }
  }

  private addPeer(cfg: PeerConfig): PeerState {
    {
      const st: PeerState = {
        cfg,
        current: 0,
        previous: 0,
        oldest: 0,
        pending: 0,
        remoteIndex: new Map(),
        upSince: 0,
        installedMono: 0,
        rttMs: null,
        lastBytes: null,
        lastRehandshake: 0,
        initiator: new Initiator({
          engine: this.engine,
          indices: this.indices,
          responderPublic: cfg.publicKey,
          initiatorStatic: this.staticKey,
          senderId: this.selfId,
          host: cfg.host,
          port: cfg.port,
          payload: () => ({ kind: 'vr', mode: this.mode }),
          onEstablished: (s) => this.install(st, s),
          onRefused: (reason) => log.warn('peer refused session', { peer: cfg.id, reason }),
          maxRetryMs: 2000,
        }),
      };
      this.peers.set(cfg.id, st);
      return st;
    }
  }

  startAll(): void {
    for (const p of this.peers.values()) if (!p.cfg.limited) p.initiator.start();
  }

  stopAll(): void {
    for (const p of this.peers.values()) p.initiator.stop();
  }

  /** Static public key (base64) -> peer id, for the responder side of a handshake. */
  peerByKey(b64: string): number | null {
    for (const p of this.peers.values()) if (p.cfg.publicKeyB64 === b64) return p.cfg.id;
    return null;
  }

  handleResp(receiverIndex: number, msg: Buffer): boolean {
    for (const p of this.peers.values()) if (p.initiator.handleResp(receiverIndex, msg)) return true;
    return false;
  }

  /** Responder side: a peer opened a session to us. */
  accept(peerId: number, index: number, remoteIndex: number, txKey: Buffer, rxKey: Buffer, host: string, port: number): void {
    const st = this.peers.get(peerId)!;
    this.install(st, { index, remoteIndex, remoteSenderId: peerId, txKey, rxKey, payload: {} }, host, port, false);
  }

  /**
   * A keepalive (or the first packet) arrived on a session: if it is the responder-side session
   * we have been holding back, the initiator has it too now, so start sending on it.
   */
  confirm(session: number): void {
    const id = this.sessionPeer.get(session);
    const st = id === undefined ? undefined : this.peers.get(id);
    if (st && st.pending === session) this.promote(st, session);
  }

  private install(st: PeerState, s: Established, host = st.cfg.host, port = st.cfg.port, confirmed = true): void {
    this.engine.setSession(s.index, {
      peerHost: host,
      peerPort: port,
      remoteIndex: s.remoteIndex,
      senderId: this.selfId,
      mode: this.mode,
      txKey: s.txKey,
      rxKey: s.rxKey,
    });
    this.datapath.setSessionKind(s.index, SessionKind.VR);
    this.datapath.setSessionVr(s.index, st.cfg.id);
    this.control?.register(s.index, { txKey: s.txKey, rxKey: s.rxKey, remoteIndex: s.remoteIndex, vr: st.cfg.id });
    this.sessionPeer.set(s.index, st.cfg.id);
    st.remoteIndex.set(s.index, s.remoteIndex);
    if (s.rttMs !== undefined) st.rttMs = s.rttMs;
    if (!confirmed) {
      // Responder side: the initiator may not have our RESP yet, so sending on this session
      // now could hit "unknown session" over there. Receive on it at once; send on it after
      // the initiator's first keepalive (sent as soon as it installs the session) confirms it.
      if (st.pending) this.dropSession(st, st.pending);
      st.pending = s.index;
      log.info('peer session pending confirmation', { peer: st.cfg.id, session: s.index });
      return;
    }
    // Our own handshake is done; a crossing one from the peer may still land as pending.
    st.initiator.stop();
    this.promote(st, s.index);
    // Key confirmation for the responder: our first packet on the new session.
    this.engine.sendKeepalive(s.index);
    log.info('peer session up', { peer: st.cfg.id, endpoint: `${host}:${port}`, session: s.index });
  }

  private promote(st: PeerState, index: number): void {
    if (st.pending === index) st.pending = 0;
    if (st.oldest) this.dropSession(st, st.oldest);
    st.oldest = st.previous;
    st.previous = st.current;
    st.current = index;
    st.installedMono = monotonicMs();
    if (!st.upSince) st.upSince = Date.now();
    this.datapath.vrSession.set(st.cfg.id, index);
  }

  private dropSession(st: PeerState, index: number): void {
    this.control?.unregister(index);
    this.engine.deleteSession(index);
    this.datapath.setSessionKind(index, SessionKind.NONE);
    this.sessionPeer.delete(index);
    st.remoteIndex.delete(index);
    this.indices.release(index);
  }

  /** The peer told us it does not know the session we used: it restarted. Handshake again. */
  onUnknownSession(theirIndex: number, fromHost: string): void {
    for (const st of this.peers.values()) {
      for (const [ours, theirs] of st.remoteIndex) {
        if (theirs === theirIndex && (ours === st.current || ours === st.previous || ours === st.oldest || ours === st.pending)) {
          this.rehandshake(st, `peer ${st.cfg.id} (${fromHost}) lost our session`);
          return;
        }
      }
    }
  }

  private rehandshake(st: PeerState, why: string): void {
    // A limited peer cannot be reached: it will open a new session itself.
    if (st.cfg.limited) return;
    const now = Date.now();
    if (st.initiator.active || now - st.lastRehandshake < 1000) return;
    st.lastRehandshake = now;
    log.info('peer rehandshake', { peer: st.cfg.id, why });
    st.initiator.start();
  }

  /** Periodic: keepalives, and handshake again with peers that went silent. */
  tick(): void {
    const now = monotonicMs();
    for (const st of this.peers.values()) {
      if (!st.current) continue;
      this.engine.sendKeepalive(st.current);
      const lastRx = Math.max(this.lastRxMs(st), st.installedMono);
      if (now - lastRx > 3 * this.keepaliveMs) {
        if (st.upSince) log.warn('peer silent', { peer: st.cfg.id, silentMs: now - lastRx });
        st.upSince = 0;
        this.rehandshake(st, 'silent');
      }
    }
  }

  /**
   * When we last heard from the peer (monotonic ms, 0: never). Both the current and the
   * previous session count: after two crossing handshakes each side sends on the session
   * it promoted last, which is the other side's previous one, for as long as both live.
   */
  private lastRxMs(st: PeerState): number {
    const cur = st.current ? this.engine.sessionInfo(st.current) : null;
    const prev = st.previous ? this.engine.sessionInfo(st.previous) : null;
    return Math.max(cur?.lastRxMs ?? 0, prev?.lastRxMs ?? 0);
  }

  /** Whether the peer was heard from within three keepalive intervals. */
  private heard(st: PeerState, now: number): boolean {
    const at = this.lastRxMs(st);
    return !!st.current && at > 0 && now - at <= 3 * this.keepaliveMs;
  }

  /** Current session of every peer that has one (for control messages). */
  currentSessions(): Array<{ id: number; session: number; host: string; port: number }> {
    const out: Array<{ id: number; session: number; host: string; port: number }> = [];
    for (const st of this.peers.values()) {
      const info = st.current ? this.engine.sessionInfo(st.current) : null;
      if (info) out.push({ id: st.cfg.id, session: st.current, host: info.peerHost, port: info.peerPort });
    }
    return out;
  }

  /** Whether we have a session with that peer. */
  isUp(id: number): boolean {
    return !!this.peers.get(id)?.current;
  }

  /** Reach a peer at another endpoint from now on (TCP fallback's loopback relay) and handshake. */
  redirect(id: number, host: string, port: number): void {
    const st = this.peers.get(id);
    if (!st) return;
    st.cfg = { ...st.cfg, host, port };
    st.initiator.stop();
    st.initiator.setEndpoint(host, port);
    st.lastRehandshake = 0;
    st.initiator.start();
  }

  /** Limited peers (limited-VRs) that depend on us as queue-VR. */
  limitedPeers(): number[] {
    return [...this.peers.values()].filter((p) => p.cfg.limited).map((p) => p.cfg.id);
  }

  /**
   * Per-peer link metrics for the authority: handshake RTT and throughput measured from the
   * real traffic (session byte counters) since the previous call.
   */
  metrics(): Array<{ id: number; up: boolean; rttMs: number | null; rxBps: number; txBps: number }> {
    const now = monotonicMs();
    return [...this.peers.values()].map((st) => {
      const info = st.current ? this.engine.sessionInfo(st.current) : null;
      let rxBps = 0;
      let txBps = 0;
      if (info && st.lastBytes && now > st.lastBytes.at) {
        const dt = (now - st.lastBytes.at) / 1000;
        rxBps = Math.max(0, Math.round(((info.rxBytes - st.lastBytes.rx) * 8) / dt));
        txBps = Math.max(0, Math.round(((info.txBytes - st.lastBytes.tx) * 8) / dt));
      }
      st.lastBytes = info ? { at: now, rx: info.rxBytes, tx: info.txBytes } : null;
      return { id: st.cfg.id, up: this.heard(st, now), rttMs: st.rttMs, rxBps, txBps };
    });
  }

  status(): unknown[] {
    const now = monotonicMs();
    return [...this.peers.values()].map((st) => {
      const info = st.current ? this.engine.sessionInfo(st.current) : null;
      const lastRx = this.lastRxMs(st);
      return {
        id: st.cfg.id,
        endpoint: info ? `${info.peerHost}:${info.peerPort}` : `${st.cfg.host}:${st.cfg.port}`,
        limited: !!st.cfg.limited,
        up: this.heard(st, now),
        session: st.current,
        lastRxAgoMs: lastRx > 0 ? now - lastRx : null,
        rttMs: st.rttMs,
        rxPackets: info?.rxPackets ?? 0,
        txPackets: info?.txPackets ?? 0,
      };
    });
  }
}
