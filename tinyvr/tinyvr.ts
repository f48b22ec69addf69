// The TinyVR: a TUN device that carries only overlay destinations, and one session to
// one FullVR. Intra-site traffic never reaches it because no route sends it here.
import { lookup } from 'node:dns/promises';
import { readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Server } from 'node:http';
import { cidrContains, ipToBytes, parseCidr, parseEndpoint } from '../shared/cidr.js';
import { loadPublicKey } from '../shared/handshake.js';
import { Initiator, type Established } from '../shared/initiator.js';
import { log } from '../shared/log.js';
import { checkRoot, checkTunDevice, localAddresses, NetChanges, sourceAddressFor } from '../shared/os-net.js';
import {
  Kind,
  M,
  META_FIELDS,
  PacketBatch,
  PacketEngine,
  SLOT_SIZE,
  closeFd,
  gmacImpl,
  monotonicMs,
  openTun,
  openUdp,
} from '../shared/packet-engine.js';
import { SessionIndexAllocator } from '../shared/session-index.js';
import { startStatusServer } from '../shared/status-server.js';
import { UserError } from '../shared/user-error.js';
import { MsgType, decodeError } from '../shared/wire.js';
import { authModeOf, type AuthName } from '../shared/auth-mode.js';
import type { TinyvrConfig } from './config.js';
import { PUMP_CFG_LEN, Shortcuts } from './shortcuts.js';
import { DirectPaths } from './direct-paths.js';
import { SessionControl } from '../shared/session-control.js';
import { SHORTCUT_KEEPALIVE_MS, shortcutOffers } from '../shared/shortcut-offer.js';

// Room for a whole TSO super-packet or UDP GRO message split into segments (≤ ~45 at MTU 1432).
const BATCH = 256;

interface JoinState {
  network: number;
  mode: 'physical' | 'virtual';
  address: string;
  addresses?: string[];
  prefixlen: number;
  routes: string[];
  mtu: number;
  memberId: number;
  keepaliveSeconds: number;
  auth: AuthName;
  ticket?: string;
  /** Shortcut offers (with tickets: secret, never printed). */
  shortcuts?: unknown;
}

/** Entries of the TinyVR's pump configuration, in the order the engine reads them. */
const enum Cfg {
  SESSION = 0, // session with the FullVR (<= 0: drop what the TUN gives)
  OUTNET = 1, // network id the TUN's packets are sent in
  OWN4 = 2, // how many IPv4 addresses in own4 are ours
  OWN6 = 3, // how many IPv6 addresses in own6 are ours
}

export class TinyVR {
  private engine!: PacketEngine;
  private initiator!: Initiator;
  /** Failover target, if configured; `onSecondary` says which FullVR the session is with. */
  private secondaryInitiator: Initiator | null = null;
  private secondaryHost = '';
  private secondaryPort = 0;
  private onSecondary = false;
  private indices = new SessionIndexAllocator();
  private net = new NetChanges();
  private tunName = '';
  private fullvrHost = '';
  private fullvrPort = 0;
  // The native pumps read these on every wake-up, so they live in one shared array (see Cfg).
  // Entries 0..3 (Cfg) and the shortcut routes (tinyvr/shortcuts.ts) after them.
  private readonly pumpCfg = new Int32Array(PUMP_CFG_LEN);
  private shortcuts: Shortcuts | null = null;
  private direct: DirectPaths | null = null;
  /** CTRL on our sessions with FullVRs (direct-path introductions). */
  private readonly control = new SessionControl(0);
  /** The session with the FullVR (0: none yet). */
  private get session(): number {
    return this.pumpCfg[Cfg.SESSION];
  }
  private remoteIndex = 0;
  /** The VR id of the FullVR we are joined to (ERROR messages name their sender). */
  private homeVr = -1;
  private join: JoinState | null = null;
  private installedRoutes = new Set<string>();
  // Our overlay addresses (IPv4 and/or IPv6) packed for the per-packet "is it for us" check.
  private readonly own4 = new Uint8Array(16);
  private readonly own6 = new Uint8Array(64);
  private timers: NodeJS.Timeout[] = [];
  private statusServer: Server | null = null;
  private joinedAtMono = 0;
  private stopped = false;
  private counters = { joins: 0, rejoins: 0, failovers: 0, routes_refused: 0 };
  private physicalAddrs: string[] = [];
  private ticket: string | undefined;
  private firstJoin: { resolve: () => void; reject: (e: Error) => void } | null = null;

  constructor(private cfg: TinyvrConfig) {}

  /** Resolves once joined; rejects (leaving nothing behind) if the first join fails. */
  async start(): Promise<void> {
    checkRoot('the TinyVR');
    checkTunDevice();
    const ep = parseEndpoint(this.cfg.fullvr);
    const fullvrKey = loadPublicKey(this.cfg.fullvrKey);
    try {
      this.fullvrHost = (await lookup(ep.host)).address;
    } catch {
      throw new UserError(`cannot resolve FullVR host "${ep.host}"`);
    }
    this.fullvrPort = ep.port;
    const v6 = this.fullvrHost.includes(':');
    let udpFd = -1;
    let tunFd = -1;
    try {
      udpFd = openUdp(v6 ? '::' : '0.0.0.0', 0).fd;
      const tun = openTun(this.cfg.tun?.name ?? 'tvn0', { offload: true });
      if (!tun.offload) log.warn('TUN offload unavailable, using plain packets', { error: tun.offloadError });
      tunFd = tun.fd;
      this.tunName = tun.name;
      this.engine = new PacketEngine({ udpFd, tunFd, mtu: 1500, tunOffload: tun.offload });
      this.engine.setModeration(this.cfg.moderationMicros);
    } catch (e) {
      if (tunFd >= 0) closeFd(tunFd);
      if (udpFd >= 0) closeFd(udpFd);
      throw e instanceof UserError ? e : new UserError(`tinyvr: ${(e as Error).message}`);
    }
    // Our provider-assigned addresses; the one that routes to the FullVR first.
    const src = sourceAddressFor(this.fullvrHost);
    const all = localAddresses([this.tunName]).map((a) => a.address);
    this.physicalAddrs = src ? [src, ...all.filter((a) => a !== src)] : all;

    if (this.cfg.ticketFile) {
      try {
        this.ticket = readFileSync(this.cfg.ticketFile, 'utf8').trim() || undefined;
      } catch {
        /* no ticket yet */
      }
    }
    const batchTun = new PacketBatch(BATCH);
    const batchUdp = new PacketBatch(BATCH);
    // Our decision is simple (TUN -> the FullVR session, or a shortcut's for its sites' subnets;
    // FullVR -> TUN if addressed to us), so the engine reads, decides and forwards by itself from
    // its poll callback: a wake-up that carries only data never enters JS. JS hears of control
    // messages (handshake answers, errors) and keeps the shortcut routes in pumpCfg current.
    const idleMs = this.cfg.shortcutIdleSeconds * 1000;
    if (this.cfg.direct) {
      this.direct = new DirectPaths({
        engine: this.engine,
        indices: this.indices,
        control: this.control,
        mode: () => authModeOf(this.join?.auth),
        idleMs,
        onRoutes: () => this.shortcuts?.refreshRoutes(),
        sessionOfVr: (vr) => (vr === this.homeVr ? this.session : (this.shortcuts?.sessionOf(vr) ?? 0)),
      });
    }
    this.shortcuts = new Shortcuts({
      engine: this.engine,
      indices: this.indices,
      pumpCfg: this.pumpCfg,
      idleMs,
      control: this.control,
      directKey: this.direct?.publicKey,
      extraRoutes: () => this.direct?.routes() ?? [],
    });
    this.engine.pumpTunNative(batchTun, this.pumpCfg);
    this.engine.pumpUdpNative(batchUdp, this.pumpCfg, this.own4, this.own6, (n) => this.afterUdp(batchUdp, n));
    this.initiator = new Initiator({
      engine: this.engine,
      indices: this.indices,
      responderPublic: fullvrKey,
      senderId: 0,
      host: this.fullvrHost,
      port: this.fullvrPort,
      payload: () => ({ kind: 'tinyvr', token: this.cfg.token, ticket: this.ticket, addrs: this.physicalAddrs, want: this.join?.address, direct: this.direct?.publicKey }),
      onEstablished: (s) => this.onJoined(s, false),
      onRefused: (reason) => this.onRefused(reason),
      maxRetryMs: 2000,
    });
    if (this.cfg.secondary) {
      const sec = parseEndpoint(this.cfg.secondary.fullvr);
      try {
        this.secondaryHost = (await lookup(sec.host)).address;
      } catch {
        this.stop();
        throw new UserError(`cannot resolve secondary FullVR host "${sec.host}"`);
      }
      this.secondaryPort = sec.port;
      this.secondaryInitiator = new Initiator({
        engine: this.engine,
        indices: this.indices,
        responderPublic: loadPublicKey(this.cfg.secondary.fullvrKey),
        senderId: 0,
        host: this.secondaryHost,
        port: this.secondaryPort,
        payload: () => ({ kind: 'tinyvr', failover: true, token: this.cfg.secondary?.token ?? this.cfg.token, addrs: this.physicalAddrs }),
        onEstablished: (s) => this.onJoined(s, true),
        onRefused: (reason) => log.error('secondary FullVR refused the failover', { fullvr: this.cfg.secondary?.fullvr, reason }),
        maxRetryMs: 1000,
        firstRetryMs: 300,
      });
    }
    this.writeStatus('joining');
    const joined = new Promise<void>((resolve, reject) => (this.firstJoin = { resolve, reject }));
    const timeout = setTimeout(
      () =>
        this.firstJoin?.reject(
          new UserError(`FullVR ${this.cfg.fullvr} did not answer within ${this.cfg.joinTimeoutSeconds} s (check its address, UDP port, key and firewall)`),
        ),
      this.cfg.joinTimeoutSeconds * 1000,
    );
    this.initiator.start();
    try {
      await joined;
    } catch (e) {
      this.stop();
      throw e;
    } finally {
      clearTimeout(timeout);
      this.firstJoin = null;
    }
    if (this.cfg.control) {
      try {
        this.statusServer = await startStatusServer(this.cfg.control, () => this.status());
      } catch (e) {
        this.stop();
        throw e;
      }
    }
    const ka = this.cfg.keepaliveSeconds * 1000;
    // With a secondary, probe every second so a dead FullVR is noticed in 3 s. With shortcuts
    // too: other sites' TinyVRs send us their traffic through our FullVR while ours goes out
    // over shortcuts, so only a keepalive tells us it restarted (ERROR: rejoin at once); until
    // we rejoin, what they send us is lost there.
    const every = this.secondaryInitiator || this.cfg.shortcuts ? 1000 : Math.min(ka, 1000 * Math.max(1, this.join?.keepaliveSeconds ?? 10));
    this.timers.push(setInterval(() => this.tick(), every));
    this.timers.push(
      setInterval(() => {
        if (this.direct) this.shortcuts?.keep(this.direct.introducers());
        this.shortcuts?.tick(); // reads the pump's hits for the direct paths' entries too
        this.direct?.tick();
      }, SHORTCUT_KEEPALIVE_MS),
    );
  }

  private onRefused(reason: string): void {
    if (this.firstJoin) {
      // The CLI prints this as the one line explaining the exit.
      this.initiator.stop();
      this.firstJoin.reject(new UserError(`join refused by FullVR ${this.cfg.fullvr}: ${reason}`, 4));
      return;
    }
    log.error('rejoin refused', { fullvr: this.cfg.fullvr, reason });
    // No FullVR vouches for us now: our direct paths must not outlive our membership.
    this.direct?.reset();
  }

  private onJoined(s: Established, secondary: boolean): void {
    const p = s.payload as unknown as JoinState;
    const rejoin = this.join !== null;
    const moved = rejoin && secondary !== this.onSecondary;
    try {
      this.engine.setSession(s.index, {
        peerHost: secondary ? this.secondaryHost : this.fullvrHost,
        peerPort: secondary ? this.secondaryPort : this.fullvrPort,
        remoteIndex: s.remoteIndex,
        senderId: p.memberId,
        mode: authModeOf(p.auth),
        txKey: s.txKey,
        rxKey: s.rxKey,
      });
      this.configure(p);
    } catch (e) {
      const err = e instanceof UserError ? e : new UserError(`join answer could not be applied: ${(e as Error).message}`);
      if (this.firstJoin) return this.firstJoin.reject(err);
      log.error('rejoin failed', { error: err.message });
      return;
    }
    const old = this.session;
    // Another network now (the authority moved us): direct paths of the old one must go.
    if (this.join && this.join.network !== p.network) this.direct?.reset();
    this.pumpCfg[Cfg.SESSION] = s.index;
    this.remoteIndex = s.remoteIndex;
    this.homeVr = s.remoteSenderId;
    this.pumpCfg[Cfg.OUTNET] = p.network;
    this.control.register(s.index, { txKey: s.txKey, rxKey: s.rxKey, remoteIndex: s.remoteIndex, vr: s.remoteSenderId });
    if (old && old !== s.index) {
      this.engine.deleteSession(old);
      this.indices.release(old);
      this.control.unregister(old);
    }
    this.join = p;
    this.onSecondary = secondary;
    if (moved) {
      this.counters.failovers++;
      log.warn('failover', { to: secondary ? this.cfg.secondary?.fullvr : this.cfg.fullvr, address: p.address });
    }
    (secondary ? this.initiator : this.secondaryInitiator)?.stop();
    // Shortcuts only from our own FullVR (a secondary vouches for no one else's member).
    this.shortcuts?.apply(this.cfg.shortcuts && !secondary ? shortcutOffers(p.shortcuts) : []);
    this.joinedAtMono = monotonicMs();
    if (typeof p.ticket === 'string') this.saveTicket(p.ticket);
    if (rejoin) this.counters.rejoins++;
    else this.counters.joins++;
    log.info(rejoin ? 'rejoined' : 'joined', {
      address: p.address,
      network: p.network,
      mode: p.mode,
      fullvr: this.cfg.fullvr,
      routes: p.routes.join(','),
      mtu: p.mtu,
      gmac: gmacImpl(),
    });
    this.writeStatus('joined');
    this.firstJoin?.resolve();
  }

  /** Apply (or update, on rejoin) the TUN address, MTU and overlay routes from a join answer. */
  private configure(p: JoinState): void {
    const prev = this.join;
    const dev = this.tunName;
    if (!prev) this.net.linkUp(dev, p.mtu);
    this.engine.setMtu(p.mtu);
    if (p.mode === 'virtual' && prev?.address !== p.address) {
      if (prev) this.net.removeAddress(dev, `${prev.address}/32`);
      this.net.addAddress(dev, `${p.address}/32`);
    }
    const addrs = p.addresses?.length ? p.addresses : [p.address];
    let n4 = 0;
    let n6 = 0;
    for (const a of addrs) {
      const b = ipToBytes(a);
      if (b.length === 4 && n4 < 4) this.own4.set(b, 4 * n4++);
      if (b.length === 16 && n6 < 4) this.own6.set(b, 16 * n6++);
    }
    this.pumpCfg[Cfg.OWN4] = n4;
    this.pumpCfg[Cfg.OWN6] = n6;
    const srcFor = (family: number) => addrs.find((a) => (a.includes(':') ? 6 : 4) === family);
    const wanted = new Map<string, string>();
    for (const r of p.routes) {
      const c = parseCidr(r);
      const src = srcFor(c.family);
      if (!src) {
        this.counters.routes_refused++;
        log.warn('route refused', { route: r, why: `this member has no IPv${c.family} overlay address` });
        continue;
      }
      // Never steal the default route or our own site's traffic, whatever the FullVR says.
      if (c.bits === 0 || this.physicalAddrs.some((a) => safeContains(r, a))) {
        this.counters.routes_refused++;
        log.warn('route refused', { route: r, why: c.bits === 0 ? 'default route' : 'contains this VM\'s own subnet' });
        continue;
      }
      wanted.set(r, src);
    }
    for (const r of this.installedRoutes) if (!wanted.has(r)) this.net.removeRoute(r, dev);
    for (const [r, src] of wanted) this.net.addRoute(r, dev, src);
    this.installedRoutes = new Set(wanted.keys());
  }

  /** Control messages (handshake answers, errors) the engine left in the batch. */
  private afterUdp(batch: PacketBatch, n: number): void {
    for (let i = 0; i < n; i++) {
      const b = i * META_FIELDS;
      if (batch.meta[b + M.KIND] !== Kind.CONTROL) continue;
      const off = i * SLOT_SIZE + batch.meta[b + M.OFF];
      const msg = Buffer.from(batch.buf.subarray(off, off + batch.meta[b + M.LEN]));
      const type = batch.meta[b + M.TYPE];
      if (type === MsgType.RESP) {
        const idx = msg.readUInt32BE(4);
        if (!this.initiator.handleResp(idx, msg) && !this.secondaryInitiator?.handleResp(idx, msg) && !this.shortcuts?.handleResp(idx, msg)) {
          this.direct?.handleResp(idx, msg);
        }
      } else if (type === MsgType.INIT) {
        const { host, port } = batch.addrString(i);
        this.direct?.handleInit(msg, host, port);
      } else if (type === MsgType.QUEUE) {
        // CTRL from our FullVR or a shortcut's: an introduction to another member.
        const c = this.control.decode(msg);
        if (c?.payload.op === 'direct') this.direct?.handleIntro(c.vr, c.payload);
        else if (c?.payload.op === 'direct-revoke') this.direct?.handleRevoke(c.payload);
      }
      else if (type === MsgType.ERROR) {
        try {
          const e = decodeError(msg);
          // Session indices are per FullVR: the sender tells our FullVR's from a shortcut's.
          if (this.session && e.senderId === this.homeVr && e.receiverIndex === this.remoteIndex) {
            log.info('fullvr lost our session (restarted?), rejoining');
            this.current().start();
          } else this.shortcuts?.handleError(e.senderId, e.receiverIndex);
        } catch {
          /* malformed */
        }
      }
    }
  }

  /** The initiator of the FullVR we are (or were last) joined to. */
  private current(): Initiator {
    return this.onSecondary && this.secondaryInitiator ? this.secondaryInitiator : this.initiator;
  }

  private tick(): void {
    if (!this.session) return;
    this.engine.sendKeepalive(this.session);
    const ka = (this.join?.keepaliveSeconds ?? this.cfg.keepaliveSeconds) * 1000;
    const info = this.engine.sessionInfo(this.session);
    const last = Math.max(info?.lastRxMs ?? 0, this.joinedAtMono);
    const silent = monotonicMs() - last;
    if (this.secondaryInitiator) {
      // Failover: after 3 s of silence try the other FullVR (and keep alternating until one answers).
      if (silent > 3000 && !this.initiator.active && !this.secondaryInitiator.active) {
        const next = this.onSecondary ? this.initiator : this.secondaryInitiator;
        log.warn('fullvr silent, failing over', { from: this.onSecondary ? this.cfg.secondary?.fullvr : this.cfg.fullvr, silentMs: Math.round(silent) });
        this.writeStatus('failing over');
        next.start();
      }
      return;
    }
    if (silent > 3 * Math.min(ka, this.cfg.keepaliveSeconds * 1000) && !this.initiator.active) {
      log.warn('fullvr silent, rejoining', { fullvr: this.cfg.fullvr, silentMs: Math.round(silent) });
      this.writeStatus('rejoining');
      this.initiator.start();
    }
  }

  private saveTicket(t: string): void {
    this.ticket = t;
    if (!this.cfg.ticketFile) return;
    try {
      mkdirSync(dirname(this.cfg.ticketFile), { recursive: true });
      const tmp = `${this.cfg.ticketFile}.${process.pid}.tmp`;
      writeFileSync(tmp, t + '\n', { mode: 0o600 });
      renameSync(tmp, this.cfg.ticketFile);
    } catch (e) {
      log.warn('cannot write ticket file', { file: this.cfg.ticketFile, error: (e as Error).message });
    }
  }

  private writeStatus(state: string): void {
    if (!this.cfg.statusFile) return;
    const { ticket: _secret, shortcuts: _tickets, ...join } = this.join ?? ({} as Partial<JoinState>);
    const body = JSON.stringify({ state, pid: process.pid, fullvr: this.cfg.fullvr, ...join, updated: new Date().toISOString() }) + '\n';
    try {
      mkdirSync(dirname(this.cfg.statusFile), { recursive: true });
      const tmp = `${this.cfg.statusFile}.${process.pid}.tmp`;
      writeFileSync(tmp, body);
      renameSync(tmp, this.cfg.statusFile); // atomic: readers never see half a file
    } catch (e) {
      log.warn('cannot write status file', { file: this.cfg.statusFile, error: (e as Error).message });
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.initiator?.stop();
    this.secondaryInitiator?.stop();
    // Tell the FullVRs we hold sessions with that we are going (authenticated, on each
    // session): they drop us now instead of after our silence, and revoke our direct paths.
    if (this.engine) for (const s of [this.session, ...(this.shortcuts?.sessions() ?? [])]) if (s) this.control.send(this.engine, s, { op: 'bye' });
    this.shortcuts?.stop();
    this.direct?.stop();
    this.statusServer?.close();
    this.engine?.close(); // closing the TUN fd removes the device and every route through it
    for (const e of this.net.rollback()) log.warn('cleanup', { error: e });
    this.writeStatus('stopped');
    if (this.join) log.info('tinyvr stopped');
  }

  status(): Record<string, unknown> {
    const info = this.session ? this.engine.sessionInfo(this.session) : null;
    const engine: Record<string, number> = this.engine?.stats() ?? {};
    return {
      role: 'tinyvr',
      state: this.join ? 'joined' : 'joining',
      fullvr: this.onSecondary ? this.cfg.secondary?.fullvr : this.cfg.fullvr,
      onSecondary: this.onSecondary,
      tun: this.tunName,
      join: this.join ? { ...this.join, ticket: undefined, shortcuts: undefined } : null,
      routes: [...this.installedRoutes],
      shortcuts: this.shortcuts?.status() ?? [],
      direct: this.direct?.status() ?? [],
      session: info,
      // not_for_me is counted by the engine (the native pump decides what is for us).
      counters: { ...this.counters, ...this.shortcuts?.counters, ...this.direct?.counters, not_for_me: engine.not_for_me ?? 0, direct_spoofed: engine.direct_spoofed ?? 0 },
      engine,
    };
  }
}

function safeContains(cidr: string, ip: string): boolean {
  try {
    return cidrContains(cidr, ip);
  } catch {
    return false;
  }
}
